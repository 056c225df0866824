import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { newChatId } from "../../bridge/store/ids.js";
import { RedisStore } from "../../bridge/store/redis-store.js";
import { startStack, type Stack } from "../support/stack.js";

// Redis pub/sub keeps nothing for a subscriber that is reconnecting: frames published in
// that moment never reach the socket. The bridge then catches its visitors up from the
// durable log, so a live visitor still gets every agent message, exactly once.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["ann"], store: "redis" });
  await stack.api("PUT", "/api/sites/bus", { name: "Bus" });
  await stack.api("PUT", "/api/sites/bus/agents/ann@localhost", { name: "Ann" });
});
afterAll(async () => {
  await stack?.stop();
});

describe("bus outages", () => {
  it("gives a connected visitor every agent message exactly once while its subscriber connection is cut again and again", async () => {
    const ann = await stack.availableAgent("bus", "ann");
    const visitor = await stack.visitor("bus");
    const jid = `bus.${visitor.welcome.visitorId}@chat.localhost`;
    await visitor.say("hello");
    await ann.nextBody(jid);

    const admin = new Redis(stack.redis!.url);
    try {
      let kills = 0;
      for (let i = 1; i <= 20; i++) {
        if (i % 4 === 1) kills += Number(await admin.call("CLIENT", "KILL", "TYPE", "pubsub"));
        await ann.sendMessage(jid, `update ${i}`);
      }
      for (let i = 1; i <= 20; i++) await visitor.next("message", (f) => f.text === `update ${i}`, 20_000);
      const texts = visitor.frames.all.filter((f) => f.type === "message" && f.from === "agent").map((f) => (f as { text: string }).text);
      expect(texts.sort()).toEqual(Array.from({ length: 20 }, (_, k) => `update ${k + 1}`).sort());
      console.log(`bus outages: ${kills} subscriber connections cut, 20 of 20 agent messages shown once`);
      expect(kills).toBeGreaterThan(0);
    } finally {
      admin.disconnect();
    }
  });
});

describe("a message stored whose first attempt stopped there", () => {
  // What a lost reply looks like: the append ran in Redis (ioredis resends a command whose
  // answer a dropped connection lost, and the resend finds it stored), then nothing else.
  // The owner is this live process, so no outbox takeover would ever relay it.
  it("relays it when the widget resends it, instead of only acknowledging it again", async () => {
    const ann = await stack.availableAgent("bus", "ann");
    const visitor = await stack.visitor("bus");
    const visitorId = visitor.welcome.visitorId;
    const store = new RedisStore({ url: stack.redis!.url });
    try {
      const now = Date.now();
      const first = await store.appendVisitorMessage({ visitorId, siteId: "bus", clientId: "lost-reply-1", fallbackName: "Visitor", text: "stored, then nothing", ts: now, newChatId: newChatId(visitorId, now), publisher: "gone", owner: stack.bridge.processId });
      visitor.send({ type: "message", id: "lost-reply-1", text: "stored, then nothing" });
      expect(await visitor.next("ack", (f) => f.id === "lost-reply-1")).toMatchObject({ messageId: first.message.id });
      await ann.nextBody(`bus.${visitorId}@chat.localhost`, (b) => b === "stored, then nothing");
      await expect.poll(() => store.unrelayed(visitorId)).toEqual([]);
    } finally {
      await store.close();
    }
  });
});
