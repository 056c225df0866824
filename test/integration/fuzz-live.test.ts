import fc from "fast-check";
import { xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AgentClient } from "../support/agent-client.js";
import { AGENT_PASSWORD, startStack, type Stack } from "../support/stack.js";
import { waitUntil } from "../support/wait.js";

// Hostile input through a live bridge (issue 5): random frames over real sockets and
// random stanzas from a real Jabber client; a bystander's chat must go on untouched.
// PARLEY_FUZZ_LIVE_RUNS raises the number of frames/stanzas (default 600 each).

const RUNS = Number(process.env.PARLEY_FUZZ_LIVE_RUNS ?? 600);
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1", "fuzzer"] });
  await stack.api("PUT", "/api/sites/acme", { name: "Acme", maxChatsPerAgent: 1000 });
  await stack.api("PUT", "/api/sites/acme/agents/agent1@localhost", { name: "Alice" });
});
afterAll(async () => {
  await stack?.stop();
});

const frameData = fc.oneof(
  fc.string({ unit: "binary", maxLength: 300 }),
  fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? "null"),
  fc.record({ type: fc.constantFrom("message", "typing", "page", "identify", "ping", "x"), id: fc.string({ maxLength: 70 }), text: fc.string({ unit: "binary", maxLength: 80 }), state: fc.string() }, { requiredKeys: ["type"] }).map((v) => JSON.stringify(v)),
  fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
);

