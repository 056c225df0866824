import { randomBytes } from "node:crypto";
import { Socket } from "node:net";
import { afterAll, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import { Redis } from "ioredis";
import { channels, keys } from "../../bridge/store/keys.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { RedisStore, WEBHOOK_EVENT_TTL_SECONDS } from "../../bridge/store/redis-store.js";
import { newChatId } from "../../bridge/store/ids.js";
import { CLIENT_IDS_TTL_SECONDS } from "../../bridge/store/redis-scripts.js";
import { messageFrame } from "../../bridge/store/message-frame.js";
import { UnknownVisitorError, VisitorBlockedError, type ProcessMessage, type Store, type Visitor } from "../../bridge/store/types.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { startRedis, type PrivateRedis } from "../support/redis.js";
import { waitUntil } from "../support/wait.js";
import { startDelayingProxy } from "../support/delaying-proxy.js";

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

  it("forgets an agent's presence and busy flag once they belong to no site", async () => {
    const jid = `${siteId}-leaver@localhost`;
    const other = `${siteId}-other`;
    await store.putSite(site(other));
    await store.putAgent(siteId, { jid, addedAt: 1 });
    await store.putAgent(other, { jid, addedAt: 1 });
    await store.setAgentResource(jid, "laptop", "available", 10);
    await store.setAgentResource(jid, "laptop", null, 11);
    await store.setAgentResource(jid, "phone", "away", 12);
    await store.setAgentBusy(jid, true);
    await store.removeAgent(siteId, jid);
    expect([await store.getAgentPresence(jid), await store.agentUnavailableSince(jid), await store.isAgentBusy(jid)]).toEqual(["away", 11, true]); // still an agent of the other site
    await store.deleteSite(other);
    expect([await store.getAgentPresence(jid), await store.agentUnavailableSince(jid), await store.isAgentBusy(jid)]).toEqual(["offline", null, false]);
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

  it("drops the resources not heard of since a probe round began, and only those", async () => {
    const jid = `${siteId}-prober@localhost`;
    await store.setAgentResource(jid, "old-laptop", "available", 100);
    await store.setAgentResource(jid, "phone", "away", 150);
    const round = await store.beginProbeRound(jid);
    await store.setAgentResource(jid, "phone", "away", 205); // the phone answered the probe, the old laptop did not
    expect(await store.dropResourcesUnheardSince(jid, round, 210)).toEqual({ before: "available", after: "away" });
    expect(await store.agentUnavailableSince(jid)).toBe(210);
    expect(await store.dropResourcesUnheardSince(jid, round, 220)).toEqual({ before: "away", after: "away" });
    const next = await store.beginProbeRound(jid);
    expect(next).toBeGreaterThan(round);
    expect(await store.dropResourcesUnheardSince(jid, next, 300)).toEqual({ before: "away", after: "offline" });
    expect(await store.getAgentPresence(jid)).toBe("offline");
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
    expect(await store.reserveVisitorNumbers(siteId, 16)).toBe(1);
    expect(await store.reserveVisitorNumbers(siteId, 1)).toBe(17);
    expect(await store.reserveVisitorNumbers(siteId, 16)).toBe(18);
  });

  it("tracks online visitors until their mark expires", async () => {
    const v = visitor(siteId);
    await store.markOnline(siteId, v.id, 2000, 1000);
    expect(await store.isOnline(siteId, v.id, 1999)).toBe(true);
    expect(await store.onlineVisitors(siteId, 1500)).toEqual([v.id]);
    expect(await store.isOnline(siteId, v.id, 2000)).toBe(false);
    expect(await store.onlineVisitors(siteId, 2500)).toEqual([]);
    await store.markManyOnline(siteId, ["a", "b", "c"], 3000, 2500);
    expect((await store.onlineVisitors(siteId, 2600)).sort()).toEqual(["a", "b", "c"]);
  });

  it("forgets expired online marks and keeps the others", async () => {
    await store.markOnline(siteId, "gone", 2000, 1000);
    await store.markOnline(siteId, "here", 4000, 1000);
    await store.forgetExpiredOnlineMarks(siteId, 3000);
    // Asked about an earlier time, a mark still kept would answer true: it is gone.
    expect(await store.isOnline(siteId, "gone", 1000)).toBe(false);
    expect(await store.isOnline(siteId, "here", 1000)).toBe(true);
    await store.forgetExpiredOnlineMarks(siteId, 5000);
    expect(await store.isOnline(siteId, "here", 1000)).toBe(false);
  });

  it("forgets a visitor who never chatted at their time, unless they came back; keeps one who chatted", async () => {
    const forgetAt = Date.now() + 300;
    const [forgotten, returning, chatting, unbounded] = [visitor(siteId), visitor(siteId), visitor(siteId), visitor(siteId)];
    await Promise.all([store.createVisitor(forgotten, forgetAt), store.createVisitor(returning, forgetAt), store.createVisitor(chatting, forgetAt), store.createVisitor(unbounded)]);
    await store.keepVisitor(returning.id, forgetAt + 60_000);
    await store.appendVisitorMessage({ visitorId: chatting.id, siteId, clientId: "c", fallbackName: "V", text: "hi", ts: 10, newChatId: newChatId(chatting.id, 10) });
    await store.keepVisitor(chatting.id, forgetAt); // a visitor who chatted never gets a time again

    await expect.poll(() => store.getVisitor(forgotten.id), { timeout: 10_000, interval: 50 }).toBeNull();
    expect(Date.now()).toBeGreaterThanOrEqual(forgetAt);
    expect(await store.getVisitor(returning.id)).toMatchObject({ id: returning.id });
    expect(await store.getVisitor(chatting.id)).toMatchObject({ id: chatting.id, chatCount: 1 });
    expect(await store.getVisitor(unbounded.id)).toMatchObject({ id: unbounded.id });
    await store.keepVisitor(forgotten.id, forgetAt + 60_000); // gone is gone
    expect(await store.getVisitor(forgotten.id)).toBeNull();
    const late = { visitorId: forgotten.id, siteId, clientId: "c", fallbackName: "V", text: "hello?", ts: 20, newChatId: newChatId(forgotten.id, 20) };
    await expect(store.appendVisitorMessage(late)).rejects.toBeInstanceOf(UnknownVisitorError);
  });

  it("forgets a visitor once their last transcript is purged, as one who never chatted", async () => {
    const [gone, back] = [visitor(siteId), visitor(siteId)];
    await Promise.all([store.createVisitor(gone), store.createVisitor(back)]);
    const say = (v: Visitor, clientId: string, ts: number) => store.appendVisitorMessage({ visitorId: v.id, siteId, clientId, fallbackName: "V", text: clientId, ts, newChatId: newChatId(v.id, ts) });
    const { chat: goneChat } = await say(gone, "g1", 10);
    const { chat: backFirst } = await say(back, "b1", 11);
    await store.updateChat(goneChat.id, ["new"], { state: "ended", endedAt: 20 });
    await store.updateChat(backFirst.id, ["new"], { state: "ended", endedAt: 21 });
    await say(back, "b2", 30); // back came back: a current chat, with messages

    const forgetAt = Date.now() + 300;
    await store.purgeChat(goneChat.id, forgetAt);
    await store.purgeChat(backFirst.id, forgetAt);
    expect(await store.getVisitor(gone.id)).not.toHaveProperty("chatCount");
    await expect.poll(() => store.getVisitor(gone.id), { timeout: 10_000, interval: 50 }).toBeNull();
    expect(await store.getVisitor(back.id)).toMatchObject({ id: back.id, chatCount: 2 });
    expect((await store.history(back.id, 10)).map((m) => m.text)).toEqual(["b2"]);
  });

  it("opens a chat with the first message and dedupes resent client ids", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const input = { visitorId: v.id, siteId, clientId: "c1", fallbackName: "Visitor 0001", text: "héllo 你好 👋🏽", ts: 5000, newChatId: newChatId(v.id, 5000) };
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
    const { chat } = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "a", fallbackName: "V", text: "x", ts: 7000, newChatId: newChatId(v.id, 7000) });
    expect(await store.updateChat(chat.id, ["queued"], { state: "active" })).toBeNull();
    expect(await store.updateChat(chat.id, ["new"], { state: "active", agentJid: "ann@localhost", assignedAt: 7001 })).toMatchObject({
      state: "active",
      agentJid: "ann@localhost",
      assignedAt: 7001,
    });
    expect((await store.listChats(siteId, "active")).map((c) => c.id)).toEqual([chat.id]);
    // A move decided on the chat as read with one agent does not apply once it is with another.
    expect(await store.updateChat(chat.id, ["active"], { agentJid: "ben@localhost" }, "cy@localhost")).toBeNull();
    expect(await store.updateChat(chat.id, ["active"], { agentJid: "ben@localhost" }, "ann@localhost")).toMatchObject({ agentJid: "ben@localhost" });
    // Back to the queue, saying when: what the visitor wrote before reached that agent.
    const requeued = await store.updateChat(chat.id, ["active"], { state: "queued", agentJid: undefined, agentName: undefined, requeuedAt: 7500 }, "ben@localhost");
    expect(requeued).toMatchObject({ state: "queued", requeuedAt: 7500 });
    expect(requeued?.agentJid).toBeUndefined();
    expect(await store.getChat(chat.id)).toMatchObject({ requeuedAt: 7500 });
    expect(await store.updateChat(chat.id, ["queued"], { state: "active", agentJid: "ben@localhost" })).toMatchObject({ state: "active", requeuedAt: 7500 });
    expect(await store.updateChat(chat.id, ["active"], { state: "ended", endedAt: 8000 })).toMatchObject({ state: "ended", endedAt: 8000 });
    expect((await store.getVisitor(v.id))?.chatId).toBeUndefined();
    expect((await store.listChats(siteId, "ended")).map((c) => c.id)).toEqual([chat.id]);
    const next = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "b", fallbackName: "V", text: "again", ts: 9000, newChatId: newChatId(v.id, 9000) });
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

  it("records, as a chat becomes active, the visitor's last message then: those after it found the chat active", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const say = (clientId: string, ts: number) => store.appendVisitorMessage({ visitorId: v.id, siteId, clientId, fallbackName: "V", text: clientId, ts, newChatId: newChatId(v.id, ts) });
    const { chat } = await say("first", 7000);
    const { message: second } = await say("second", 7001);
    const active = await store.updateChat(chat.id, ["new"], { state: "active", agentJid: "ann@localhost", assignedAt: 7002 });
    expect(active?.activatedAfter).toBe(second.id);
    const { chat: seen } = await say("third", 7003);
    expect(seen).toMatchObject({ state: "active", activatedAfter: second.id });
    // Staying active (a transfer) keeps it; becoming active again (back from the queue) moves it.
    expect(await store.updateChat(chat.id, ["active"], { agentJid: "ben@localhost" })).toMatchObject({ activatedAfter: second.id });
    await store.updateChat(chat.id, ["active"], { state: "queued", agentJid: undefined, requeuedAt: 7004 });
    const { message: fourth } = await say("fourth", 7005);
    expect(await store.updateChat(chat.id, ["queued"], { state: "active", agentJid: "cy@localhost" })).toMatchObject({ activatedAfter: fourth.id });
  });

  it("lists a site's open chats however many chats the site has had since", async () => {
    const long = visitor(siteId);
    const busy = visitor(siteId);
    await Promise.all([store.createVisitor(long), store.createVisitor(busy)]);
    const first = await store.appendVisitorMessage({ visitorId: long.id, siteId, clientId: "a", fallbackName: "V", text: "x", ts: 10_000, newChatId: newChatId(long.id, 10_000) });
    await store.updateChat(first.chat.id, ["new"], { state: "active", agentJid: "ann@localhost", assignedAt: 10_001 });
    // More chats after it than a list reads of the site's recent chats (1,000), all ended.
    for (let i = 1; i <= 1001; i++) {
      const ts = 10_000 + i * 10;
      const { chat } = await store.appendVisitorMessage({ visitorId: busy.id, siteId, clientId: `c${i}`, fallbackName: "V", text: "x", ts, newChatId: newChatId(busy.id, ts) });
      await store.updateChat(chat.id, ["new"], { state: "ended", endedAt: ts + 1 });
    }
    expect((await store.listChats(siteId, "active")).map((c) => c.id)).toEqual([first.chat.id]);
    expect(await store.listChats(siteId, "queued")).toEqual([]);
    expect((await store.listChats(siteId, "ended")).length).toBeGreaterThanOrEqual(1000);
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

  it("forgets a former agent's routing records once they hold none of the site's chats", async () => {
    await store.putAgent(siteId, { jid: "ann@localhost", addedAt: 1 });
    await store.putAgent(siteId, { jid: "bob@localhost", addedAt: 1 });
    await store.claimAgent(siteId, "ann@localhost", "c1", 2, 100);
    await store.claimAgent(siteId, "bob@localhost", "c2", 2, 100);
    await store.releaseAgent(siteId, "bob@localhost", "c2");
    await store.removeAgent(siteId, "bob@localhost"); // idle: gone at once
    await store.removeAgent(siteId, "ann@localhost"); // their chat is still to be moved: kept until then
    expect([...(await store.agentLoads(siteId)).keys()]).toEqual(["ann@localhost"]);
    await store.releaseAgent(siteId, "ann@localhost", "c1");
    expect((await store.agentLoads(siteId)).size).toBe(0);
  });

  it("deletes with a site its visitor numbers, online marks and the routing records of its idle agents", async () => {
    await store.putAgent(siteId, { jid: "ann@localhost", addedAt: 1 });
    await store.putAgent(siteId, { jid: "bob@localhost", addedAt: 1 });
    await store.claimAgent(siteId, "ann@localhost", "c1", 2, 100);
    await store.claimAgent(siteId, "bob@localhost", "c2", 2, 100);
    await store.releaseAgent(siteId, "bob@localhost", "c2");
    await store.reserveVisitorNumbers(siteId, 16);
    await store.markOnline(siteId, "v1", Date.now() + 60_000, Date.now());
    expect(await store.deleteSite(siteId)).toBe(true);
    expect([...(await store.agentLoads(siteId)).keys()]).toEqual(["ann@localhost"]); // the open chat ends after the deletion
    await store.releaseAgent(siteId, "ann@localhost", "c1");
    expect((await store.agentLoads(siteId)).size).toBe(0);
    expect(await store.onlineVisitors(siteId, Date.now())).toEqual([]);
    expect(await store.reserveVisitorNumbers(siteId, 1)).toBe(1);
  });

  it("queues chats first in, first out, each taken out by one caller", async () => {
    await store.enqueue(siteId, "q1", 10);
    await store.enqueue(siteId, "q2", 20);
    await store.enqueue(siteId, "q3", 30);
    await store.enqueue(siteId, "q1", 40); // already queued: keeps its place
    expect(await store.queuePosition(siteId, "q2")).toBe(2);
    expect(await store.queueLength(siteId)).toBe(3);
    expect(await store.queuedChats(siteId)).toEqual(["q1", "q2", "q3"]);
    expect(await store.removeFromQueue(siteId, "q2")).toBe(true);
    expect(await store.queuedChats(siteId)).toEqual(["q1", "q3"]);
    expect(await store.firstInQueue(siteId)).toBe("q1");
    expect(await store.firstInQueue(siteId)).toBe("q1"); // left in line
    const removals = await Promise.all([store.removeFromQueue(siteId, "q1"), store.removeFromQueue(siteId, "q1"), store.removeFromQueue(siteId, "q1")]);
    expect(removals.filter(Boolean)).toHaveLength(1);
    expect(await store.firstInQueue(siteId)).toBe("q3");
    await store.removeFromQueue(siteId, "q3");
    expect(await store.firstInQueue(siteId)).toBeNull();
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

  it("sets a leased timer to fire again, unless it was set again meanwhile", async () => {
    const watch = `t-${siteId}-watch`;
    const left = `t-${siteId}-left`;
    await store.setTimer(watch, 100);
    await store.setTimer(left, 100);
    await store.takeDueTimers(100, 1000, 10); // both leased until 1100
    await store.setTimer(left, 300); // e.g. the visitor left while the watch looked at them
    await store.finishTimer(watch, 1100, 60_000);
    await store.finishTimer(left, 1100, 60_000);
    expect((await store.takeDueTimers(59_999, 1000, 10)).filter((id) => id === watch || id === left)).toEqual([left]);
    expect((await store.takeDueTimers(60_000, 1000, 10)).filter((id) => id === watch || id === left)).toEqual([watch]);
    await Promise.all([store.clearTimer(watch), store.clearTimer(left)]);
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
    await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "x", fallbackName: "V", text: "hi", ts: 1, newChatId: newChatId(v.id, 1) });
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
      store.appendVisitorMessage({ visitorId: v.id, siteId, clientId, fallbackName: "V", text: clientId, ts, newChatId: newChatId(v.id, ts), ...(owner ? { owner } : {}) });
    const a = await append("a", 1000, "p1");
    const b = await append("b", 1001, "p2");
    await append("c", 1002);
    // A resend says whether its original still waits to be relayed.
    expect(await append("a", 1003, "p2")).toMatchObject({ duplicate: true, unrelayed: true });
    expect(await store.unrelayed(v.id)).toEqual([
      { messageId: a.message.id, owner: "p1" },
      { messageId: b.message.id, owner: "p2" },
    ]);
    await store.markRelayed(v.id, [a.message.id]);
    expect(await store.unrelayed(v.id)).toEqual([{ messageId: b.message.id, owner: "p2" }]);
    expect(await append("a", 1005, "p2")).toMatchObject({ duplicate: true, unrelayed: false });
    expect(await append("c", 1006, "p2")).toMatchObject({ duplicate: true, unrelayed: false });

    const w = visitor(siteId);
    await store.createVisitor(w);
    const fromW = await store.appendVisitorMessage({ visitorId: w.id, siteId, clientId: "w", fallbackName: "W", text: "w", ts: 1004, newChatId: newChatId(w.id, 1004), owner: "p1" });
    expect(await store.unrelayed(w.id)).toHaveLength(1);
    // Many visitors in one go; an unknown visitor or an empty list is no error.
    await store.markManyRelayed(new Map([[v.id, [b.message.id]], [uniqueVisitorId(), ["1-0"]], [w.id, [fromW.message.id]], [uniqueVisitorId(), []]]));
    expect([await store.unrelayed(v.id), await store.unrelayed(w.id)]).toEqual([[], []]);
  });

  it("says whether a heartbeat's process was registered (not on its first beat, nor after it was forgotten)", async () => {
    const id = `beat-${uniqueVisitorId()}`;
    expect(await store.heartbeat(id, 1_000)).toBe(false);
    expect(await store.heartbeat(id, 2_000)).toBe(true);
    await store.forgetProcess(id);
    expect(await store.heartbeat(id, 3_000)).toBe(false);
    await store.forgetProcess(id); // not left for the claims below
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
    const beats = await store.lastHeartbeats([dead, alive, "never-beat"]);
    expect([...beats.slice(0, 2)].sort()).toEqual([10_000, 20_000]); // one of them leased again at 20 000
    expect(beats[2]).toBeNull();
    await store.forgetProcess(dead);
    expect(await store.lastHeartbeats([dead])).toEqual([null]);
    await store.forgetProcess(alive);
    expect(await store.outboxVisitors(dead)).toEqual([]);
    expect(await store.claimStaleProcess(Number.MAX_SAFE_INTEGER, 30_000)).toBeNull();
  });

  it("publishes a visitor's frames to the processes holding them, never back to the publisher", async () => {
    const [p1, p2, p3] = ["p1-" + siteId, "p2-" + siteId, "p3-" + siteId];
    const heard = new Map<string, ProcessMessage[]>([p1, p2, p3].map((p) => [p, []]));
    const unsubscribes = await Promise.all([p1, p2, p3].map((p) => store.subscribeProcess(p, (m) => heard.get(p)!.push(m))));
    const siteFrames: ServerFrame[] = [];
    const unsubscribeSite = await store.subscribeSite(siteId, (f) => siteFrames.push(f));
    const v = uniqueVisitorId();
    expect(await store.holdVisitor(v, p1)).toEqual([]);
    expect(await store.holdVisitor(v, p2)).toEqual([p1]); // the others, for pruning dead ones
    expect(await store.holdVisitor(v, p2)).toEqual([p1]);
    await store.publishToVisitor(v, { type: "pong" }, p1); // p1 delivers to its own sockets
    await store.publishToVisitor(uniqueVisitorId(), { type: "ended" }); // held by no one
    await store.publishToSite(siteId, { type: "availability", agentsOnline: true });
    await expect.poll(() => heard.get(p2)!.length).toBe(1);
    await expect.poll(() => siteFrames.length).toBe(1);
    expect(await store.releaseVisitor(v, p2)).toEqual([p1]);
    await store.publishToVisitor(v, { type: "typing", state: "paused", name: "Ann" });
    // A round trip through the same bus after that publish proves nothing more arrives.
    await store.publishToProcess(p3, { kind: "iq-result", id: "probe", type: "result" });
    await expect.poll(() => heard.get(p3)!.length).toBe(1);
    await expect.poll(() => heard.get(p1)!.length).toBe(1);
    expect(await store.releaseVisitor(v, p1)).toEqual([]);
    expect(heard.get(p1)).toEqual([{ kind: "visitor-frame", visitorId: v, frame: { type: "typing", state: "paused", name: "Ann" } }]);
    expect(heard.get(p2)).toEqual([{ kind: "visitor-frame", visitorId: v, frame: { type: "pong" } }]);
    await Promise.all([...unsubscribes.map((u) => u()), unsubscribeSite()]);
  });

  it("publishes each appended message, as the frame visitors see, to the visitor's other processes", async () => {
    const [here, there] = ["here-" + siteId, "there-" + siteId];
    const heard: ProcessMessage[] = [];
    const unsubscribe = await store.subscribeProcess(there, (m) => heard.push(m));
    const v = visitor(siteId);
    await store.createVisitor(v);
    await store.holdVisitor(v.id, here);
    await store.holdVisitor(v.id, there);
    const text = "multibyte café ☕ 𝄞 日本語 \"quoted\" </script> \u0001";
    const first = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "m1", fallbackName: "Visitor 0007", text, ts: 1_764_800_000_123, newChatId: newChatId(v.id, 1), publisher: here });
    await store.updateVisitor(v.id, { name: "Zoë" });
    const second = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "m2", fallbackName: "Visitor 0007", text: "again", ts: 1_764_800_000_124, newChatId: newChatId(v.id, 2), publisher: here });
    expect([first.message.name, second.message.name]).toEqual(["Visitor 0007", "Zoë"]); // their own name once given
    expect(second.visitor).toMatchObject({ id: v.id, name: "Zoë", chatId: first.chat.id });
    await store.updateChat(first.chat.id, ["new"], { state: "active", agentJid: "ann@localhost", assignedAt: 2 });
    const reply = await store.appendAgentMessage({ visitorId: v.id, siteId, agentJid: "ann@localhost", fallbackName: "ann", text: "hi ☕", ts: 1_764_800_000_125, publisher: here });
    expect(reply.kind).toBe("appended");
    await expect.poll(() => heard.length).toBe(3);
    const appended = [first.message, second.message, reply.kind === "appended" ? reply.message : null];
    expect(heard).toEqual(appended.map((m) => ({ kind: "visitor-frame", visitorId: v.id, frame: messageFrame(m!) })));
    expect(await store.history(v.id, 3)).toEqual(appended);
    await unsubscribe();
  });

  it("hands back from both appends the visitor and chat exactly as stored, whatever their text", async () => {
    const awkward = 'Zoë "Z" \\ </script> 日本 🙂 \u0001 / end';
    const v: Visitor = {
      ...visitor(siteId),
      name: awkward,
      email: "zoë@example.com",
      page: { url: "https://example.com/a?b=\"c\"&d=</script>", title: awkward },
      referrer: "https://ref.example/ü",
      userAgent: "Mozilla/5.0 (\\ \"quoted\")",
    };
    await store.createVisitor(v);
    const appended = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "c", fallbackName: "V", text: "hi", ts: 20, newChatId: newChatId(v.id, 20) });
    expect(appended.visitor).toEqual(await store.getVisitor(v.id));
    expect(appended.chat).toEqual(await store.getChat(appended.chat.id));
    await store.updateChat(appended.chat.id, ["new"], { state: "active", agentJid: "ann@localhost", agentName: awkward, assignedAt: 21 });
    const reply = await store.appendAgentMessage({ visitorId: v.id, siteId, agentJid: "ann@localhost", fallbackName: "ann", text: "hello", ts: 22 });
    expect(reply).toMatchObject({ kind: "appended", message: { name: awkward } });
    if (reply.kind !== "appended") throw new Error("not appended");
    expect(reply.visitor).toEqual(await store.getVisitor(v.id));
    expect(reply.chat).toEqual(await store.getChat(appended.chat.id));
  });

  it("stores an agent's message only for the agent of the visitor's active chat", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    const input = { visitorId: v.id, siteId, agentJid: "ann@localhost", fallbackName: "ann", text: "hello", ts: 10 };
    expect(await store.appendAgentMessage({ ...input, visitorId: uniqueVisitorId() })).toEqual({ kind: "unknown-visitor" });
    expect(await store.appendAgentMessage({ ...input, siteId: "other-site" })).toEqual({ kind: "unknown-visitor" });
    expect(await store.appendAgentMessage(input)).toMatchObject({ kind: "not-assigned", visitor: { id: v.id }, chat: null });
    const { chat } = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "c", fallbackName: "V", text: "help", ts: 11, newChatId: newChatId(v.id, 11) });
    expect(await store.appendAgentMessage(input)).toMatchObject({ kind: "not-assigned", chat: { id: chat.id, state: "new" } });
    await store.updateChat(chat.id, ["new"], { state: "active", agentJid: "bob@localhost", agentName: "Bob", assignedAt: 12 });
    expect(await store.appendAgentMessage(input)).toMatchObject({ kind: "not-assigned", chat: { agentJid: "bob@localhost" } });
    const bob = await store.appendAgentMessage({ ...input, agentJid: "bob@localhost", fallbackName: "bob" });
    expect(bob).toMatchObject({ kind: "appended", chat: { id: chat.id }, message: { from: "agent", name: "Bob", text: "hello", chatId: chat.id } });
    expect((await store.transcript(chat.id)).map((m) => m.text)).toEqual(["help", "hello"]);
  });

  it("refuses messages of a blocked visitor and stores nothing", async () => {
    const v = visitor(siteId);
    await store.createVisitor(v);
    await store.updateVisitor(v.id, { blocked: true });
    await expect(store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "c", fallbackName: "V", text: "x", ts: 1, newChatId: newChatId(v.id, 1) })).rejects.toBeInstanceOf(VisitorBlockedError);
    expect(await store.history(v.id, 10)).toEqual([]);
    expect((await store.getVisitor(v.id))?.chatId).toBeUndefined();
  });
});

