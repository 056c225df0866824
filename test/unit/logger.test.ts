import { describe, expect, it } from "vitest";
import { createLogger } from "../../bridge/logger.js";

// ioredis attaches the failed command to reply errors (`err.command = { name, args }`), and
// its args are what Parley stored: message bodies, webhook secrets, tokens.

const SECRET = "SECRET BODY";

function replyError(message = "OOM command not allowed when used memory > 'maxmemory'."): Error {
  return Object.assign(new Error(message), { name: "ReplyError", command: { name: "evalsha", args: ["f00d", "2", "parley:v:abc", "parley:s:acme", SECRET] } });
}

function capture() {
  const lines: string[] = [];
  const logger = createLogger("debug", { write: (line: string) => void lines.push(line) });
  return { logger, output: () => lines.join("") };
}

describe("logged errors", () => {
  it.each(["err", "error"])("keep the message but not the Redis command's arguments under %s", (key) => {
    const { logger, output } = capture();
    logger.child({ module: "visitor-gateway" }).warn({ [key]: replyError(), visitorId: "v1" }, "visitor frame failed");
    expect(output()).toContain("OOM command not allowed");
    expect(output()).toContain("ReplyError");
    expect(output()).not.toContain(SECRET);
    expect(output()).not.toContain("evalsha");
  });

  it("drop the arguments of errors nested as causes, previous errors and node errors", () => {
    const { logger, output } = capture();
    const execAbort = Object.assign(new Error("EXECABORT Transaction discarded"), { previousErrors: [replyError("ERR wrong number of arguments")] });
    const cluster = Object.assign(new Error("Failed to refresh slots cache."), { lastNodeError: replyError("CLUSTERDOWN") });
    const wrapped = new Error("site PUT failed", { cause: replyError() });
    const plainCause = Object.assign(new Error("append failed"), { cause: { command: { name: "evalsha", args: [SECRET] } } });
    for (const err of [execAbort, cluster, wrapped, plainCause]) logger.error({ err }, "admin API request failed");
    logger.error(replyError(), "logged as the first argument");
    expect(output()).not.toContain(SECRET);
    for (const message of ["EXECABORT", "wrong number of arguments", "CLUSTERDOWN", "site PUT failed", "OOM command not allowed", "append failed"]) expect(output()).toContain(message);
    expect(JSON.parse(output().split("\n")[1]!).err.lastNodeError).toMatchObject({ type: "Error", name: "ReplyError", message: "CLUSTERDOWN" });
  });

  it("drop the stanza an XMPP error carries, which may echo a message body", () => {
    const { logger, output } = capture();
    const stanza = { name: "message", attrs: { type: "error" }, children: [{ name: "body", attrs: {}, children: [SECRET] }] };
    logger.warn({ err: Object.assign(new Error("service-unavailable"), { name: "StanzaError", condition: "service-unavailable", element: stanza }) }, "relay failed");
    expect(output()).not.toContain(SECRET);
    expect(JSON.parse(output()).err).toMatchObject({ name: "StanzaError", condition: "service-unavailable" });
  });

  it("still show an error's own harmless properties", () => {
    const { logger, output } = capture();
    logger.warn({ err: Object.assign(new Error("connect ECONNREFUSED"), { code: "ECONNREFUSED", port: 6379 }) }, "redis error");
    expect(JSON.parse(output()).err).toMatchObject({ type: "Error", message: "connect ECONNREFUSED", code: "ECONNREFUSED", port: 6379 });
  });
});
