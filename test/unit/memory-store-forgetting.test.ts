import { randomBytes } from "node:crypto";
import { expect, it } from "vitest";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import type { Visitor } from "../../bridge/store/types.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";

// The in-memory store serves a single process for as long as it runs: what it keeps per
// visitor must go when the visitor does (as the Redis keys expire), or a process that sees
// visitors come and go for weeks grows without bound. These look at the store's own maps
// (bracket access to private fields) because nothing else can tell a leftover entry.

const siteId = "forget";

async function storeWithVisitor() {
  const store = new MemoryStore();
  await store.putSite({ id: siteId, name: "Forget", origins: [], maxChatsPerAgent: 2, createdAt: 1, updatedAt: 1 });
  const id = visitorIdFromBytes(randomBytes(17));
  const visitor: Visitor = { id, siteId, jid: `${siteId}.${id}@chat.localhost`, tokenHash: "ab".repeat(32), number: 1, createdAt: 1 };
  await store.createVisitor(visitor);
  const appended = await store.appendVisitorMessage({ visitorId: id, siteId, clientId: "c1", fallbackName: "V", text: "hi", ts: 10, newChatId: newChatId(id, 10), owner: "process-1" });
  return { store, visitorId: id, chatId: appended.chat.id, messageId: appended.message.id };
}

it("keeps no unrelayed-message map for a visitor once all their messages are relayed", async () => {
  const { store, visitorId, messageId } = await storeWithVisitor();
  expect(store["unrelayedMessages"].has(visitorId)).toBe(true);
  await store.markManyRelayed(new Map([[visitorId, [messageId]]]));
  expect(await store.unrelayed(visitorId)).toEqual([]);
  expect(store["unrelayedMessages"].has(visitorId)).toBe(false);
});

it("keeps nothing of a visitor once they are forgotten after their last transcript is purged", async () => {
  const { store, visitorId, chatId } = await storeWithVisitor();
  await store.updateChat(chatId, ["new"], { state: "ended", endedAt: 20 });
  await store.purgeChat(chatId, Date.now() - 1); // their time has come
  expect(await store.getVisitor(visitorId)).toBeNull();
  expect(store["clientIds"].has(visitorId)).toBe(false);
  expect(store["unrelayedMessages"].has(visitorId)).toBe(false);
  expect(store["messages"].has(visitorId)).toBe(false);
});
