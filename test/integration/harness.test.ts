// Proves the test harness (test/support/) against the real parts: private
// ejabberd instances, a private Redis and a Redis Cluster. If these fail,
// every other integration test would fail for reasons unrelated to Parley.
import { client, xml, type Client } from "@xmpp/client";
import { component, type Component } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import { Cluster, Redis } from "ioredis";
import type { EventEmitter } from "node:events";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { startEjabberd, type PrivateEjabberd } from "../support/ejabberd.js";
import { startRedisCluster, type PrivateRedisCluster } from "../support/redis-cluster.js";
import { startRedis, type PrivateRedis } from "../support/redis.js";

const PRIVILEGE_NS = "urn:xmpp:privilege:1"; // XEP-0356

/** Entities started by a test, stopped after it whatever happened. */
const entities: Array<Client | Component> = [];
afterEach(async () => {
  await Promise.allSettled(entities.splice(0).map((entity) => entity.stop()));
});

function agentClient(server: PrivateEjabberd, username: string, password: string): Client {
  const agent = client({
    service: `xmpp://127.0.0.1:${server.c2sPort}`,
    domain: server.host,
    username,
    password,
  });
  noNagle(agent);
  entities.push(agent);
  return agent;
}

function bridgeComponent(server: PrivateEjabberd): Component {
  const bridge = component({
    service: `xmpp://127.0.0.1:${server.componentPort}`,
    domain: server.componentDomain,
    password: server.secret,
  });
  noNagle(bridge);
  entities.push(bridge);
  return bridge;
}

/**
 * Without TCP_NODELAY a round trip through ejabberd takes ≈ 44 ms; without a
 * utf8 decoder a character split across TCP reads is garbled (EJABBERD.md).
 */
function noNagle(entity: Client | Component): void {
  entity.on("connect", () => {
    entity.socket?.setNoDelay(true);
    entity.socket?.setEncoding("utf8");
  });
}

/** The first stanza matching `test`, listening from now on. */
function nextStanza(entity: EventEmitter, test: (stanza: Element) => boolean): Promise<Element> {
  return new Promise((resolve) => {
    const onStanza = (stanza: Element): void => {
      if (!test(stanza)) return;
      entity.off("stanza", onStanza);
      resolve(stanza);
    };
    entity.on("stanza", onStanza);
  });
}