describe("redis store: what it keeps per visitor", () => {
  it("forgets a visitor's client ids a day after their last message, and dedupes until then", async () => {
    await withRedisStore(async (store, admin) => {
      const siteId = "s-client-ids";
      await store.putSite(site(siteId));
      const v = visitor(siteId);
      await store.createVisitor(v);
      const input = { visitorId: v.id, siteId, clientId: "c1", fallbackName: "V", text: "hi", ts: 1, newChatId: newChatId(v.id, 1) };
      const first = await store.appendVisitorMessage(input);
      expect(await store.appendVisitorMessage(input)).toMatchObject({ duplicate: true, message: { id: first.message.id } });
      const ttl = await admin.ttl(keys.clientIds(v.id));
      expect(ttl).toBeGreaterThan(CLIENT_IDS_TTL_SECONDS - 60);
      expect(ttl).toBeLessThanOrEqual(CLIENT_IDS_TTL_SECONDS);
    });
  });
});

describe("redis store: what it keeps per visitor, after their process died", () => {
  it("lets the holders a dead process never released go with the visitor, and their client ids with their last transcript", async () => {
    await withRedisStore(async (store, admin) => {
      const siteId = "s-holders";
      const v = visitor(siteId);
      const forgetAt = Date.now() + 60_000;
      await store.createVisitor(v, forgetAt);
      await store.holdVisitor(v.id, "dead-process");
      const sameExpiry = async () => Math.abs((await admin.pttl(keys.holders(v.id))) - (await admin.pttl(keys.visitor(v.id)))) < 1000;
      expect(await admin.pttl(keys.holders(v.id))).toBeGreaterThan(0);
      expect(await sameExpiry()).toBe(true);
      await store.keepVisitor(v.id, forgetAt + 60_000); // they came back (through another process)
      expect(await sameExpiry()).toBe(true);
      const { chat } = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "c1", fallbackName: "V", text: "hi", ts: 10, newChatId: newChatId(v.id, 10) });
      expect([await admin.pttl(keys.holders(v.id)), await admin.pttl(keys.visitor(v.id))]).toEqual([-1, -1]); // kept with their transcript
      await store.updateChat(chat.id, ["new"], { state: "ended", endedAt: 20 });
      await store.purgeChat(chat.id, Date.now() + 30_000);
      expect(await admin.pttl(keys.holders(v.id))).toBeGreaterThan(0);
      expect(await sameExpiry()).toBe(true);
      expect(await admin.exists(keys.clientIds(v.id), keys.log(v.id))).toBe(0); // nothing left to dedupe against
    });
  });
});

