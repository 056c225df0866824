import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { RedisStore } from "../../bridge/store/redis-store.js";
import { newChatId } from "../../bridge/store/ids.js";
import type { Store, Visitor } from "../../bridge/store/types.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { startRedis, type PrivateRedis } from "../support/redis.js";

// One contract, two backends: whatever the bridge relies on holds for both.

let redis: PrivateRedis;
beforeAll(async () => {
  redis = await startRedis();
});
afterAll(async () => {
  await redis?.stop();
});

const uniqueVisitorId = () => visitorIdFromBytes(randomBytes(17));
const site = (id: string) => ({ id, name: `Site ${id}`, origins: [], maxChatsPerAgent: 2, createdAt: 1, updatedAt: 1 });
const visitor = (siteId: string, id = uniqueVisitorId()): Visitor => ({
  id,
  siteId,
  jid: `${siteId}.${id}@chat.localhost`,
  tokenHash: "ab".repeat(32),
  number: 1,
  createdAt: 1000,
});

describe.each([
  ["memory", () => new MemoryStore()],
  ["redis", () => new RedisStore({ url: redis.url })],
])("store contract: %s", (_name, makeStore: () => Store) => {
  let store: Store;
  let siteId: string;
  beforeEach(async (ctx) => {
    store = makeStore();
    siteId = `s${Math.abs(hash(ctx.task.id))}`;
    await store.putSite(site(siteId));
    return async () => {
      await store.close();
    };
  });

  it("stores, lists and deletes sites", async () => {
    expect(await store.getSite(siteId)).toMatchObject({ id: siteId, name: `Site ${siteId}` });
    expect((await store.listSites()).map((s) => s.id)).toContain(siteId);
    expect(await store.deleteSite(siteId)).toBe(true);
    expect(await store.getSite(siteId)).toBeNull();
    expect(await store.deleteSite(siteId)).toBe(false);
  });

  it("keeps agents per site and knows each agent's sites", async () => {
    await store.putAgent(siteId, { jid: "ann@localhost", name: "Ann", addedAt: 5 });
    await store.putAgent(siteId, { jid: "bob@localhost", addedAt: 6 });
    expect(await store.listAgents(siteId)).toEqual([
      { jid: "ann@localhost", name: "Ann", addedAt: 5 },
      { jid: "bob@localhost", addedAt: 6 },
    ]);
    expect(await store.sitesOfAgent("ann@localhost")).toContain(siteId);
    expect(await store.removeAgent(siteId, "ann@localhost")).toBe(true);
    expect(await store.sitesOfAgent("ann@localhost")).not.toContain(siteId);
  });

  it("aggregates an agent's presence over resources", async () => {
    const jid = `${siteId}-agent@localhost`;
    expect(await store.getAgentPresence(jid)).toBe("offline");
    expect(await store.setAgentResource(jid, "phone", "away", 10)).toEqual({ before: "offline", after: "away" });
    expect(await store.setAgentResource(jid, "laptop", "available", 11)).toEqual({ before: "away", after: "available" });
    expect(await store.agentUnavailableSince(jid)).toBeNull();
    expect(await store.setAgentResource(jid, "laptop", null, 12)).toEqual({ before: "available", after: "away" });
    expect(await store.agentUnavailableSince(jid)).toBe(12);
    expect(await store.setAgentResource(jid, "phone", null, 13)).toEqual({ before: "away", after: "offline" });
  });

  it("creates, reads and patches visitors", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    expect(await store.getVisitor(v.id)).toEqual(v);
    const patched = await store.updateVisitor(v.id, { name: "Zoë", page: { url: "https://a.test/", title: "Home" } });
    expect(patched).toMatchObject({ name: "Zoë", page: { url: "https://a.test/", title: "Home" } });
    expect(await store.updateVisitor(uniqueVisitorId(), { name: "x" })).toBeNull();
    expect(await store.visitorWithChat(v.id)).toEqual({ visitor: expect.objectContaining({ id: v.id, name: "Zoë" }), chat: null });
    expect(await store.visitorWithChat(uniqueVisitorId())).toBeNull();
    expect(await store.nextVisitorNumber(siteId)).toBe(1);
    expect(await store.nextVisitorNumber(siteId)).toBe(2);
  });

  it("tracks online visitors until their mark expires", async () => {
    const v = visitor(siteId);
    await store.markOnline(siteId, v.id, 2000);
    expect(await store.isOnline(siteId, v.id, 1999)).toBe(true);
    expect(await store.onlineVisitors(siteId, 1500)).toEqual([v.id]);
    expect(await store.isOnline(siteId, v.id, 2000)).toBe(false);
    expect(await store.onlineVisitors(siteId, 2500)).toEqual([]);
    await store.markManyOnline(siteId, ["a", "b", "c"], 3000);
    expect((await store.onlineVisitors(siteId, 2600)).sort()).toEqual(["a", "b", "c"]);
  });

  it("opens a chat with the first message and dedupes resent client ids", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const input = { visitorId: v.id, siteId, clientId: "c1", name: "Visitor 0001", text: "héllo 你好 👋🏽", ts: 5000, newChatId: newChatId(v.id, 5000) };
    const first = await store.appendVisitorMessage(input);
    expect(first).toMatchObject({ chatCreated: true, duplicate: false, chat: { id: input.newChatId, state: "new", siteId, visitorId: v.id } });
    expect((await store.getVisitor(v.id))?.chatId).toBe(input.newChatId);
    expect(await store.visitorWithChat(v.id)).toMatchObject({ visitor: { id: v.id, chatId: input.newChatId }, chat: { id: input.newChatId, state: "new" } });

    const again = await store.appendVisitorMessage({ ...input, ts: 6000, newChatId: newChatId(v.id, 6000) });
    expect(again).toMatchObject({ duplicate: true, chatCreated: false, message: { id: first.message.id, text: "héllo 你好 👋🏽" } });

    const second = await store.appendVisitorMessage({ ...input, clientId: "c2", text: "second", ts: 6001, newChatId: newChatId(v.id, 6001) });
    expect(second).toMatchObject({ chatCreated: false, duplicate: false, chat: { id: input.newChatId } });
    expect(second.message.id > first.message.id || second.message.id.length > first.message.id.length).toBe(true);

    await store.appendMessage(v.id, { chatId: input.newChatId, from: "agent", name: "Ann", text: "hi!", ts: 6002 });
    await store.appendMessage(v.id, { chatId: input.newChatId, from: "note", name: "Ann", text: "vip", ts: 6003 });
    const transcript = await store.transcript(input.newChatId);
    expect(transcript.map((m) => [m.from, m.text])).toEqual([
      ["visitor", "héllo 你好 👋🏽"],
      ["visitor", "second"],
      ["agent", "hi!"],
      ["note", "vip"],
    ]);
    expect((await store.history(v.id, 2)).map((m) => m.text)).toEqual(["hi!", "vip"]);
  });

  it("applies chat updates only from the expected state, and an ended chat frees the visitor", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const { chat } = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "a", name: "V", text: "x", ts: 7000, newChatId: newChatId(v.id, 7000) });
    expect(await store.updateChat(chat.id, ["queued"], { state: "active" })).toBeNull();
    expect(await store.updateChat(chat.id, ["new"], { state: "active", agentJid: "ann@localhost", assignedAt: 7001 })).toMatchObject({
      state: "active",
      agentJid: "ann@localhost",
      assignedAt: 7001,
    });
    expect((await store.listChats(siteId, "active")).map((c) => c.id)).toEqual([chat.id]);
    expect(await store.updateChat(chat.id, ["active"], { state: "ended", endedAt: 8000 })).toMatchObject({ state: "ended", endedAt: 8000 });
    expect((await store.getVisitor(v.id))?.chatId).toBeUndefined();
    expect((await store.listChats(siteId, "ended")).map((c) => c.id)).toEqual([chat.id]);
    const next = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "b", name: "V", text: "again", ts: 9000, newChatId: newChatId(v.id, 9000) });
    expect(next.chatCreated).toBe(true);

    // retention: an ended chat goes with its messages; the next chat stays
    await store.purgeChat(next.chat.id); // not ended: kept
    expect(await store.getChat(next.chat.id)).not.toBeNull();
    await store.purgeChat(chat.id);
    expect(await store.getChat(chat.id)).toBeNull();
    expect(await store.transcript(chat.id)).toEqual([]);
    expect((await store.history(v.id, 10)).map((m) => m.text)).toEqual(["again"]);
    expect((await store.listChats(siteId, "ended")).map((c) => c.id)).toEqual([]);
  });

  it("claims agents atomically under the cap and idempotently per chat", async () => {
    const results = await Promise.all(["c1", "c2", "c3", "c4"].map((chatId) => store.claimAgent(siteId, "ann@localhost", chatId, 2, 100)));
    expect(results.filter(Boolean)).toHaveLength(2);
    const claimed = ["c1", "c2", "c3", "c4"].filter((_, i) => results[i]);
    expect(await store.claimAgent(siteId, "ann@localhost", claimed[0]!, 2, 200)).toBe(true);
    const loads = await store.agentLoads(siteId);
    expect(loads.get("ann@localhost")?.chatIds.sort()).toEqual(claimed.sort());
    await store.releaseAgent(siteId, "ann@localhost", claimed[0]!);
    expect(await store.claimAgent(siteId, "ann@localhost", "c9", 2, 300)).toBe(true);
    expect((await store.agentLoads(siteId)).get("ann@localhost")?.lastAssignedAt).toBe(300);
  });

  it("queues chats first in, first out, each handed out once", async () => {
    await store.enqueue(siteId, "q1", 10);
    await store.enqueue(siteId, "q2", 20);
    await store.enqueue(siteId, "q3", 30);
    await store.enqueue(siteId, "q1", 40); // already queued: keeps its place
    expect(await store.queuePosition(siteId, "q2")).toBe(2);
    expect(await store.queueLength(siteId)).toBe(3);
    await store.removeFromQueue(siteId, "q2");
    const popped = await Promise.all([store.dequeue(siteId), store.dequeue(siteId), store.dequeue(siteId)]);
    expect(popped).toEqual(["q1", "q3", null]);
  });

  it("leases due timers to one taker at a time until cleared or rescheduled", async () => {
    const a = `t-${siteId}-a`;
    const b = `t-${siteId}-b`;
    await store.setTimer(a, 100);
    await store.setTimer(b, 200);
    const [first, second] = await Promise.all([store.takeDueTimers(150, 1000, 10), store.takeDueTimers(150, 1000, 10)]);
    expect([...first!, ...second!].filter((id) => id === a || id === b)).toEqual([a]);
    expect((await store.takeDueTimers(250, 1000, 10)).filter((id) => id === a || id === b)).toEqual([b]);
    // the lease ran out without a clear: it fires again
    expect((await store.takeDueTimers(1200, 1000, 10)).filter((id) => id === a || id === b)).toEqual([a]);
    await store.setTimer(b, 5000); // set again while leased: finishing the old lease keeps it
    await store.finishTimer(b, 1250);
    await store.finishTimer(a, 2200);
    expect((await store.takeDueTimers(4000, 1000, 10)).filter((id) => id === a || id === b)).toEqual([]);
    expect((await store.takeDueTimers(5000, 1000, 10)).filter((id) => id === a || id === b)).toEqual([b]);
    await store.clearTimer(b);
  });

  it("keeps webhook events byte for byte until deleted", async () => {
    const body = JSON.stringify({ event: "chat.ended", text: "é 你好 👋🏽" });
    await store.putWebhookEvent({ id: `e-${siteId}`, siteId, body, attempts: 2 });
    expect(await store.getWebhookEvent(`e-${siteId}`)).toEqual({ id: `e-${siteId}`, siteId, body, attempts: 2 });
    await store.deleteWebhookEvent(`e-${siteId}`);
    expect(await store.getWebhookEvent(`e-${siteId}`)).toBeNull();
  });

  it("keeps an agent's busy flag, page views and chat count", async () => {
    const jid = `${siteId}-busy@localhost`;
    expect(await store.isAgentBusy(jid)).toBe(false);
    await store.setAgentBusy(jid, true);
    expect(await store.isAgentBusy(jid)).toBe(true);
    await store.setAgentBusy(jid, false);
    expect(await store.isAgentBusy(jid)).toBe(false);

    const v = visitor(siteId);
    await store.createVisitor(v);
    await store.recordPage(v.id, { url: "https://a.test/1", title: "One" });
    await store.recordPage(v.id, { url: "https://a.test/2", title: "Two" });
    await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "x", name: "V", text: "hi", ts: 1, newChatId: newChatId(v.id, 1) });
    await store.updateVisitor(v.id, { blocked: true });
    expect(await store.getVisitor(v.id)).toMatchObject({ page: { url: "https://a.test/2", title: "Two" }, pagesSeen: 2, chatCount: 1, blocked: true });
  });

  it("claims the least loaded candidate below the cap in one step", async () => {
    const [ann, bob] = [`ann-${siteId}@localhost`, `bob-${siteId}@localhost`];
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c1", 2, 10)).toBe(ann); // tie: order given
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c2", 2, 11)).toBe(bob); // fewest chats
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c3", 2, 12)).toBe(ann); // tie: assigned least recently
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c1", 2, 13)).toBe(ann); // already holds it
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c4", 2, 14)).toBe(bob);
    expect(await store.claimLeastLoaded(siteId, [ann, bob], "c5", 2, 15)).toBeNull(); // both full
    expect(await store.claimLeastLoaded(siteId, [], "c6", 2, 16)).toBeNull();
    const loads = await store.agentLoads(siteId);
    expect(loads.get(ann)?.chatIds.sort()).toEqual(["c1", "c3"]);
    expect(loads.get(bob)).toMatchObject({ lastAssignedAt: 14 });
  });

  it("keeps visitor messages in the outbox with their owner until marked relayed", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const append = (clientId: string, ts: number, owner?: string) =>
      store.appendVisitorMessage({ visitorId: v.id, siteId, clientId, name: "V", text: clientId, ts, newChatId: newChatId(v.id, ts), ...(owner ? { owner } : {}) });
    const a = await append("a", 1000, "p1");
    const b = await append("b", 1001, "p2");
    await append("c", 1002);
    expect((await append("a", 1003, "p2")).duplicate).toBe(true);
    expect(await store.unrelayed(v.id)).toEqual([
      { messageId: a.message.id, owner: "p1" },
      { messageId: b.message.id, owner: "p2" },
    ]);
    await store.markRelayed(v.id, [a.message.id]);
    expect(await store.unrelayed(v.id)).toEqual([{ messageId: b.message.id, owner: "p2" }]);
  });

  it("lets exactly one survivor claim a process whose heartbeat went stale, with a lease", async () => {
    const dead = `dead-${siteId}`;
    const alive = `alive-${siteId}`;
    await store.heartbeat(dead, 1_000);
    await store.heartbeat(alive, 10_000);
    await store.addToOutbox(dead, "v1");
    await store.addToOutbox(dead, "v2");
    await store.removeFromOutbox(dead, "v2");
    expect(await store.outboxVisitors(dead)).toEqual(["v1"]);
    expect(await store.claimStaleProcess(5_000, 10_000)).toBe(dead);
    expect(await store.claimStaleProcess(5_000, 10_000)).toBeNull(); // leased: its heartbeat is now 10 000
    expect(await store.claimStaleProcess(15_000, 20_000)).not.toBeNull(); // lease over (or the live one went stale too)
    await store.forgetProcess(dead);
    await store.forgetProcess(alive);
    expect(await store.outboxVisitors(dead)).toEqual([]);
    expect(await store.claimStaleProcess(Number.MAX_SAFE_INTEGER, 30_000)).toBeNull();
  });

  it("delivers bus frames to subscribers until they unsubscribe", async () => {
    const received: ServerFrame[] = [];
    const v = uniqueVisitorId();
    const unsubscribe = await store.subscribeVisitor(v, (f) => received.push(f));
    const siteFrames: ServerFrame[] = [];
    const unsubscribeSite = await store.subscribeSite(siteId, (f) => siteFrames.push(f));
    await store.publishToVisitor(v, { type: "pong" });
    await store.publishToSite(siteId, { type: "availability", agentsOnline: true });
    await expect.poll(() => received.length).toBe(1);
    await expect.poll(() => siteFrames.length).toBe(1);
    await unsubscribe();
    await unsubscribeSite();
    await store.publishToVisitor(v, { type: "ended" });
    await store.publishToVisitor(uniqueVisitorId(), { type: "ended" });
    // A round trip through the same bus after the publish proves nothing more arrives.
    const probe: ServerFrame[] = [];
    const unsubscribeProbe = await store.subscribeVisitor(v, (f) => probe.push(f));
    await store.publishToVisitor(v, { type: "pong" });
    await expect.poll(() => probe.length).toBe(1);
    await unsubscribeProbe();
    expect(received).toEqual([{ type: "pong" }]);
  });
});

function hash(s: string): number {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.charCodeAt(0)) | 0;
  return h;
}
