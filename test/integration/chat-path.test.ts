import { connect, Socket } from "node:net";
import { xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { newChatId } from "../../bridge/store/ids.js";
import type { AgentClient } from "../support/agent-client.js";
import { startStack, type Stack } from "../support/stack.js";

// The core path (issue 2): visitor → agent's Jabber client → visitor, against a real
// ejabberd 23.01 (and Redis when PARLEY_TEST_STORE=redis).

const CHATSTATES = "http://jabber.org/protocol/chatstates";
const RECEIPTS = "urn:xmpp:receipts";
const MULTIBYTE = "Zoë: 你好, مرحبا! 👋🏽👩‍👩‍👧 e\u0301 — ok";

let stack: Stack;
let agent1: AgentClient;

beforeAll(async () => {
  stack = await startStack();
  expect((await stack.api("PUT", "/api/sites/acme", { name: "Acme Inc", maxChatsPerAgent: 3, welcome: "Hi there" })).status).toBe(201);
  expect((await stack.api("PUT", "/api/sites/acme/agents/agent1@localhost", { name: "Alice" })).status).toBe(201);
  agent1 = await stack.availableAgent("acme", "agent1");
});
afterAll(async () => {
  await stack?.stop();
});

describe("core chat path", () => {
  it("puts the site's desk contact in each agent's roster", async () => {
    const desk = (await agent1.roster()).find((item) => item.attrs.jid === "acme@chat.localhost");
    expect(desk?.attrs).toMatchObject({ name: "Acme Inc", subscription: "both" });
    expect(desk?.getChildText("group")).toBe("Acme Inc");
  });

  it("carries a visitor's message to the agent and the reply back, with typing, receipts and multibyte text", async () => {
    const visitor = await stack.visitor("acme");
    expect(visitor.welcome).toMatchObject({ type: "welcome", resumed: false, agentsOnline: true, agent: null, history: [] });
    const visitorJid = `acme.${visitor.welcome.visitorId}@chat.localhost`;

    // visitor sends → stored and acknowledged → agent expects it from the visitor's JID
    const ack = await visitor.say(MULTIBYTE);
    expect(ack.messageId).toBeTruthy();
    const received = await agent1.nextBody(visitorJid);
    expect(received.getChildText("body")).toBe(MULTIBYTE);
    expect(received.attrs.type).toBe("chat");
    expect(received.attrs.to).toBe("agent1@localhost"); // to the bare JID, so carbons reach every device

    // the roster item was there before the message
    const push = agent1.rosterPushes.all.find((item) => item.attrs.jid === visitorJid);
    expect(push?.attrs.name).toMatch(/^Visitor \d{4}$/);
    expect(push?.getChildText("group")).toBe("Acme Inc");
    expect(agent1.rosterPushes.all.indexOf(push!)).toBeGreaterThanOrEqual(0);
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Alice");

    // the visitor's presence shows in the agent's roster
    const presence = await agent1.presences.next((p) => p.attrs.from?.startsWith(visitorJid) === true && !p.attrs.type, "visitor presence");
    expect(presence.attrs.type).toBeUndefined();

    // typing both ways
    visitor.send({ type: "typing", state: "composing" });
    await agent1.messages.next((m) => m.attrs.from === visitorJid && Boolean(m.getChild("composing", CHATSTATES)), "composing");
    await agent1.sendMessage(visitorJid, null, [xml("composing", { xmlns: CHATSTATES })]);
    await visitor.next("typing", (f) => f.state === "composing" && f.name === "Alice");

    // agent replies with a receipt request → visitor gets it → receipt answered
    const replyId = await agent1.sendMessage(visitorJid, `Re: ${MULTIBYTE}`, [xml("request", { xmlns: RECEIPTS }), xml("active", { xmlns: CHATSTATES })]);
    const reply = await visitor.next("message", (f) => f.from === "agent");
    expect(reply).toMatchObject({ from: "agent", name: "Alice", text: `Re: ${MULTIBYTE}` });
    const receipt = await agent1.messages.next((m) => m.getChild("received", RECEIPTS)?.attrs.id === replyId, "the receipt");
    expect(receipt.attrs.from).toBe(visitorJid);

    // the transcript has both, in order
    const chatId = (await stack.api("GET", "/api/sites/acme/chats?state=active")).body[0].id as string;
    const transcript = (await stack.api("GET", `/api/chats/${chatId}`)).body;
    expect(transcript.messages.map((m: { from: string; text: string }) => [m.from, m.text])).toEqual([
      ["visitor", MULTIBYTE],
      ["agent", `Re: ${MULTIBYTE}`],
    ]);
    expect(transcript).toMatchObject({ siteId: "acme", state: "active", agent: { jid: "agent1@localhost", name: "Alice" } });
  });

  it("resumes a visitor with their token, and every tab gets every frame", async () => {
    const tab1 = await stack.visitor("acme");
    const visitorJid = `acme.${tab1.welcome.visitorId}@chat.localhost`;
    await tab1.say("first from tab 1", "t1-1");
    await agent1.nextBody(visitorJid, (b) => b === "first from tab 1");

    const tab2 = await stack.visitor("acme", { token: tab1.welcome.token });
    expect(tab2.welcome).toMatchObject({ resumed: true, visitorId: tab1.welcome.visitorId, agent: { name: "Alice" } });
    expect(tab2.welcome.history.map((m) => m.text)).toEqual(["first from tab 1"]);

    await tab2.say("second from tab 2", "t2-1");
    await tab1.next("message", (f) => f.from === "visitor" && f.text === "second from tab 2" && f.id === "t2-1");
    await agent1.nextBody(visitorJid, (b) => b === "second from tab 2");

    await agent1.sendMessage(visitorJid, "to both tabs");
    await tab1.next("message", (f) => f.text === "to both tabs");
    await tab2.next("message", (f) => f.text === "to both tabs");

    // a resent id (after a reconnect) is acknowledged again, not duplicated
    const firstAck = tab2.frames.all.find((f) => f.type === "ack" && f.id === "t2-1");
    const again = await tab2.say("second from tab 2", "t2-1");
    expect(firstAck).toMatchObject({ messageId: again.messageId });
    const tab3 = await stack.visitor("acme", { token: tab1.welcome.token });
    expect(tab3.welcome.history.filter((m) => m.text === "second from tab 2")).toHaveLength(1);
  });

  it("resumes a visitor whose history is more than a socket may buffer, with the newest of it", async () => {
    const first = await stack.visitor("acme");
    const { visitorId, token } = first.welcome;
    await first.close();
    // 150 messages of 16 KB: 2.4 MB, over the gateway's 1 MiB slow-reader limit in one frame,
    // and over the protocol's 16 KiB many times: the welcome carries the newest that fit.
    for (let i = 1; i <= 150; i++) {
      const ts = Date.now();
      await stack.bridge.store.appendVisitorMessage({ visitorId, siteId: "acme", clientId: `long-${i}`, fallbackName: "Visitor", text: `${i} ${"🙂".repeat(3990)}`, ts, newChatId: newChatId(visitorId, ts) });
    }
    const again = await stack.visitor("acme", { token });
    const numbers = again.welcome.history.map((m) => Number(m.text.split(" ")[0]));
    expect(numbers.length).toBeGreaterThanOrEqual(1);
    expect(numbers).toEqual(Array.from({ length: numbers.length }, (_, k) => 150 - numbers.length + 1 + k));
    expect(Buffer.byteLength(JSON.stringify(again.welcome))).toBeLessThanOrEqual(16 * 1024); // the protocol's frame limit
    await again.close();
  });

  it("starts a new visitor for a token of another site or a forged one", async () => {
    await stack.api("PUT", "/api/sites/other", { name: "Other" });
    const visitor = await stack.visitor("acme");
    const foreign = await stack.visitor("other", { token: visitor.welcome.token });
    expect(foreign.welcome.resumed).toBe(false);
    expect(foreign.welcome.visitorId).not.toBe(visitor.welcome.visitorId);
    const forged = await stack.visitor("acme", { token: `${visitor.welcome.visitorId}.${"A".repeat(43)}` });
    expect(forged.welcome.resumed).toBe(false);
  });

  it("sends the 101 response and the welcome frame in one write", async () => {
    // One system call, and one wake-up of the client, per new session instead of two: the
    // bridge holds the 101 back until the visitor is stored. Counted where the bridge's
    // socket hands data to the kernel (the bridge runs in this process).
    const streams = Socket.prototype as unknown as Record<"_write" | "_writev", (...args: unknown[]) => void>;
    const writes = [vi.spyOn(streams, "_write"), vi.spyOn(streams, "_writev")];
    const url = new URL(stack.bridge.httpUrl);
    const client = connect(Number(url.port), url.hostname);
    try {
      await new Promise((resolve) => client.once("connect", resolve));
      let received = "";
      const welcomed = new Promise<void>((resolve) =>
        client.on("data", (chunk: Buffer) => {
          received += chunk.toString("utf8");
          if (received.includes('"type":"welcome"')) resolve();
        }),
      );
      client.write(
        "GET /visitor?site=acme HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
          "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
      );
      await welcomed;
      expect(received.startsWith("HTTP/1.1 101 ")).toBe(true);
      const toClient = writes.flatMap((spy) => spy.mock.contexts).filter((socket) => (socket as Socket).remotePort === client.localPort);
      expect(toClient).toHaveLength(1);
    } finally {
      client.destroy();
      for (const spy of writes) spy.mockRestore();
    }
  });

  it("answers item-not-found for an unknown visitor or desk and forbidden for anyone but the chat's agent", async () => {
    const unknownId = await agent1.sendMessage("acme.aaaaaaaaaaaaaaaaaaaaaaaaaa@chat.localhost", "anyone there?");
    const notFound = await agent1.messages.next((m) => m.attrs.type === "error" && m.attrs.id === unknownId, "item-not-found");
    expect(notFound.getChild("error")?.getChild("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")).toBeDefined();
    const noDeskId = await agent1.sendMessage("no-such-site@chat.localhost", "!help");
    const noDesk = await agent1.messages.next((m) => m.attrs.type === "error" && m.attrs.id === noDeskId, "item-not-found from a desk that does not exist");
    expect(noDesk.getChild("error")?.getChild("item-not-found", "urn:ietf:params:xml:ns:xmpp-stanzas")).toBeDefined();

    const visitor = await stack.visitor("acme");
    const visitorJid = `acme.${visitor.welcome.visitorId}@chat.localhost`;
    await visitor.say("hello agent");
    await agent1.nextBody(visitorJid);
    await stack.ejabberd.register("stranger", "stranger-password");
    const { AgentClient } = await import("../support/agent-client.js");
    const stranger = await AgentClient.connect({ port: stack.ejabberd.c2sPort, username: "stranger", password: "stranger-password" });
    try {
      const id = await stranger.sendMessage(visitorJid, "I am not your agent");
      const forbidden = await stranger.messages.next((m) => m.attrs.type === "error" && m.attrs.id === id, "forbidden");
      expect(forbidden.getChild("error")?.getChild("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")).toBeDefined();
    } finally {
      await stranger.stop();
    }
    expect(visitor.frames.pending((f) => f.type === "message" && f.text === "I am not your agent")).toEqual([]);
  });

  it("refuses an agent message over 10,000 characters with a policy-violation error: nothing stored, shown or receipted", async () => {
    // A site of its own: Alice's chats on acme are at the site's cap by now.
    const { agent, visitor, visitorJid, chatId } = await stack.openChat("long", "agent2", "a long answer, please");

    const longId = await agent.sendMessage(visitorJid, "x".repeat(10_001), [xml("request", { xmlns: RECEIPTS })]);
    const refusal = await agent.messages.next((m) => m.attrs.type === "error" && m.attrs.id === longId, "the refusal");
    expect(refusal.attrs.from).toBe(visitorJid);
    const error = refusal.getChild("error")!;
    expect(error.getChild("policy-violation", "urn:ietf:params:xml:ns:xmpp-stanzas")).toBeDefined();
    expect(error.getChildText("text", "urn:ietf:params:xml:ns:xmpp-stanzas")).toContain("10000 characters");

    // The next message is the first the visitor gets, the transcript never had the long one, no receipt came for it.
    await agent.sendMessage(visitorJid, "short one");
    expect((await visitor.next("message", (f) => f.from === "agent")).text).toBe("short one");
    const transcript = (await stack.api("GET", `/api/chats/${chatId}`)).body;
    expect(transcript.messages.map((m: { text: string }) => m.text)).toEqual(["a long answer, please", "short one"]);
    expect(agent.messages.all.filter((m) => m.getChild("received", RECEIPTS)?.attrs.id === longId)).toEqual([]);
    await agent.stop();
  });

  it("keeps every frame it sends a visitor within 16 KiB: a resumed welcome carries the newest messages that fit", async () => {
    const { agent, visitor, visitorJid } = await stack.openChat("big", "agent2", "first, short");
    const long = (i: number) => `${i}:${"é".repeat(3990)}`; // about 8 KB each
    for (let i = 1; i <= 4; i++) await visitor.say(long(i));
    const longest = "x".repeat(10_000); // an agent's longest message still fits
    await agent.sendMessage(visitorJid, longest);
    await visitor.next("message", (f) => f.text === longest);

    // A client that enforces the limit would be closed (1009) by anything larger.
    const resumed = await stack.visitor("big", { token: visitor.welcome.token, maxPayload: 16 * 1024 });
    const texts = resumed.welcome.history.map((m) => m.text);
    expect(texts.at(-1)).toBe(longest);
    expect(texts.length).toBeGreaterThanOrEqual(1);
    expect(texts).not.toContain("first, short"); // the older ones did not fit
    expect(Buffer.byteLength(JSON.stringify(resumed.welcome))).toBeLessThanOrEqual(16 * 1024);
    await agent.sendMessage(visitorJid, "still within the limit?");
    await resumed.next("message", (f) => f.text === "still within the limit?");
    await agent.stop();
  });

  it("answers disco#info, version and ping, and service-unavailable for unknown IQs", async () => {
    const info = await agent1.xmpp.iqCaller.get(xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }), "chat.localhost");
    expect(info.getChildren("feature").map((f) => f.attrs.var)).toEqual(expect.arrayContaining(["urn:xmpp:ping", "jabber:iq:version"]));
    const version = await agent1.xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:version" }), "chat.localhost");
    expect(version.getChildText("name")).toBe("Parley");
    await agent1.xmpp.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), "chat.localhost");
    await expect(agent1.xmpp.iqCaller.get(xml("query", { xmlns: "urn:example:nothing" }), "chat.localhost")).rejects.toMatchObject({
      condition: "service-unavailable",
    });
  });

  it("counts messages the server bounces, e.g. to an agent account that does not exist", async () => {
    await stack.api("PUT", "/api/sites/ghostly", { name: "Ghostly" });
    await stack.api("PUT", "/api/sites/ghostly/agents/ghost@localhost", {});
    const visitor = await stack.visitor("ghostly");
    await visitor.say("is anyone there?"); // offline mode: sent to every agent of the site, so to ghost@localhost
    const bounces = async () => (await (await fetch(new URL("/metrics", stack.bridge.httpUrl))).text()).match(/parley_message_bounces_total\{condition="service-unavailable"\} (\d+)/)?.[1];
    await expect.poll(bounces).toMatch(/^[1-9]/);
  });

  it("reports health and metrics", async () => {
    const health = await fetch(new URL("/healthz", stack.bridge.httpUrl));
    expect(health.status).toBe(200);
    expect(await health.json()).toMatchObject({ status: "ok", xmpp: "up", store: "up" });
    const metrics = await (await fetch(new URL("/metrics", stack.bridge.httpUrl))).text();
    expect(metrics).toMatch(/parley_messages_total\{direction="in"\} [1-9]/);
    expect(metrics).toMatch(/parley_chats\{state="active"\} [1-9]/);
    expect(metrics).toContain("parley_stanza_handling_seconds_bucket");
  });
});