describe("redis store: the bus after an outage", () => {
  it("says the bus is back only once its subscriptions are active again", async () => {
    // The store's connections take a slower path than the publisher's (as to a remote Redis,
    // or a Redis Cluster node of its own), so nothing but Redis' confirmation tells when the
    // resubscription is active.
    const proxy = await startDelayingProxy({ host: "127.0.0.1", port: redis.port });
    const store = new RedisStore({ url: `redis://127.0.0.1:${proxy.port}` });
    const publisher = new Redis(redis.url);
    try {
      const heard: ProcessMessage[] = [];
      await store.subscribeProcess("p-recovering", (m) => heard.push(m));
      const frame: ProcessMessage = { kind: "visitor-frame", visitorId: "v1", frame: { type: "pong" } };
      // What a catch-up relies on: a message published as soon as the bus is said to be
      // back (after the catch-up's read of the log) still arrives.
      const published = new Promise<void>((resolve) => store.onBusRecovered(() => void publisher.publish(channels.process("p-recovering"), JSON.stringify(frame)).then(() => resolve())));
      proxy.delayClientBytes(300);
      await publisher.call("CLIENT", "KILL", "TYPE", "pubsub");
      await published;
      await waitUntil("the message published at recovery to arrive", () => heard.length === 1, { timeoutMs: 5000 });
    } finally {
      publisher.disconnect();
      await store.close();
      await proxy.close();
    }
  });
});