describe("private ejabberd", () => {
  let first: PrivateEjabberd;
  let second: PrivateEjabberd;

  beforeAll(async () => {
    [first, second] = await Promise.all([
      startEjabberd(),
      startEjabberd({ componentDomain: "desk.localhost", secret: "second-secret" }),
    ]);
  });
  afterAll(async () => {
    await Promise.all([first?.destroy(), second?.destroy()]);
  });

  it("lets a registered user log in and come online", async () => {
    await first.register("agent1", "agent1-password");
    const agent = agentClient(first, "agent1", "agent1-password");

    await agent.start();
    expect(agent.status).toBe("online");

    // Available for real: its presence and a message to itself come back.
    const ownPresence = nextStanza(agent, (stanza) => stanza.is("presence") && stanza.attrs.from?.startsWith("agent1@localhost/") === true);
    await agent.send(xml("presence"));
    await ownPresence;
    const echo = nextStanza(agent, (stanza) => stanza.is("message") && stanza.getChildText("body") === "café ✓");
    await agent.send(xml("message", { to: "agent1@localhost", type: "chat" }, xml("body", {}, "café ✓")));
    expect((await echo).attrs.from).toMatch(/^agent1@localhost\//);
  });

  it("accepts the component's handshake and grants it the XEP-0356 privileges", async () => {
    const bridge = bridgeComponent(first);
    const privilege = nextStanza(bridge, (stanza) => stanza.getChild("privilege", PRIVILEGE_NS) !== undefined);

    await bridge.start();
    const message = await privilege;

    expect(message.attrs.from).toBe("localhost");
    const perms = message.getChild("privilege", PRIVILEGE_NS)!.getChildren("perm");
    expect(Object.fromEntries(perms.map((perm) => [perm.attrs.access, perm.attrs.type]))).toEqual({
      roster: "both",
      presence: "roster",
      message: "outgoing",
    });
  });

  it("refuses a component with the wrong secret", async () => {
    const impostor = component({
      service: `xmpp://127.0.0.1:${first.componentPort}`,
      domain: first.componentDomain,
      password: "wrong",
    });
    impostor.reconnect.stop();
    entities.push(impostor);
    // "error" comes twice (at the stream error and at disconnect): keep a
    // listener, or the second one is thrown as unhandled.
    const refused = new Promise<Error>((resolve) => impostor.on("error", resolve));

    await impostor.start().catch(() => undefined);

    expect((await refused).message).toMatch(/not-authorized/);
  });

  it("runs two instances at once, each with its own ports and users", async () => {
    expect(new Set([first.c2sPort, first.componentPort, first.httpPort, second.c2sPort, second.componentPort, second.httpPort]).size).toBe(6);
    expect(first.pid).not.toBe(second.pid);

    // The same name registers on both: they share no data.
    await first.register("twin", "twin-password");
    await second.register("twin", "twin-password");
    const bridge = bridgeComponent(second);
    const privilege = nextStanza(bridge, (stanza) => stanza.getChild("privilege", PRIVILEGE_NS) !== undefined);
    await bridge.start();

    expect((await privilege).attrs.to).toBe("desk.localhost");
    const twin = agentClient(second, "twin", "twin-password");
    await twin.start();
    expect(twin.status).toBe("online");
  });

  it("restarts on the same ports and keeps registered users", async () => {
    await second.register("survivor", "survivor-password");
    const ports = [second.c2sPort, second.componentPort, second.httpPort];

    await second.stop();
    expect(second.pid).toBeNull();
    await second.start();

    expect([second.c2sPort, second.componentPort, second.httpPort]).toEqual(ports);
    const survivor = agentClient(second, "survivor", "survivor-password");
    await survivor.start();
    expect(survivor.status).toBe("online");
  });
});

describe("private Redis", () => {
  let redis: PrivateRedis;
  let clientConnection: Redis | undefined;

  beforeAll(async () => {
    redis = await startRedis();
  });
  afterAll(async () => {
    clientConnection?.disconnect();
    await redis?.destroy();
  });

  it("answers PING and keeps data across a graceful restart", async () => {
    clientConnection = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await clientConnection.connect();
    expect(await clientConnection.ping()).toBe("PONG");
    await clientConnection.set("harness:key", "kept");
    clientConnection.disconnect();

    await redis.stop();
    await redis.start();

    clientConnection = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await clientConnection.connect();
    expect(await clientConnection.get("harness:key")).toBe("kept");
  });
});

describe("private Redis Cluster", () => {
  let cluster: PrivateRedisCluster;
  let connection: Cluster | undefined;

  beforeAll(async () => {
    cluster = await startRedisCluster({ masters: 3 });
  });
  afterAll(async () => {
    connection?.disconnect();
    await cluster?.stop();
  });

  it("serves keys of every slot through Redis.Cluster", async () => {
    connection = new Cluster(
      cluster.nodes.map((node) => {
        const [host, port] = node.split(":");
        return { host: host!, port: Number(port) };
      }),
    );
    const keys = Array.from({ length: 30 }, (_, i) => `harness:${i}`);

    for (const key of keys) await connection.set(key, `value of ${key}`);
    const values = await Promise.all(keys.map((key) => connection!.get(key)));

    expect(values).toEqual(keys.map((key) => `value of ${key}`));
    // The keys hash to slots of every master, so all three served writes.
    const sizes = await Promise.all(connection.nodes("master").map((node) => node.dbsize()));
    expect(sizes).toHaveLength(3);
    expect(sizes.every((size) => size > 0)).toBe(true);
  });
});
