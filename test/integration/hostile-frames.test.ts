import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { startStack, type Stack } from "../support/stack.js";
import { VisitorClient } from "../support/visitor-client.js";

// Bad input (CONTRACT §4): every malformed frame gets the contract's error, oversized
// frames and floods are closed, and nothing reaches another visitor or stops the bridge.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"] });
  await stack.api("PUT", "/api/sites/acme", { name: "Acme" });
  await stack.api("PUT", "/api/sites/locked", { name: "Locked", origins: ["https://shop.example.com"] });
  await stack.api("PUT", "/api/sites/acme/agents/agent1@localhost", {});
});
afterAll(async () => {
  await stack?.stop();
});

type Bad = { name: string; data: string | Buffer; binary?: boolean; code: string };

const BAD_FRAMES: Bad[] = [
  { name: "not JSON", data: "{oops", code: "bad_frame" },
  { name: "a JSON number", data: "42", code: "bad_frame" },
  { name: "a JSON array", data: '[{"type":"ping"}]', code: "bad_frame" },
  { name: "invalid UTF-8", data: Buffer.from([0x7b, 0x22, 0xc3, 0x28, 0x22, 0x7d]), code: "bad_frame" },
  { name: "a binary frame", data: Buffer.from('{"type":"ping"}'), binary: true, code: "bad_frame" },
  { name: "an unknown type", data: '{"type":"hack"}', code: "invalid" },
  { name: "no type", data: '{"text":"hi"}', code: "invalid" },
  { name: "a number as text", data: '{"type":"message","id":"x","text":12}', code: "invalid" },
  { name: "a missing id", data: '{"type":"message","text":"hi"}', code: "invalid" },
  { name: "an oversized text", data: JSON.stringify({ type: "message", id: "x", text: "é".repeat(4001) }), code: "invalid" },
  { name: "an oversized id", data: JSON.stringify({ type: "message", id: "i".repeat(65), text: "hi" }), code: "invalid" },
  { name: "a bad typing state", data: '{"type":"typing","state":"yelling"}', code: "invalid" },
  { name: "a bad email", data: '{"type":"identify","email":"nope"}', code: "invalid" },
  { name: "an extra field", data: '{"type":"ping","admin":true}', code: "invalid" },
];

function errors(client: VisitorClient, count: number): Promise<Extract<ServerFrame, { type: "error" }>[]> {
  return Promise.all(Array.from({ length: count }, () => client.next("error")));
}