describe("redis store: a chat it could not index", () => {
  it("lists a chat whose site indexes failed as it was created once its state next changes", async () => {
    const errors: Error[] = [];
    await withRedisStore(async (store, admin) => {
      const siteId = "s-unindexed";
      await store.putSite(site(siteId));
      const v = visitor(siteId);
      await store.createVisitor(v);
      // The site's open-chats index cannot take a chat right now (as when Redis fails between the two steps).
      await admin.set(keys.openChats(siteId), "in the way");
      const { chat } = await store.appendVisitorMessage({ visitorId: v.id, siteId, clientId: "c1", fallbackName: "Visitor 0001", text: "hello", ts: 5000, newChatId: newChatId(v.id, 5000) });
      expect(errors.map((e) => e.message)).toEqual([expect.stringContaining(`chat ${chat.id} stored but not indexed`)]);
      await admin.del(keys.openChats(siteId), keys.siteChats(siteId));
      expect(await store.listChats(siteId, "active")).toEqual([]);

      await store.updateChat(chat.id, ["new"], { state: "active", agentJid: "a@x" });
      expect((await store.listChats(siteId, "active")).map((c) => c.id)).toEqual([chat.id]);
      await store.updateChat(chat.id, ["active"], { state: "ended", endedAt: 6000 });
      expect((await store.listChats(siteId, "ended")).map((c) => c.id)).toEqual([chat.id]);
    }, (err) => errors.push(err));
  });
});

