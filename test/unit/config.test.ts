import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig, unknownVariables } from "../../bridge/config.js";

describe("loadConfig", () => {
  it("applies the contract's defaults", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s3cret" })).toMatchObject({
      xmppService: "xmpp://127.0.0.1:5275",
      xmppDomain: "chat.localhost",
      redis: { kind: "memory" },
      visitorRate: { perSecond: 5, burst: 20 },
      upgradeRate: { perSecond: 20, burst: 100 },
      socketRate: { perSecond: 30, burst: 200 },
      socketsPerAddress: 1000,
      httpHost: "127.0.0.1",
      httpPort: 8080,
      visitorGraceMs: 15_000,
      agentGraceMs: 60_000,
      heartbeatMs: 30_000,
      xmppQueueMax: 200_000,
      transcriptRetentionDays: 0,
      visitorRetentionDays: 30,
      logLevel: "info",
    });
  });

  it("keeps visitors who never chat for the days given, or forever with 0", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_VISITOR_RETENTION_DAYS: "7" }).visitorRetentionDays).toBe(7);
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_VISITOR_RETENTION_DAYS: "0" }).visitorRetentionDays).toBe(0);
    for (const bad of ["-1", "a month"]) expect(() => loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_VISITOR_RETENTION_DAYS: bad })).toThrow(/PARLEY_VISITOR_RETENTION_DAYS/);
  });

  it("takes a visitor heartbeat of one second or more", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_HEARTBEAT_MS: "20000" }).heartbeatMs).toBe(20_000);
    for (const bad of ["0", "999", "soon"]) expect(() => loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_HEARTBEAT_MS: bad })).toThrow(/PARLEY_HEARTBEAT_MS/);
  });

  it("bounds the sockets one address keeps open by a positive count", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_SOCKETS_PER_ADDRESS: "50" }).socketsPerAddress).toBe(50);
    for (const bad of ["0", "-3", "1.5", "many"]) expect(() => loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_SOCKETS_PER_ADDRESS: bad })).toThrow(/PARLEY_SOCKETS_PER_ADDRESS/);
  });

  it("bounds the queue kept for ejabberd by a positive count", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_XMPP_QUEUE_MAX: "5000" }).xmppQueueMax).toBe(5000);
    for (const bad of ["0", "-3", "1.5", "lots"]) expect(() => loadConfig({ PARLEY_XMPP_SECRET: "s", PARLEY_XMPP_QUEUE_MAX: bad })).toThrow(/PARLEY_XMPP_QUEUE_MAX/);
  });

  it("refuses to start without a secret, naming the variable", () => {
    expect(() => loadConfig({})).toThrow(/PARLEY_XMPP_SECRET/);
  });

  it("names every bad variable in one error", () => {
    try {
      loadConfig({ PARLEY_XMPP_SECRET: "x", PARLEY_HTTP_PORT: "http", PARLEY_VISITOR_RATE: "lots", PARLEY_SOCKET_RATE: "fast", PARLEY_LOG_LEVEL: "loud" });
      expect.unreachable();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      const message = (err as Error).message;
      for (const name of ["PARLEY_HTTP_PORT", "PARLEY_VISITOR_RATE", "PARLEY_SOCKET_RATE", "PARLEY_LOG_LEVEL"]) expect(message).toContain(name);
      expect(message.split("\n")).toHaveLength(1);
    }
  });

  it("accepts any admin token and an xmpp URL with a trailing slash", () => {
    expect(loadConfig({ PARLEY_XMPP_SECRET: "x", PARLEY_ADMIN_TOKEN: "short", PARLEY_XMPP_SERVICE: "xmpp://10.0.0.1:5275/" })).toMatchObject({
      adminToken: "short",
      xmppService: "xmpp://10.0.0.1:5275/",
    });
  });

  it("refuses both Redis and Redis Cluster", () => {
    expect(() => loadConfig({ PARLEY_XMPP_SECRET: "x", PARLEY_REDIS_URL: "redis://a:1", PARLEY_REDIS_CLUSTER: "a:1,b:2" })).toThrow(/PARLEY_REDIS_URL and PARLEY_REDIS_CLUSTER/);
  });

  it("reads Redis Cluster nodes and the ejabberd API credentials", () => {
    const config = loadConfig({ PARLEY_XMPP_SECRET: "x", PARLEY_REDIS_CLUSTER: "10.0.0.1:7000, 10.0.0.2:7001", PARLEY_EJABBERD_API_URL: "http://127.0.0.1:5281/api", PARLEY_EJABBERD_API_AUTH: "admin@localhost:p:w" });
    expect(config.redis).toEqual({ kind: "cluster", nodes: [{ host: "10.0.0.1", port: 7000 }, { host: "10.0.0.2", port: 7001 }] });
    expect(config.ejabberdApiAuth).toEqual({ user: "admin@localhost", password: "p:w" });
  });

  it("says what a number must be, with its unit and range, whatever is wrong with it", () => {
    const cases: [string, string, string][] = [
      ["PARLEY_HTTP_PORT", "http", "PARLEY_HTTP_PORT must be a port number from 0 to 65535"],
      ["PARLEY_HTTP_PORT", "70000", "PARLEY_HTTP_PORT must be a port number from 0 to 65535"],
      ["PARLEY_VISITOR_GRACE_MS", "15s", "PARLEY_VISITOR_GRACE_MS must be whole milliseconds from 0 to 86400000"],
      ["PARLEY_AGENT_GRACE_MS", "1.5", "PARLEY_AGENT_GRACE_MS must be whole milliseconds from 0 to 86400000"],
      ["PARLEY_CHAT_IDLE_MS", "-1.5", "PARLEY_CHAT_IDLE_MS must be whole milliseconds from 0 to 86400000"],
      ["PARLEY_HEARTBEAT_MS", "500", "PARLEY_HEARTBEAT_MS must be whole milliseconds from 1000 to 3600000"],
      ["PARLEY_TRANSCRIPT_RETENTION_DAYS", "a year", "PARLEY_TRANSCRIPT_RETENTION_DAYS must be days from 0 to 36500"],
    ];
    for (const [name, value, message] of cases) {
      expect(() => loadConfig({ PARLEY_XMPP_SECRET: "x", [name]: value })).toThrow(new ConfigError(`invalid configuration: ${message}`));
    }
  });

  it("refuses ejabberd API credentials without the API's URL, naming both variables", () => {
    expect(() => loadConfig({ PARLEY_XMPP_SECRET: "x", PARLEY_EJABBERD_API_AUTH: "admin@localhost:pw" })).toThrow(/PARLEY_EJABBERD_API_AUTH is set but PARLEY_EJABBERD_API_URL is not/);
  });
});