describe("hostile visitor input", () => {
  it("answers 1,000 malformed frames of 14 kinds each with the contract's error, and another visitor's chat goes on", async () => {
    const agent = await stack.agent("agent1");
    await expect.poll(async () => (await stack.api("GET", "/api/sites/acme/agents")).body[0].presence, { timeout: 15_000 }).toBe("available");
    const bystander = await stack.visitor("acme");
    await bystander.say("before the storm");
    await agent.nextBody(`acme.${bystander.welcome.visitorId}@chat.localhost`);

    const sockets = await Promise.all(Array.from({ length: 10 }, () => stack.visitor("acme")));
    let sent = 0;
    const counts = new Map<string, number>();
    await Promise.all(
      sockets.map(async (socket, s) => {
        const expected: string[] = [];
        for (let i = 0; i < 100; i++) {
          const bad = BAD_FRAMES[(s * 100 + i) % BAD_FRAMES.length]!;
          socket.ws.send(bad.data, { binary: bad.binary ?? false });
          expected.push(bad.code);
          counts.set(bad.name, (counts.get(bad.name) ?? 0) + 1);
          sent++;
        }
        const received = await errors(socket, 100);
        expect(received.map((e) => e.code)).toEqual(expected);
      }),
    );
    expect(sent).toBe(1000);
    expect(counts.size).toBe(BAD_FRAMES.length);
    console.log(`malformed frames: ${sent} sent, ${sent} errors received, ${counts.size} kinds`);

    // No message leaked anywhere, the bridge is healthy and the bystander's chat goes on.
    for (const socket of sockets) expect(socket.frames.pending((f) => f.type === "message")).toEqual([]);
    expect((await fetch(new URL("/healthz", stack.bridge.httpUrl))).status).toBe(200);
    await bystander.say("after the storm");
    await agent.nextBody(`acme.${bystander.welcome.visitorId}@chat.localhost`, (b) => b === "after the storm");
    await agent.sendMessage(`acme.${bystander.welcome.visitorId}@chat.localhost`, "still here");
    await bystander.next("message", (f) => f.text === "still here");
  });

  it("closes a 20 KiB frame with too_large and 1009", async () => {
    const visitor = await stack.visitor("acme");
    visitor.send(JSON.stringify({ type: "message", id: "big", text: "x".repeat(20 * 1024) }));
    expect(await visitor.next("error")).toMatchObject({ code: "too_large" });
    expect((await visitor.closed).code).toBe(1009);
  });

  it("rate-limits a flooding visitor and closes the socket (1008) when the flood goes on", async () => {
    const visitor = await stack.visitor("acme");
    for (let i = 0; i < 300; i++) visitor.send({ type: "message", id: `f${i}`, text: `flood ${i}` });
    const closed = await visitor.closed;
    expect(closed.code).toBe(1008);
    const acks = visitor.frames.all.filter((f) => f.type === "ack").length;
    const limited = visitor.frames.all.filter((f) => f.type === "error" && f.code === "rate_limited").length;
    expect(acks).toBeGreaterThanOrEqual(20); // the burst is always accepted
    expect(acks).toBeLessThan(40);
    expect(limited).toBeGreaterThanOrEqual(50);
    console.log(`flood: ${acks} acked, ${limited} rate_limited, closed ${closed.code}`);
  });

  it("closes (1008) a visitor who keeps sending faster than the limit, even though some messages still get through", async () => {
    // 50 messages a second: 5 a second are accepted, so refusals never come 50 in a row.
    // A site of its own: its chat takes no slot of acme's agent.
    await stack.api("PUT", "/api/sites/steady", { name: "Steady" });
    const visitor = await stack.visitor("steady");
    let i = 0;
    const sending = setInterval(() => visitor.send({ type: "message", id: `steady-${i}`, text: `steady ${i++}` }), 20);
    try {
      expect((await visitor.closed).code).toBe(1008);
    } finally {
      clearInterval(sending);
    }
    const acks = visitor.frames.all.filter((f) => f.type === "ack").length;
    console.log(`steady flood: closed after ${i} messages at 50/s, ${acks} acked`);
    expect(acks).toBeGreaterThanOrEqual(20);
  });

  it("bounds the typing, page and identify frames of one visitor's tabs together, which reach their agent", async () => {
    const agent = await stack.agent("agent1", { resource: "typing-flood" });
    await stack.waitForPresence("acme", "agent1@localhost", "available");
    const first = await stack.visitor("acme");
    const jid = `acme.${first.welcome.visitorId}@chat.localhost`;
    await first.say("hello");
    await agent.nextBody(jid, (b) => b === "hello");

    // Ten tabs of one visitor, each within its own socket's limit (PARLEY_SOCKET_RATE).
    const tabs = [first, ...(await Promise.all(Array.from({ length: 9 }, () => stack.visitor("acme", { token: first.welcome.token }))))];
    tabs.forEach((tab, t) => {
      for (let i = 0; i < 40; i++) tab.send({ type: "typing", state: i % 2 === 0 ? "composing" : "paused" });
      tab.send({ type: "message", id: `done-${t}`, text: `done ${t}` });
    });
    // Frames of one visitor are handled in order: once every tab's last message is there, so is every typing stanza.
    for (let t = 0; t < tabs.length; t++) await agent.nextBody(jid, (b) => b === `done ${t}`);

    const chatStates = () => agent.messages.all.filter((m) => m.attrs.from?.split("/")[0] === jid && m.getChild("body") === undefined && (m.getChild("composing") || m.getChild("paused"))).length;
    // The refusals travel to each tab on its own socket, not through ejabberd: they may still be on their way.
    const limited = () => tabs.reduce((n, tab) => n + tab.frames.all.filter((f) => f.type === "error" && f.code === "rate_limited").length, 0);
    await expect.poll(() => chatStates() + limited()).toBe(400);
    console.log(`typing flood: 400 frames from 10 tabs, ${chatStates()} chat states reached the agent, ${limited()} rate_limited`);
    expect(chatStates()).toBeGreaterThanOrEqual(20); // the burst of PARLEY_VISITOR_RATE
    expect(chatStates()).toBeLessThan(60);
    await agent.stop();
  });

  it("refuses new connections from one address beyond PARLEY_UPGRADE_RATE with 429", async () => {
    // A bridge of its own (its own store, with the in-memory default): the limit is checked
    // before the site is even looked up, so an unknown site shows it as well.
    const strict = await stack.startBridge({ PARLEY_UPGRADE_RATE: "1/s burst 3" });
    const from = { localAddress: "127.0.0.2" }; // 127.0.0.1 is a local proxy's: not counted
    for (let i = 0; i < 3; i++) await expect(VisitorClient.connect(strict.httpUrl, "nowhere", from)).rejects.toMatchObject({ status: 404 });
    await expect(VisitorClient.connect(strict.httpUrl, "nowhere", from)).rejects.toMatchObject({ status: 429 });
    await expect(VisitorClient.connect(strict.httpUrl, "nowhere", { localAddress: "127.0.0.3" })).rejects.toMatchObject({ status: 404 });
    for (let i = 0; i < 5; i++) await expect(VisitorClient.connect(strict.httpUrl, "nowhere")).rejects.toMatchObject({ status: 404 });
  });

  it("refuses a new connection with 429 while one address keeps PARLEY_SOCKETS_PER_ADDRESS open, and takes it once one closes", async () => {
    const strict = await stack.startBridge({ PARLEY_SOCKETS_PER_ADDRESS: "2" });
    await putSite(strict.httpUrl, "capped");
    const from = { localAddress: "127.0.0.2" }; // 127.0.0.1 is a local proxy's: not counted
    const first = await VisitorClient.connect(strict.httpUrl, "capped", from);
    const second = await VisitorClient.connect(strict.httpUrl, "capped", { ...from, token: first.welcome.token }); // a second tab counts too
    await expect(VisitorClient.connect(strict.httpUrl, "capped", from)).rejects.toMatchObject({ status: 429 });
    const viaProxy = await VisitorClient.connect(strict.httpUrl, "capped");
    await second.close();
    // The bridge counts the socket closed once it has seen the close: until then, still 429.
    const connectStatus = async (): Promise<number | "welcome" | undefined> => {
      try {
        await (await VisitorClient.connect(strict.httpUrl, "capped", from)).close();
        return "welcome";
      } catch (err) {
        return (err as { status?: number }).status;
      }
    };
    await expect.poll(connectStatus).toBe("welcome");
    await Promise.all([first.close(), viaProxy.close()]);
  });

  it("limits all frames of one socket, pings included, to PARLEY_SOCKET_RATE", async () => {
    const strict = await stack.startBridge({ PARLEY_SOCKET_RATE: "1/s burst 5" });
    await putSite(strict.httpUrl, "acme");
    const visitor = await VisitorClient.connect(strict.httpUrl, "acme");
    for (let i = 0; i < 10; i++) visitor.send({ type: "ping" });
    const answered = () => visitor.frames.all.filter((f) => f.type === "pong" || (f.type === "error" && f.code === "rate_limited"));
    await expect.poll(() => answered().length).toBe(10);
    const pongs = answered().filter((f) => f.type === "pong").length;
    expect(pongs).toBeGreaterThanOrEqual(5); // the burst
    expect(pongs).toBeLessThanOrEqual(6); // plus at most one refill within the second
  });

  it("refuses the upgrade with 404 for an unknown site and 403 for a foreign origin", async () => {
    await expect(VisitorClient.connect(stack.bridge.httpUrl, "nope")).rejects.toMatchObject({ status: 404 });
    await expect(VisitorClient.connect(stack.bridge.httpUrl, "locked", { origin: "https://evil.example.com" })).rejects.toMatchObject({ status: 403 });
    await expect(VisitorClient.connect(stack.bridge.httpUrl, "locked")).rejects.toMatchObject({ status: 403 });
    const allowed = await VisitorClient.connect(stack.bridge.httpUrl, "locked", { origin: "https://shop.example.com" });
    expect(allowed.welcome.type).toBe("welcome");
    await allowed.close();
  });
});

/** Creates a site on a bridge of its own: with the in-memory default it has a store of its own. */
async function putSite(httpUrl: string, siteId: string): Promise<void> {
  const put = await fetch(new URL(`/api/sites/${siteId}`, httpUrl), {
    method: "PUT",
    headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
    body: JSON.stringify({ name: siteId }),
  });
  expect(put.ok).toBe(true);
}
