import { createHmac } from "node:crypto";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Inbox } from "../support/inbox.js";
import { startStack, type Stack } from "../support/stack.js";
import type { VisitorClient } from "../support/visitor-client.js";

// The chat's life over time (issue 3): the queue, the unanswered-chat rule, reassignment
// after an agent drops, transcripts, and webhooks that survive a bridge restart.
// Redis store: the webhook queue must outlive the bridge process.

let stack: Stack;
const jidOf = (siteId: string, visitor: VisitorClient) => `${siteId}.${visitor.welcome.visitorId}@chat.localhost`;

beforeAll(async () => {
  stack = await startStack({ agents: ["solo", "first", "second", "hooks"], store: "redis", env: { PARLEY_AGENT_GRACE_MS: "1500" } });
});
afterAll(async () => {
  await stack?.stop();
});

describe("chat lifecycle", () => {
  it("queues visitors in order with a cap of 1 and assigns them, once each, as chats end", async () => {
    await stack.api("PUT", "/api/sites/queue", { name: "Queue", maxChatsPerAgent: 1 });
    await stack.api("PUT", "/api/sites/queue/agents/solo@localhost", { name: "Solo" });
    const solo = await stack.availableAgent("queue", "solo");

    const [v1, v2, v3] = [await stack.visitor("queue"), await stack.visitor("queue"), await stack.visitor("queue")];
    await v1.say("one");
    await v1.next("agent", (f) => f.state === "joined");
    await v2.say("two");
    expect(await v2.next("queue")).toEqual({ type: "queue", position: 1 });
    await v3.say("three");
    expect(await v3.next("queue")).toEqual({ type: "queue", position: 2 });
    // The desk contact's status line shows the site's state.
    const deskStatus = (status: string) => solo.presences.next((p) => p.attrs.from === "queue@chat.localhost" && p.getChildText("status") === status, `desk status "${status}"`);
    await deskStatus("2 waiting, 1 chatting");
    await solo.sendMessage("queue@chat.localhost", "!queue");
    expect((await solo.nextBody("queue@chat.localhost")).getChildText("body")).toMatch(/^\[parley\] 2 waiting:\n1\. Visitor \d+ — waiting \d+ s\n2\. Visitor \d+ — waiting \d+ s$/);

    await solo.nextBody(jidOf("queue", v1), (b) => b === "one");
    await solo.sendMessage(jidOf("queue", v1), "!end");
    await v1.next("ended");
    await v2.next("agent", (f) => f.state === "joined" && f.name === "Solo");
    expect(await v3.next("queue")).toEqual({ type: "queue", position: 1 });
    await deskStatus("1 waiting, 1 chatting");
    await solo.nextBody(jidOf("queue", v2), (b) => b === "two");

    await solo.sendMessage(jidOf("queue", v2), "!end");
    await v3.next("agent", (f) => f.state === "joined");
    await solo.nextBody(jidOf("queue", v3), (b) => b === "three");
    expect(v3.frames.all.filter((f) => f.type === "agent" && f.state === "joined")).toHaveLength(1);
    expect((await stack.api("GET", "/api/sites/queue/agents")).body[0].activeChats).toBe(1);
  });

  it("moves an unanswered chat to the next agent with the context, and tells the first agent why", async () => {
    await stack.api("PUT", "/api/sites/slow", { name: "Slow", answerTimeoutSeconds: 1 });
    await stack.api("PUT", "/api/sites/slow/agents/first@localhost", { name: "First" });
    await stack.api("PUT", "/api/sites/slow/agents/second@localhost", { name: "Second" });
    const first = await stack.availableAgent("slow", "first");
    const visitor = await stack.visitor("slow");
    await visitor.say("anyone?");
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "First");
    await first.nextBody(jidOf("slow", visitor), (b) => b === "anyone?");
    const second = await stack.agent("second");

    const why = await first.nextBody(jidOf("slow", visitor), (b) => b.startsWith("[parley] You did not answer"));
    expect(why.getChildText("body")).toContain("moved to Second");
    await visitor.next("agent", (f) => f.state === "left" && f.name === "First");
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Second");
    await second.nextBody(jidOf("slow", visitor), (b) => b.endsWith("anyone?"));
    await second.sendMessage(jidOf("slow", visitor), "Second here");
    await visitor.next("message", (f) => f.text === "Second here" && f.name === "Second");
    await first.stop();
    await second.stop();
  });

  it("moves the chats of an agent whose connection drops after the grace period", async () => {
    await stack.api("PUT", "/api/sites/drop", { name: "Drop" });
    await stack.api("PUT", "/api/sites/drop/agents/first@localhost", { name: "First" });
    await stack.api("PUT", "/api/sites/drop/agents/second@localhost", { name: "Second" });
    const first = await stack.availableAgent("drop", "first", { resource: "phone" });
    const visitor = await stack.visitor("drop");
    await visitor.say("help me");
    await first.nextBody(jidOf("drop", visitor));
    await first.sendMessage(jidOf("drop", visitor), "on it");
    await visitor.next("message", (f) => f.text === "on it");
    const second = await stack.availableAgent("drop", "second", { resource: "desk" });

    first.drop();
    await visitor.next("agent", (f) => f.state === "left" && f.name === "First", 20_000);
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Second");
    await second.nextBody(jidOf("drop", visitor), (b) => b.endsWith("on it"));
    const chats = (await stack.api("GET", "/api/sites/drop/chats?state=active")).body;
    expect(chats).toHaveLength(1);
    expect(chats[0].agent.jid).toBe("second@localhost");
    const agents = (await stack.api("GET", "/api/sites/drop/agents")).body as { jid: string; activeChats: number }[];
    expect(agents.map((a) => a.activeChats)).toEqual([0, 1]);
    await second.stop();
  });

  it("delivers chat.ended to a receiver that fails twice, signed, across a bridge restart, with the exact transcript", async () => {
    const received = new Inbox<{ body: string; headers: IncomingMessage["headers"]; status: number }>();
    let calls = 0;
    const receiver: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => {
        calls += 1;
        const status = calls <= 2 ? 500 : 204;
        res.writeHead(status).end();
        received.push({ body: Buffer.concat(chunks).toString("utf8"), headers: req.headers, status });
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    const secret = "webhook-secret-0123456789";
    try {
      await stack.api("PUT", "/api/sites/hooked", { name: "Hooked", webhookUrl: url, webhookSecret: secret });
      await stack.api("PUT", "/api/sites/hooked/agents/hooks@localhost", { name: "Hook" });
      const agent = await stack.availableAgent("hooked", "hooks");
      const visitor = await stack.visitor("hooked");
      await visitor.say("Grüße 👋");
      await agent.nextBody(jidOf("hooked", visitor));
      await agent.sendMessage(jidOf("hooked", visitor), "Hallo!");
      await visitor.next("message", (f) => f.text === "Hallo!");
      await agent.sendMessage(jidOf("hooked", visitor), "!note returning customer");
      await agent.nextBody(jidOf("hooked", visitor), (b) => b.startsWith("[parley] Note"));
      await agent.sendMessage(jidOf("hooked", visitor), "!end");
      await visitor.next("ended");

      const firstTry = await received.next((r) => r.status === 500, "the first attempt");
      // Restart the bridge between attempts: the event waits in Redis, not in memory.
      await stack.bridge.stop();
      const restarted = await stack.startBridge();
      expect(restarted.httpUrl).toBeTruthy();
      const secondTry = await received.next((r) => r.status === 500, "the second attempt");
      const third = await received.next((r) => r.status === 204, "the third attempt", 30_000);

      expect(secondTry.body).toBe(firstTry.body);
      expect(third.body).toBe(firstTry.body);
      expect(third.headers["x-parley-signature"]).toBe(`sha256=${createHmac("sha256", secret).update(third.body).digest("hex")}`);
      expect(third.headers["x-parley-delivery"]).toBe(firstTry.headers["x-parley-delivery"]);
      const event = JSON.parse(third.body);
      expect(event).toMatchObject({ event: "chat.ended", siteId: "hooked", chat: { state: "ended", agent: { jid: "hooks@localhost" } } });
      expect(event.id).toBe(third.headers["x-parley-delivery"]);
      expect(event.chat.messages.map((m: { from: string; text: string }) => [m.from, m.text])).toEqual([
        ["visitor", "Grüße 👋"],
        ["agent", "Hallo!"],
        ["note", "returning customer"],
      ]);
      expect(calls).toBe(3);
      await agent.stop();
    } finally {
      receiver.close();
    }
  });
});
