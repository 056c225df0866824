import { pino } from "pino";
import { expect, it } from "vitest";
import { ChatService } from "../../bridge/chats.js";
import { KeyedQueue } from "../../bridge/keyed-queue.js";
import type { Rosters } from "../../bridge/rosters.js";
import { Scheduler } from "../../bridge/scheduler.js";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";

// A visitor message stays in the outbox until written to ejabberd (outbox.ts). One that
// never is — its chat waited in the queue or in offline mode with no agent at all, and
// ended so — must leave it when the chat ends: nothing relays an ended chat's messages,
// and the outbox entry (and the process's index entry with it) stayed for good.

const logger = pino({ level: "silent" });
const now = () => 1_700_000_000_000;

it("drops an ended chat's never relayed messages from the outbox", async () => {
  const store = new MemoryStore();
  const site = { id: "nobody-home", name: "Nobody Home", origins: [], maxChatsPerAgent: 3, createdAt: 1, updatedAt: 1 };
  await store.putSite(site); // no agents: the chat goes to offline mode, nothing is relayed
  const id = visitorIdFromBytes(Buffer.alloc(17, 7));
  await store.createVisitor({ id, siteId: site.id, jid: `${site.id}.${id}@chat.localhost`, tokenHash: "ab".repeat(32), number: 1, createdAt: 1 });
  const rosters = { upsert: async () => {}, remove: async () => {} } as unknown as Rosters;
  const chats = new ChatService({ store, local: { processId: "p1", deliver: () => {} }, scheduler: new Scheduler({ store, now, logger }), domain: "chat.localhost", send: () => {}, rosters, lanes: new KeyedQueue(), now, logger });

  const appended = await store.appendVisitorMessage({ visitorId: id, siteId: site.id, clientId: "c1", fallbackName: "Visitor 0001", text: "anyone?", ts: now(), newChatId: newChatId(id, now()), owner: "p1" });
  await chats.onVisitorMessage(site, appended.visitor, appended);
  expect(await store.unrelayed(id)).toEqual([{ messageId: appended.message.id, owner: "p1" }]);

  const visitor = (await store.getVisitor(id))!;
  expect(await chats.end(site, visitor, (await store.getChat(appended.chat.id))!)).toBe(true);
  expect(await store.unrelayed(id)).toEqual([]);
});
