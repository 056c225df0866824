import { randomBytes } from "node:crypto";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { KeyedQueue } from "../../bridge/keyed-queue.js";
import { Outbox } from "../../bridge/outbox.js";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";

// The outbox's takeover (CONTRACT §6: a kill -9 loses no acknowledged message), on the
// in-memory store with a hand-driven clock: process A stalls long enough to be taken for
// dead, carries on, and is then really killed.

describe("outbox", () => {
  it("puts its visitors back into its index after being taken for dead, so a later crash still loses nothing", async () => {
    let now = 0;
    const { store, visitorId } = await storeWithVisitor();
    const redelivered: string[][] = [];
    const outbox = (processId: string) =>
      new Outbox({ store, processId, lanes: new KeyedQueue(), now: () => now, logger: pino({ level: "silent" }), staleMs: 5000, redeliver: async (_visitor, ids) => void redelivered.push(ids) });
    const a = outbox("A");
    const b = outbox("B");
    const append = async (clientId: string) => {
      await a.track(visitorId);
      return (await store.appendVisitorMessage({ visitorId, siteId: "shop", clientId, fallbackName: "V", text: clientId, ts: now, newChatId: newChatId(visitorId, now), owner: "A" })).message.id;
    };

    await a.sweep();
    const first = await append("first");
    now = 10_000; // A stalls past staleMs: B takes it over and relays its message
    await b.sweep();
    expect(redelivered).toEqual([[first]]);
    await store.markRelayed(visitorId, [first]);

    now = 10_500; // A carries on, stores another message, then dies
    await a.sweep();
    const second = await append("second");
    now = 20_000;
    await b.sweep();
    expect(redelivered).toEqual([[first], [second]]);
  });
});

describe("outbox heartbeat", () => {
  it("keeps beating while a takeover is slow, so that the others do not take this live process for dead", async () => {
    let now = 0;
    const { store, visitorId } = await storeWithVisitor();
    let redeliveryStarted!: () => void;
    const redeliveryStarts = new Promise<void>((resolve) => (redeliveryStarted = resolve));
    let releaseRedelivery!: () => void;
    const redeliveryReleased = new Promise<void>((resolve) => (releaseRedelivery = resolve));
    const outbox = (processId: string, redeliver: () => Promise<void>) =>
      new Outbox({ store, processId, lanes: new KeyedQueue(), now: () => now, logger: pino({ level: "silent" }), heartbeatMs: 5, staleMs: 5000, redeliver });
    const dead = outbox("X", async () => {});
    await dead.sweep();
    await dead.track(visitorId);
    await store.appendVisitorMessage({ visitorId, siteId: "shop", clientId: "c1", fallbackName: "V", text: "hi", ts: now, newChatId: newChatId(visitorId, now), owner: "X" });

    // X is gone; A takes it over, and relaying X's message takes long (as routing a chat
    // waits for roster changes while ejabberd is slow to answer).
    now = 10_000;
    const survivor = outbox("A", async () => {
      redeliveryStarted();
      await redeliveryReleased;
    });
    survivor.start();
    await redeliveryStarts;
    now = 20_000;
    try {
      await expect.poll(async () => (await store.lastHeartbeats(["A"]))[0]).toBe(20_000);
      expect(await outbox("B", async () => {}).deadAmong(["A"])).toEqual([]);
    } finally {
      releaseRedelivery();
      await survivor.stop();
    }
  });
});

describe("outbox takeover logs", () => {
  it("warn only when the stopped process left messages to relay, not after every clean restart", async () => {
    let now = 0;
    const store = new MemoryStore();
    const levels: number[] = [];
    const logger = pino({ level: "debug" }, { write: (line: string) => void levels.push((JSON.parse(line) as { level: number }).level) });
    const outbox = (processId: string) => new Outbox({ store, processId, lanes: new KeyedQueue(), now: () => now, logger, staleMs: 5000, redeliver: async () => {} });
    const previous = outbox("A");
    await previous.sweep();
    await previous.stop(); // a clean restart: A's heartbeat is left to go stale

    now = 10_000;
    await outbox("B").sweep();
    expect(await store.lastHeartbeats(["A"])).toEqual([null]); // B did take A over
    expect(levels.filter((level) => level >= 40)).toEqual([]);
  });
});

