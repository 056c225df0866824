import { pino } from "pino";
import { expect, it } from "vitest";
import { ChatService } from "../../bridge/chats.js";
import { KeyedQueue } from "../../bridge/keyed-queue.js";
import type { Rosters } from "../../bridge/rosters.js";
import { Scheduler } from "../../bridge/scheduler.js";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import type { Chat, Site } from "../../bridge/store/types.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";

// ChatService remembers each answered assignment, so that only an agent's first answer
// costs a store write. An assignment that is over (ended, transferred, moved) is forgotten
// at once: before, each stayed until a hundred thousand more had been answered, a per-chat
// entry that outlived its chat. Looked at through the private set (bracket access): nothing
// else tells a remembered assignment from a forgotten one.

const logger = pino({ level: "silent" });
const now = () => 1_700_000_000_000;

async function answeredChat() {
  const store = new MemoryStore();
  const site: Site = { id: "acme", name: "Acme", origins: [], maxChatsPerAgent: 5, createdAt: 0, updatedAt: 0 };
  await store.putSite(site);
  for (const jid of ["a@x", "b@x"]) {
    await store.putAgent(site.id, { jid, addedAt: 0 });
    await store.setAgentResource(jid, "laptop", "available", now());
  }
  const rosters = { upsert: async () => {}, remove: async () => {} } as unknown as Rosters;
  const scheduler = new Scheduler({ store, now, logger, intervalMs: 1_000_000 });
  const chats = new ChatService({ store, local: { processId: "p1", deliver: () => {} }, scheduler, domain: "chat.localhost", send: () => {}, rosters, lanes: new KeyedQueue(), now, logger });
  const id = visitorIdFromBytes(Buffer.alloc(17, 7));
  await store.createVisitor({ id, siteId: site.id, jid: `acme.${id}@chat.localhost`, tokenHash: "00", number: 1, createdAt: now() });
  const appended = await store.appendVisitorMessage({ visitorId: id, siteId: site.id, clientId: "c1", fallbackName: "V", text: "hi", ts: now(), newChatId: newChatId(id, now()) });
  await chats.route(site, appended.visitor, appended.chat);
  const assigned = (await store.getChat(appended.chat.id))!;
  expect(assigned).toMatchObject({ state: "active", agentJid: expect.any(String) });
  await chats.agentAnswered(assigned);
  const remembered = () => (chats["answeredChats"] as Set<string>).size;
  expect(remembered()).toBe(1);
  return { store, site, chats, visitorId: id, assigned, remembered };
}

it("forgets an answered assignment once the chat ends", async () => {
  const { store, site, chats, visitorId, assigned, remembered } = await answeredChat();
  expect(await chats.end(site, (await store.getVisitor(visitorId))!, assigned)).toBe(true);
  expect(remembered()).toBe(0);
});

it("forgets an answered assignment once the chat is transferred to another agent", async () => {
  const { store, site, chats, visitorId, assigned, remembered } = await answeredChat();
  const other = assigned.agentJid === "a@x" ? "b@x" : "a@x";
  expect(await chats.transfer(site, (await store.getVisitor(visitorId))!, assigned, other)).toBe(true);
  expect(((await store.getChat(assigned.id)) as Chat).agentJid).toBe(other);
  expect(remembered()).toBe(0);
});