describe("redis store: what it keeps per webhook event", () => {
  it("keeps an event a week after its last attempt at most", async () => {
    await withRedisStore(async (store, admin) => {
      await store.putWebhookEvent({ id: "e-ttl", siteId: "s", body: "{}", attempts: 0 });
      const ttl = await admin.ttl(keys.webhookEvent("e-ttl"));
      expect(ttl).toBeGreaterThan(WEBHOOK_EVENT_TTL_SECONDS - 60);
      expect(ttl).toBeLessThanOrEqual(WEBHOOK_EVENT_TTL_SECONDS);
    });
  });
});

describe("redis store: what it keeps per site", () => {
  it("keeps in a site's online marks only visitors seen lately, and lets the marks go with the last one", async () => {
    await withRedisStore(async (store, admin) => {
      const siteId = "s-online";
      const now = Date.now();
      await store.markOnline(siteId, "gone-long-ago", now - 60_000, now - 120_000);
      await store.markManyOnline(siteId, ["left", "here"], now + 100, now);
      expect((await admin.zrange(keys.online(siteId), "0", "-1")).sort()).toEqual(["here", "left"]);
      await store.markOnline(siteId, "here", now + 60_000, now + 200); // "left" left: their mark expired
      expect(await admin.zrange(keys.online(siteId), "0", "-1")).toEqual(["here"]);
      const ttl = await admin.pttl(keys.online(siteId));
      expect(ttl).toBeGreaterThan(0);
      expect(ttl).toBeLessThanOrEqual(60_000);
    });
  });
});

