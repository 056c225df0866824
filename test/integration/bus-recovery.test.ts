import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
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
