import { pino } from "pino";
import { expect, it } from "vitest";
import { ChatService, type ChatEvents } from "../../bridge/chats.js";
import { KeyedQueue } from "../../bridge/keyed-queue.js";
import type { Rosters } from "../../bridge/rosters.js";
import { Scheduler } from "../../bridge/scheduler.js";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import type { Chat, Site, Visitor } from "../../bridge/store/types.js";
import { Webhooks } from "../../bridge/webhooks.js";

// `offline.message` (CONTRACT §6): one event per visitor message that reaches a chat in
// offline mode. A process that stored such a message and died before its webhook leaves it
// to a survivor's redelivery, which must emit it too, with the id the first attempt would
// have used, so that a receiver who got both counts one event.

const logger = pino({ level: "silent" });
const now = () => 1_700_000_000_000;
const visitorId = "v".repeat(26);

async function offlineChat(store: MemoryStore, events: ChatEvents) {
  const site: Site = { id: "acme", name: "Acme", origins: [], maxChatsPerAgent: 3, webhookUrl: "https://hooks.example/parley", createdAt: 0, updatedAt: 0 };
  await store.putSite(site);
  await store.putAgent("acme", { jid: "away@x", addedAt: 0 }); // no presence: offline
  const visitor: Visitor = { id: visitorId, siteId: "acme", jid: `acme.${visitorId}@chat.localhost`, tokenHash: "00", number: 1, createdAt: now() };
  await store.createVisitor(visitor);
  const rosters = { upsert: async () => {}, remove: async () => {} } as unknown as Rosters;
  const chats = new ChatService({ store, local: { processId: "p1", deliver: () => {} }, scheduler: new Scheduler({ store, now, logger, intervalMs: 1_000_000 }), domain: "chat.localhost", send: () => {}, rosters, lanes: new KeyedQueue(), now, logger, events });
  const first = await append(store, "c1", "anyone there?");
  await chats.onVisitorMessage(site, first.visitor, first);
  return chats;
}

/** A visitor message stored (and acknowledged) by process p1. */
function append(store: MemoryStore, clientId: string, text: string) {
  return store.appendVisitorMessage({ visitorId, siteId: "acme", clientId, fallbackName: "Visitor 0001", text, ts: now(), newChatId: newChatId(visitorId, now()), owner: "p1" });
}

it("emits offline.message for a message a dead process stored in an offline chat, when a survivor redelivers it", async () => {
  const store = new MemoryStore();
  const emitted: { chat: Chat; messageId: string }[] = [];
  const chats = await offlineChat(store, { chatEnded: async () => {}, offlineMessage: async (chat, messageId) => void emitted.push({ chat, messageId }) });
  expect(emitted.map((e) => e.chat.state)).toEqual(["offline"]);

  const second = await append(store, "c2", "my order is 1234"); // stored, acknowledged; then the process died
  await chats.redeliver(visitorId, [second.message.id]);
  expect(emitted.map((e) => e.messageId)).toEqual([emitted[0]!.messageId, second.message.id]);
});

it("gives an offline message's event the same id each time it is emitted, and keeps the first body while it is pending", async () => {
  const store = new MemoryStore();
  const scheduled: string[] = [];
  const webhooks = new Webhooks({ store, scheduler: { schedule: async (_kind, id) => void scheduled.push(id) }, now, logger });
  await offlineChat(store, webhooks);
  const second = await append(store, "c2", "my order is 1234");
  await webhooks.offlineMessage(second.chat, second.message.id);
  const pending = await store.getWebhookEvent(scheduled[1]!);
  expect(JSON.parse(pending!.body)).toMatchObject({ event: "offline.message", id: scheduled[1], chat: { offline: true, messages: [{ text: "anyone there?" }, { from: "system" }, { text: "my order is 1234" }] } });

  await append(store, "c3", "hello?"); // the transcript grows before the survivor emits again
  await webhooks.offlineMessage(second.chat, second.message.id);
  expect(scheduled).toHaveLength(2);
  expect(await store.getWebhookEvent(scheduled[1]!)).toEqual(pending);
});