describe("unknownVariables", () => {
  it("names PARLEY_ variables the bridge does not know, with the one a typo most likely meant", () => {
    expect(
      unknownVariables({ PARLEY_XMPP_SECRET: "x", PARLEY_REDIS_ULR: "redis://r:6379", PARLEY_ADMIN_TOKN: "t", PARLEY_SOMETHING_ELSE_ENTIRELY: "1", HOME: "/root" }),
    ).toEqual([{ name: "PARLEY_ADMIN_TOKN", didYouMean: "PARLEY_ADMIN_TOKEN" }, { name: "PARLEY_REDIS_ULR", didYouMean: "PARLEY_REDIS_URL" }, { name: "PARLEY_SOMETHING_ELSE_ENTIRELY" }]);
  });

  it("knows every variable of the configuration and leaves the test suite's own alone", () => {
    const every = Object.fromEntries(
      ["XMPP_SERVICE", "XMPP_DOMAIN", "XMPP_SECRET", "REDIS_URL", "REDIS_CLUSTER", "VISITOR_RATE", "UPGRADE_RATE", "SOCKET_RATE", "HTTP_HOST", "HTTP_PORT", "ADMIN_TOKEN", "EJABBERD_API_URL", "EJABBERD_API_AUTH", "SITES_FILE", "VISITOR_GRACE_MS", "AGENT_GRACE_MS", "CHAT_IDLE_MS", "HEARTBEAT_MS", "TRANSCRIPT_RETENTION_DAYS", "VISITOR_RETENTION_DAYS", "LOG_LEVEL", "TEST_STORE", "FUZZ_RUNS", "CHROMIUM"].map((name) => [`PARLEY_${name}`, "1"]),
    );
    expect(unknownVariables(every)).toEqual([]);
  });
});