describe("outbox routing confirmation", () => {
  /** An outbox whose pings ejabberd answers when the test says so. */
  async function confirmedOutbox() {
    const store = new MemoryStore();
    const visitorId = visitorIdFromBytes(randomBytes(17));
    await store.putSite({ id: "shop", name: "Shop", origins: [], maxChatsPerAgent: 2, createdAt: 0, updatedAt: 0 });
    await store.createVisitor({ id: visitorId, siteId: "shop", jid: `shop.${visitorId}@chat.localhost`, tokenHash: "ab".repeat(32), number: 1, createdAt: 0 });
    const pings: { jid: string; answer(routed: boolean): void }[] = [];
    const redelivered: string[][] = [];
    const outbox = new Outbox({
      store,
      processId: "A",
      lanes: new KeyedQueue(),
      now: () => 0,
      logger: pino({ level: "silent" }),
      redeliver: async (_visitor, ids) => void redelivered.push(ids),
      confirmRouted: (jid) => new Promise<boolean>((answer) => pings.push({ jid, answer })),
    });
    await outbox.track(visitorId);
    const append = async (text: string) => {
      const { message } = await store.appendVisitorMessage({ visitorId, siteId: "shop", clientId: text, fallbackName: "V", text, ts: 0, newChatId: newChatId(visitorId, 0), owner: "A" });
      outbox.relaying(visitorId, message.id);
      return message.id;
    };
    const unrelayed = async () => {
      await outbox.stop(); // flushes the relayed marks
      return (await store.unrelayed(visitorId)).map((p) => p.messageId);
    };
    return { outbox, visitorId, pings, redelivered, append, unrelayed };
  }

  it("counts a written message relayed once a ping sent after it is answered, one ping for all written meanwhile", async () => {
    const { outbox, visitorId, pings, append, unrelayed } = await confirmedOutbox();
    const [first, second] = [await append("first"), await append("second")];
    outbox.written(visitorId, first, "ann@localhost");
    outbox.written(visitorId, second, "ben@localhost");
    await expect.poll(() => pings.length).toBe(1);
    expect(pings[0]!.jid).toBe("ben@localhost"); // the last one written
    expect(outbox.relayingHere(visitorId, first)).toBe(true);
    pings[0]!.answer(true);
    await expect.poll(() => outbox.relayingHere(visitorId, second)).toBe(false);
    expect(await unrelayed()).toEqual([]);
  });

  it("pings again while unanswered, and sends again what was unconfirmed when the stream broke", async () => {
    const { outbox, visitorId, pings, redelivered, append, unrelayed } = await confirmedOutbox();
    const first = await append("first");
    outbox.written(visitorId, first, "ann@localhost");
    await expect.poll(() => pings.length).toBe(1);
    pings[0]!.answer(false); // no answer in time
    await expect.poll(() => pings.length).toBe(2);
    const second = await append("second");
    outbox.written(visitorId, second, "ann@localhost");
    outbox.linkLost(); // while the second ping is out: its answer, if any, confirms nothing
    pings[1]!.answer(true);
    await outbox.resendDropped();
    expect(redelivered).toEqual([[first, second]]);
    expect(await unrelayed()).toEqual([first, second]);
  });
});

/** An in-memory store holding the site "shop" and one visitor of it. */
async function storeWithVisitor(): Promise<{ store: MemoryStore; visitorId: string }> {
  const store = new MemoryStore();
  const visitorId = visitorIdFromBytes(randomBytes(17));
  await store.putSite({ id: "shop", name: "Shop", origins: [], maxChatsPerAgent: 2, createdAt: 0, updatedAt: 0 });
  await store.createVisitor({ id: visitorId, siteId: "shop", jid: `shop.${visitorId}@chat.localhost`, tokenHash: "ab".repeat(32), number: 1, createdAt: 0 });
  return { store, visitorId };
}