describe("fuzzing a live bridge", () => {
  it(`survives ${RUNS} random frames and ${RUNS} random stanzas while a bystander chats on`, async () => {
    const agent = await stack.availableAgent("acme", "agent1");
    const bystander = await stack.visitor("acme");
    const bystanderJid = `acme.${bystander.welcome.visitorId}@chat.localhost`;
    await bystander.say("before the fuzz");
    await agent.nextBody(bystanderJid, (b) => b === "before the fuzz");

    // Random frames: spread over sockets so that each stays below the per-socket flood limit.
    const perSocket = 120;
    const sockets = await Promise.all(Array.from({ length: Math.ceil(RUNS / perSocket) }, () => stack.visitor("acme")));
    const frames = fc.sample(frameData, RUNS);
    frames.forEach((data, i) => sockets[Math.floor(i / perSocket)]!.ws.send(data));
    // Every frame gets an answer (ack, error or pong) or nothing (typing/page/identify): a ping per socket marks the end.
    await Promise.all(sockets.map(async (s) => {
      s.send({ type: "ping" });
      await s.frames.next((f) => f.type === "pong", "the closing pong", 20_000).catch(() => s.closed);
    }));

    // Random stanzas from another Jabber account, to visitors, the desk and made-up addresses.
    await stack.ejabberd.register("stranger", AGENT_PASSWORD).catch(() => {});
    const fuzzer = await AgentClient.connect({ port: stack.ejabberd.c2sPort, username: "stranger", password: AGENT_PASSWORD });
    const targets = [bystanderJid, "acme@chat.localhost", "chat.localhost", ...sockets.map((s) => `acme.${s.welcome.visitorId}@chat.localhost`), "acme.zzzz@chat.localhost", "nope@chat.localhost"];
    const stanzas = fc.sample(
      fc.tuple(
        fc.constantFrom("message", "presence", "iq"),
        fc.constantFrom(...targets),
        fc.constantFrom("chat", "normal", "error", "groupchat", "headline", "unavailable", "probe", "subscribe", "get", "set", "result", "bogus"),
        fc.string({ unit: "binary", maxLength: 100 }),
        fc.constantFrom("body", "show", "composing", "request", "received", "encrypted", "query", "privilege", "x"),
        fc.constantFrom("jabber:client", "http://jabber.org/protocol/chatstates", "urn:xmpp:receipts", "urn:xmpp:privilege:1", "eu.siacs.conversations.axolotl", "urn:x"),
      ),
      RUNS,
    );
    let sent = 0;
    for (const [name, to, type, text, child, xmlns] of stanzas) {
      // Only XML-safe characters can be written at all (ltx escapes markup; control characters would break the stream).
      // eslint-disable-next-line no-control-regex
      const safe = text.replace(/[^\u0009\u000A\u000D\u0020-\uD7FF\uE000-\uFFFD]/gu, "");
      if (fuzzer.xmpp.status !== "online") break;
      await fuzzer.xmpp.send(xml(name, { to, type, id: `fz${sent}` }, xml(child, xmlns === "jabber:client" ? {} : { xmlns }, safe), name === "message" ? xml("body", {}, safe || "x") : null)).catch(() => {});
      sent++;
    }
    // A round trip through the component after the last stanza: everything before it was handled.
    await fuzzer.xmpp.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), "chat.localhost");
    await fuzzer.stop();

    // The bridge is healthy and the bystander's chat goes on, with nothing foreign in it.
    expect((await fetch(new URL("/healthz", stack.bridge.httpUrl))).status).toBe(200);
    await bystander.say("after the fuzz");
    await agent.nextBody(bystanderJid, (b) => b === "after the fuzz");
    await agent.sendMessage(bystanderJid, "still here");
    await bystander.next("message", (f) => f.text === "still here");
    const foreign = bystander.frames.all.filter((f) => f.type === "message" && !["before the fuzz", "after the fuzz", "still here"].includes(f.text));
    expect(foreign).toEqual([]);
    expect(bystander.frames.all.filter((f) => f.type === "error")).toEqual([]);
    const answered = sockets.reduce((n, s) => n + s.frames.all.filter((f) => f.type === "ack" || f.type === "error").length, 0);
    console.log(`live fuzz: ${frames.length} random frames over ${sockets.length} sockets (${answered} acks/errors back), ${sent} random stanzas; bystander unaffected, bridge healthy`);
  });

  it("terminates a visitor socket that stops reading, and nobody else notices", async () => {
    const agent = await stack.agent("agent1", { resource: "slow-test" });
    const slow = await stack.visitor("acme");
    const slowJid = `acme.${slow.welcome.visitorId}@chat.localhost`;
    await slow.say("I will stop reading");
    await agent.nextBody(slowJid, (b) => b === "I will stop reading");
    const bystander = await stack.visitor("acme");
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = "x".repeat(9000);
    // The paused client cannot see the server's verdict (it reads nothing), so watch the bridge's gauge.
    const connected = async () => Number(/^parley_visitors_connected (\d+)/m.exec(await (await fetch(new URL("/metrics", stack.bridge.httpUrl))).text())?.[1]);
    const before = await connected();
    let sent = 0;
    let terminated = false;
    while (!terminated && sent < 1200) {
      await agent.sendMessage(slowJid, `${sent} ${big}`);
      sent++;
      if (sent % 25 === 0) {
        await agent.xmpp.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), "chat.localhost");
        terminated = (await connected()) < before;
      }
    }
    // The bridge may still be working through its backlog (store round trips): poll its gauge.
    if (!terminated) await waitUntil("the slow reader to be terminated", async () => (await connected()) < before, { timeoutMs: 30_000, intervalMs: 100 });
    (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
    const { code } = await slow.closed;
    expect(code).toBe(1006); // terminated, no close frame
    await bystander.say("unaffected");
    await agent.nextBody(`acme.${bystander.welcome.visitorId}@chat.localhost`, (b) => b === "unaffected");
    console.log(`slow reader: terminated after ${sent} agent messages of 9 KB (over 1 MiB unread), close code ${code}; others unaffected`);
  });

  it("reports event-loop lag in /healthz and /metrics", async () => {
    const health = (await (await fetch(new URL("/healthz", stack.bridge.httpUrl))).json()) as { eventLoopLagMs: { p50: number; p99: number; max: number } };
    expect(health.eventLoopLagMs.p99).toBeGreaterThanOrEqual(0);
    expect(health.eventLoopLagMs.max).toBeGreaterThanOrEqual(health.eventLoopLagMs.p50);
    const metrics = await (await fetch(new URL("/metrics", stack.bridge.httpUrl))).text();
    expect(metrics).toMatch(/parley_event_loop_lag_seconds\{quantile="0.99"\} \d/);
  });
});