describe("redis store: writes", () => {
  it("sends the commands of one event-loop turn to Redis in one write", async () => {
    // One system call and one wake-up of Redis for everything the bridge asks in a turn
    // (the replies to many visitors' frames), without a pipeline object per batch.
    const store = new RedisStore({ url: redis.url });
    try {
      await store.putSite(site("s-one-write"));
      const streams = Socket.prototype as unknown as Record<"_write" | "_writev", (...args: unknown[]) => void>;
      const writes = [vi.spyOn(streams, "_write"), vi.spyOn(streams, "_writev")];
      try {
        const reads = Array.from({ length: 20 }, () => store.getSite("s-one-write"));
        expect((await Promise.all(reads)).every((s) => s?.name === "Site s-one-write")).toBe(true);
        const toRedis = writes.flatMap((spy) => spy.mock.contexts).filter((socket) => (socket as Socket).remotePort === redis.port);
        expect(toRedis).toHaveLength(1);
      } finally {
        for (const spy of writes) spy.mockRestore();
      }
    } finally {
      await store.close();
    }
  });
});

/** A Redis store on the test Redis and a plain client to look at its keys, both closed afterwards. */
async function withRedisStore(test: (store: RedisStore, admin: Redis) => Promise<void>, onError?: (err: Error) => void): Promise<void> {
  const store = new RedisStore({ url: redis.url }, onError);
  const admin = new Redis(redis.url);
  try {
    await test(store, admin);
  } finally {
    admin.disconnect();
    await store.close();
  }
}

function hash(s: string): number {
  let h = 0;
  for (const ch of s) h = (h * 31 + ch.charCodeAt(0)) | 0;
  return h;
}
