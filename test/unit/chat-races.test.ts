import type { Element } from "@xmpp/xml";
import { parse } from "ltx";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import { AgentMessages } from "../../bridge/agent-messages.js";
import { ChatService } from "../../bridge/chats.js";
import { CommandService } from "../../bridge/commands.js";
import { KeyedQueue } from "../../bridge/keyed-queue.js";
import { registerLifecycleTimers } from "../../bridge/lifecycle.js";
import { createMetrics } from "../../bridge/metrics.js";
import type { PresenceService } from "../../bridge/presence.js";
import type { Rosters } from "../../bridge/rosters.js";
import { Scheduler } from "../../bridge/scheduler.js";
import type { Webhooks } from "../../bridge/webhooks.js";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import type { Chat, Site, Visitor } from "../../bridge/store/types.js";
import { visitorIdFromBytes } from "../../stanza-mappers/addressing.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";

// Routing decisions that race: several "processes" (ChatService instances) on one store,
// on a hand-driven clock. CONTRACT §5: at most maxChatsPerAgent chats per agent, FIFO
// queue, and the agents' load sets must never drift from the chats they hold.

const logger = pino({ level: "silent" });
let clock = 1_700_000_000_000;
const now = () => clock;
let visitors = 0;

/** A dependency the timers of these tests must not touch. */
const untouched = new Proxy({}, { get: (_target, key) => { throw new Error(`used ${String(key)}`); } });

/**
 * A Parley process on the store: its chats, commands and durable timers (fired when the test
 * calls `scheduler.tick()`). Roster changes land in `rosters`, shared by the processes of a
 * test as the server's rosters are.
 */
function process(store: MemoryStore, name: string, rosters = new AgentRosters()) {
  const frames: { visitorId: string; frame: ServerFrame }[] = [];
  const sent: Element[] = [];
  const scheduler = new Scheduler({ store, now, logger, intervalMs: 1_000_000 });
  const lanes = new KeyedQueue();
  const chats = new ChatService({ store, local: { processId: name, deliver: (visitorId, frame) => void frames.push({ visitorId, frame }) }, scheduler, domain: "chat.localhost", send: (stanza) => void sent.push(stanza), rosters: rosters.changer(), lanes, now, logger });
  const commands = new CommandService({ store, deskJid: (siteId) => `${siteId}@chat.localhost`, send: () => {}, chats, now, newId: () => `id${++visitors}`, logger });
  registerLifecycleTimers({ store, scheduler, chats, lanes, presence: untouched as PresenceService, webhooks: untouched as Webhooks, agentGraceMs: 60_000, chatIdleMs: 600_000, visitorRetentionMs: 0, logger });
  return { chats, commands, frames, sent, scheduler, lanes };
}

/** The agents' rosters as the server keeps them: visitor JIDs by agent. */
class AgentRosters {
  private readonly items = new Map<string, Set<string>>();
  private held: { reached(): void; released: Promise<void> } | null = null;

  /** The roster changes of one process (Rosters' two methods, applied here). */
  changer(): Rosters {
    return {
      upsert: async (agentJid: string, item: { jid: string }) => {
        const held = this.held;
        this.held = null;
        if (held) {
          held.reached();
          await held.released;
        }
        this.of(agentJid).add(item.jid);
      },
      remove: async (agentJid: string, item: { jid: string }) => void this.of(agentJid).delete(item.jid),
    } as unknown as Rosters;
  }

  /** The next upsert, from any process, waits until `release()`: a roster change still on its way to the server. */
  holdNextUpsert(): { reached: Promise<void>; release(): void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    this.held = { reached, released: new Promise<void>((resolve) => (release = resolve)) };
    return { reached: reachedPromise, release };
  }

  visitorsOf(agentJid: string): string[] {
    return [...this.of(agentJid)];
  }

  private of(agentJid: string): Set<string> {
    let items = this.items.get(agentJid);
    if (!items) this.items.set(agentJid, (items = new Set()));
    return items;
  }
}

/** A store whose next call of a chosen method fails, as a Redis command does when Redis is unreachable. */
class FlakyStore extends MemoryStore {
  private readonly failing = new Set<string>();

  failNext(method: "enqueue" | "releaseAgent" | "claimAgent" | "claimLeastLoaded" | "isOnline"): void {
    this.failing.add(method);
  }

  override async enqueue(siteId: string, chatId: string, ts: number) {
    this.failIfAsked("enqueue");
    return super.enqueue(siteId, chatId, ts);
  }

  override async releaseAgent(siteId: string, agentJid: string, chatId: string) {
    this.failIfAsked("releaseAgent");
    return super.releaseAgent(siteId, agentJid, chatId);
  }

  override async isOnline(siteId: string, visitorId: string, at: number) {
    this.failIfAsked("isOnline");
    return super.isOnline(siteId, visitorId, at);
  }

  override async claimAgent(siteId: string, agentJid: string, chatId: string, cap: number, at: number) {
    this.failIfAsked("claimAgent");
    return super.claimAgent(siteId, agentJid, chatId, cap, at);
  }

  override async claimLeastLoaded(siteId: string, candidates: string[], chatId: string, cap: number, at: number) {
    this.failIfAsked("claimLeastLoaded");
    return super.claimLeastLoaded(siteId, candidates, chatId, cap, at);
  }

  /** The next durable timer of this kind (`finish-queue`, …) is not written. */
  failNextTimer(kind: string): void {
    this.failing.add(`timer:${kind}`);
  }

  override async setTimer(id: string, at: number) {
    this.failIfAsked(`timer:${id.slice(0, id.indexOf(":"))}`);
    return super.setTimer(id, at);
  }

  private failIfAsked(method: string): void {
    if (this.failing.delete(method)) throw new Error(`injected store error in ${method}`);
  }
}

async function siteWith(store: MemoryStore, agents: string[], cap: number): Promise<Site> {
  const site: Site = { id: "acme", name: "Acme", origins: [], maxChatsPerAgent: cap, createdAt: 0, updatedAt: 0 };
  await store.putSite(site);
  for (const jid of agents) {
    await store.putAgent("acme", { jid, addedAt: 0 });
    await store.setAgentResource(jid, "laptop", "available", now());
  }
  return site;
}

/** A visitor whose first message is stored (the chat is `new`), left unrelayed under `owner` if given. */
async function newChat(store: MemoryStore, site: Site, { text = "hi", owner }: { text?: string; owner?: string } = {}): Promise<{ visitor: Visitor; chat: Chat }> {
  // Distinct per visitor: the number leads, in the bytes the id keeps whole.
  const id = visitorIdFromBytes(Buffer.from(String(++visitors).padEnd(17, "-")));
  const visitor: Visitor = { id, siteId: site.id, jid: `acme.${id}@chat.localhost`, tokenHash: "00", number: visitors, createdAt: now() };
  await store.createVisitor(visitor);
  clock += 1;
  const appended = await store.appendVisitorMessage({ visitorId: id, siteId: site.id, clientId: `c${visitors}`, fallbackName: "V", text, ts: now(), newChatId: newChatId(id, now()), ...(owner ? { owner } : {}) });
  return { visitor: appended.visitor, chat: appended.chat };
}

/**
 * The agent's connection drops; the visitor then writes `text`, relayed to the agent, so
 * into ejabberd's offline storage for them (chaos seed 346342323); the agent stays away
 * past the grace period and their `agent-gone` timer fires. `p.sent` is emptied first.
 */
async function goneAfterVisitorWrote(store: MemoryStore, p: ReturnType<typeof process>, visitor: Visitor, agentJid: string, text: string) {
  clock += 1;
  await store.setAgentResource(agentJid, "laptop", null, now());
  clock += 1;
  const { message } = await store.appendVisitorMessage({ visitorId: visitor.id, siteId: visitor.siteId, clientId: `c-away-${++visitors}`, fallbackName: "V", text, ts: now(), newChatId: newChatId(visitor.id, now()) });
  await store.markRelayed(visitor.id, [message.id]);
  p.sent.length = 0;
  clock += 60_000;
  await p.scheduler.schedule("agent-gone", agentJid, now());
  await p.scheduler.tick();
}

/** `count` visitors each start a chat, routed one after the other. */
async function routeNewChats(store: MemoryStore, site: Site, p: ReturnType<typeof process>, count: number) {
  const started: { visitor: Visitor; chat: Chat }[] = [];
  for (let i = 0; i < count; i++) {
    const { visitor, chat } = await newChat(store, site);
    await p.chats.route(site, visitor, chat);
    started.push({ visitor, chat });
  }
  return started;
}

async function loads(store: MemoryStore): Promise<Record<string, string[]>> {
  return Object.fromEntries([...(await store.agentLoads("acme"))].filter(([, l]) => l.chatIds.length > 0).map(([jid, l]) => [jid, [...l.chatIds].sort()]));
}

/** Every active chat is in its agent's load set, and nothing else is. */
async function expectLoadsMatchChats(store: MemoryStore, chatIds: string[]) {
  const expected: Record<string, string[]> = {};
  for (const id of chatIds) {
    const chat = await store.getChat(id);
    if (chat?.state === "active") (expected[chat.agentJid!] ??= []).push(id);
  }
  for (const list of Object.values(expected)) list.sort();
  expect(await loads(store)).toEqual(expected);
}

describe("routing races", () => {
  it("moves chats decided together to agents below the cap", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x", "c@x"], 2);
    const p = process(store, "p1");
    const chats: Chat[] = [];
    for (const agent of ["a@x", "a@x", "b@x", "c@x", "c@x"]) {
      const { visitor, chat } = await newChat(store, site);
      await p.chats.assign(site, visitor, chat, agent, { ignoreCap: false });
      chats.push((await store.getChat(chat.id))!);
    }
    // Both of a's chats time out at the same moment: only b has one free slot.
    await Promise.all(chats.slice(0, 2).map(async (chat) => p.chats.reassign(site, (await store.getVisitor(chat.visitorId))!, chat, "You did not answer.")));
    const after = await loads(store);
    expect(Object.values(after).every((ids) => ids.length <= 2)).toBe(true);
    expect(after["b@x"]).toHaveLength(2);
    expect(await store.queueLength("acme")).toBe(1);
    await expectLoadsMatchChats(store, chats.map((c) => c.id));
  });

  it("keeps load sets true when a transfer and a timeout move the same chat on two processes", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x", "c@x"], 3);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const { visitor, chat } = await newChat(store, site);
    await p1.chats.assign(site, visitor, chat, "a@x", { ignoreCap: false });
    const stale = (await store.getChat(chat.id))!;
    await Promise.all([p1.chats.reassign(site, visitor, stale, "You did not answer."), p2.chats.transfer(site, visitor, stale, "b@x")]);
    await expectLoadsMatchChats(store, [chat.id]);
    await p1.chats.end(site, (await store.getVisitor(visitor.id))!, (await store.getChat(chat.id))!);
    await expect.poll(() => loads(store)).toEqual({});
  });

  it("keeps the agent's slot when the same new chat is routed twice at once", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 3);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const { visitor, chat } = await newChat(store, site);
    await Promise.all([p1.chats.route(site, visitor, chat), p2.chats.route(site, visitor, chat)]);
    expect((await store.getChat(chat.id))?.agentJid).toBe("a@x");
    await expectLoadsMatchChats(store, [chat.id]);
  });

  it("serves the queue first: a slot freed by a transfer goes to the oldest waiting chat, not to a newer one", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const p = process(store, "p1");
    const started = await routeNewChats(store, site, p, 3);
    const first = (await store.getChat(started[0]!.chat.id))!;
    const other = first.agentJid === "a@x" ? "b@x" : "a@x";
    // Both agents are full, the third chat waits; a transfer to the other agent (allowed past
    // the cap: a person chose them) frees the first agent's slot.
    expect(await p.commands.run({ site, visitor: started[0]!.visitor, chat: first, agentJid: first.agentJid!, name: "transfer", args: other })).toMatch(/^\[parley\] Chat transferred/);
    await expect.poll(async () => (await store.getChat(started[2]!.chat.id))?.state).toBe("active");
    const { visitor, chat } = await newChat(store, site);
    await p.chats.route(site, visitor, chat);
    expect((await store.getChat(chat.id))?.state).toBe("queued");
  });

  it("tells the queued visitors behind a chat that ended their new position", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 1);
    const p = process(store, "p1");
    const started = await routeNewChats(store, site, p, 3);
    const [, second, third] = started;
    await p.chats.end(site, second!.visitor, (await store.getChat(second!.chat.id))!);
    expect(p.frames.filter((f) => f.visitorId === third!.visitor.id && f.frame.type === "queue").at(-1)?.frame).toEqual({ type: "queue", position: 1 });
  });

  it("refuses to transfer a chat to an agent who is away, busy or offline", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x", "c@x", "d@x"], 3);
    await store.setAgentResource("b@x", "laptop", "away", now());
    await store.setAgentBusy("c@x", true);
    await store.setAgentResource("d@x", "laptop", null, now());
    const p = process(store, "p1");
    const { visitor, chat } = await newChat(store, site);
    await p.chats.assign(site, visitor, chat, "a@x", { ignoreCap: false });
    const active = (await store.getChat(chat.id))!;
    for (const [to, state] of [["b@x", "away"], ["c@x", "busy"], ["d@x", "offline"]] as const) {
      expect(await p.commands.run({ site, visitor, chat: active, agentJid: "a@x", name: "transfer", args: to })).toBe(`[parley] ${to.split("@")[0]} is ${state}: a chat can only be transferred to an available agent.`);
    }
    expect((await store.getChat(chat.id))?.agentJid).toBe("a@x");
  });

  it("expects the agent's answer before anything reaches them, so that a quick answer cancels the timer", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 3);
    const events: string[] = [];
    const recording = { schedule: async (kind: string) => void events.push(`schedule ${kind}`), cancel: async () => {} } as unknown as Scheduler;
    const chats = new ChatService({ store, local: { processId: "p1", deliver: () => {} }, scheduler: recording, domain: "chat.localhost", send: (stanza) => void events.push(`send ${stanza.name}`), rosters: { upsert: async () => {}, remove: async () => {} } as unknown as Rosters, lanes: new KeyedQueue(), now, logger });
    const { visitor, chat } = await newChat(store, site);
    await chats.route(site, visitor, chat);
    expect(events.indexOf("schedule unanswered")).toBeGreaterThanOrEqual(0);
    expect(events.indexOf("schedule unanswered")).toBeLessThan(events.findIndex((e) => e.startsWith("send ")));
  });
});

describe("chat lifecycle races", () => {
  it("routes, from another process, a new chat whose routing a store error stopped before it left new", async () => {
    const store = new FlakyStore();
    const site = await siteWith(store, ["a@x"], 1);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const { visitor, chat } = await newChat(store, site);
    store.failNext("claimLeastLoaded");
    await expect(p1.chats.route(site, visitor, chat)).rejects.toThrow(/injected/);
    expect((await store.getChat(chat.id))?.state).toBe("new");

    clock += 60_000;
    await p2.scheduler.tick();
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: "a@x" });
    await expectLoadsMatchChats(store, [chat.id]);
  });

  it("puts in line, from another process, a chat whose queueing a store error stopped after it was marked queued", async () => {
    const store = new FlakyStore();
    const site = await siteWith(store, ["a@x"], 1);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const [first] = await routeNewChats(store, site, p1, 1);
    const { visitor, chat } = await newChat(store, site);
    store.failNext("enqueue");
    await expect(p1.chats.route(site, visitor, chat)).rejects.toThrow(/injected/);
    expect((await store.getChat(chat.id))?.state).toBe("queued");
    expect(await store.queuedChats("acme")).toEqual([]);

    clock += 60_000;
    await p2.scheduler.tick();
    expect(await store.queuedChats("acme")).toEqual([chat.id]);
    expect(p2.frames).toContainEqual({ visitorId: visitor.id, frame: { type: "queue", position: 1 } });
    // And it is served like any waiting chat: the agent's slot goes to it when it frees.
    await p1.chats.end(site, first!.visitor, (await store.getChat(first!.chat.id))!);
    await expect.poll(async () => (await store.getChat(chat.id))?.state).toBe("active");
  });

  it("finishes, from another process, a move to the queue that a store error stopped midway: the agent's slot and roster item go, the chat waits in line", async () => {
    const store = new FlakyStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const [first, second] = await routeNewChats(store, site, p1, 2);
    const unanswered = (await store.getChat(first!.chat.id))!;
    expect(unanswered.agentJid).toBe("a@x");
    store.failNext("releaseAgent");
    await expect(p1.chats.reassign(site, first!.visitor, unanswered, "You did not answer.")).rejects.toThrow(/injected/);
    expect((await store.getChat(unanswered.id))?.state).toBe("queued");

    await store.setAgentResource("a@x", "laptop", "away", now()); // so that nobody has room when it is back in line
    clock += 60_000;
    await p2.scheduler.tick();
    await expectLoadsMatchChats(store, [first!.chat.id, second!.chat.id]);
    expect(rosters.visitorsOf("a@x")).toEqual([]);
    expect(await store.queuedChats("acme")).toEqual([unanswered.id]);
    expect(p2.frames).toContainEqual({ visitorId: first!.visitor.id, frame: { type: "queue", position: 1 } });
  });

  it("puts back in line, from another process, a chat the queue's drain took out when a store error stopped its assignment", async () => {
    const store = new FlakyStore();
    const site = await siteWith(store, ["a@x"], 1);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const [first, second] = await routeNewChats(store, site, p1, 2);
    expect(await store.queuedChats("acme")).toEqual([second!.chat.id]);
    store.failNext("claimAgent");
    // The end frees a@x's slot and drains the queue: the waiting chat is taken out, then its claim fails.
    await expect(p1.chats.end(site, first!.visitor, (await store.getChat(first!.chat.id))!)).rejects.toThrow(/injected/);
    expect((await store.getChat(second!.chat.id))?.state).toBe("queued");

    clock += 60_000;
    await p2.scheduler.tick();
    await expect.poll(async () => (await store.getChat(second!.chat.id))?.agentJid).toBe("a@x");
  });

  it("keeps in line a chat the queue's drain chose when a store error stopped the drain before it took the chat out", async () => {
    const store = new FlakyStore();
    const site = await siteWith(store, ["a@x"], 1);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    const [first, second] = await routeNewChats(store, site, p1, 2);
    // The end frees a@x's slot and drains the queue: the guard of the waiting chat's assignment is not written.
    store.failNextTimer("finish-queue");
    await expect(p1.chats.end(site, first!.visitor, (await store.getChat(first!.chat.id))!)).rejects.toThrow(/injected/);
    expect(await store.queuedChats("acme")).toEqual([second!.chat.id]);

    // Still in line, so the next drain (here another process's) serves it.
    await p2.chats.drainQueue(site);
    expect(await store.getChat(second!.chat.id)).toMatchObject({ state: "active", agentJid: "a@x" });
  });

  it("takes the visitor out of the agent's roster when another process ends the chat while it is being assigned", async () => {
    const store = new MemoryStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x"], 3);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const { visitor, chat } = await newChat(store, site);
    const upsert = rosters.holdNextUpsert();
    const assigning = p1.chats.assign(site, visitor, chat, "a@x", { ignoreCap: false });
    await upsert.reached; // the chat is a@x's; the roster item is on its way to the server
    expect(await p2.chats.end(site, visitor, (await store.getChat(chat.id))!)).toBe(true);
    upsert.release();
    await assigning;
    expect(rosters.visitorsOf("a@x")).toEqual([]);
    expect(p1.frames.filter((f) => f.visitorId === visitor.id).map((f) => f.frame.type)).not.toContain("agent");
    await expectLoadsMatchChats(store, [chat.id]);
  });

  it("frees, from another process, the slot a transfer stopped midway left with the agent the chat left", async () => {
    const store = new FlakyStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x", "b@x"], 2);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const [{ visitor, chat }] = (await routeNewChats(store, site, p1, 1)) as [{ visitor: Visitor; chat: Chat }];
    const active = (await store.getChat(chat.id))!;
    const to = active.agentJid === "a@x" ? "b@x" : "a@x";
    // The chat is the new agent's; the store error comes as the old agent's slot is freed.
    store.failNext("releaseAgent");
    await expect(p1.chats.transfer(site, visitor, active, to)).rejects.toThrow(/injected/);
    expect((await store.getChat(chat.id))?.agentJid).toBe(to);

    clock += 60_000;
    await p2.scheduler.tick();
    await expectLoadsMatchChats(store, [chat.id]);
    expect(rosters.visitorsOf(active.agentJid!)).toEqual([]);
  });

  it("relays, from another process, what an assignment stopped after the chat became the agent's had not yet relayed", async () => {
    const store = new FlakyStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x"], 1);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const { visitor, chat } = await newChat(store, site, { text: "anyone?", owner: "p1" });
    // The chat becomes a@x's and the roster item is there; then a store error stops the assignment.
    store.failNext("isOnline");
    await expect(p1.chats.route(site, visitor, chat)).rejects.toThrow(/injected/);
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: "a@x" });
    expect(p1.sent.filter((s) => s.is("message") && s.attrs.to === "a@x")).toEqual([]);

    clock += 60_000;
    await p2.scheduler.tick();
    const relayed = p2.sent.filter((s) => s.is("message") && s.attrs.to === "a@x");
    expect(relayed.map((s) => s.getChildText("body"))).toEqual(["anyone?"]);
    // A second attempt: if the first had reached the agent, their client shows this copy with the visitor's time.
    expect(relayed[0]!.getChild("delay", "urn:xmpp:delay")?.attrs.stamp).toBe(new Date(chat.startedAt).toISOString());
    expect(rosters.visitorsOf("a@x")).toEqual([visitor.jid]);
    expect(p2.frames).toContainEqual({ visitorId: visitor.id, frame: { type: "agent", state: "joined", name: "a" } });
  });

  it("relays what a stopped assignment left to the agent who has the chat by the time another process finishes it", async () => {
    const store = new FlakyStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const { visitor, chat } = await newChat(store, site, { text: "hello?", owner: "p1" });
    store.failNext("isOnline");
    await expect(p1.chats.route(site, visitor, chat)).rejects.toThrow(/injected/);
    const active = (await store.getChat(chat.id))!;
    const [from, to] = active.agentJid === "a@x" ? ["a@x", "b@x"] : ["b@x", "a@x"];
    // The agent, who never got the message, hands the chat on before the timer is due.
    expect(await p2.commands.run({ site, visitor, chat: active, agentJid: from, name: "transfer", args: to })).toMatch(/transferred/);

    clock += 60_000;
    await p2.scheduler.tick();
    expect(p2.sent.filter((s) => s.is("message") && s.attrs.to === to).map((s) => s.getChildText("body"))).toContain("hello?");
  });

  it("relays as the visitor's message, not as context, what a requeued chat's previous agent may never have had", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 1);
    const p1 = process(store, "p1");
    const [{ visitor, chat }] = (await routeNewChats(store, site, p1, 1)) as [{ visitor: Visitor; chat: Chat }];
    clock += 1;
    // Stored and relayed while the chat was a@x's, but not confirmed routed (ejabberd stopping): still unrelayed.
    await store.appendVisitorMessage({ visitorId: visitor.id, siteId: site.id, clientId: "c-unsure", fallbackName: "V", text: "did you get this?", ts: now(), newChatId: newChatId(visitor.id, now()), owner: "p1" });
    p1.sent.length = 0;
    clock += 1;
    await p1.chats.reassign(site, visitor, (await store.getChat(chat.id))!, "You did not answer."); // nobody else: queued
    expect((await store.getChat(chat.id))?.state).toBe("queued");
    await p1.chats.drainQueue(site); // a@x has room again
    expect((await store.getChat(chat.id))?.state).toBe("active");
    const toAgent = p1.sent.filter((s) => s.is("message") && s.attrs.to === "a@x");
    const bodies = toAgent.map((s) => s.getChildText("body") ?? "");
    expect(bodies.filter((b) => b === "did you get this?")).toHaveLength(1);
    expect(bodies.filter((b) => b.startsWith("[parley]") && b.endsWith(": hi"))).toHaveLength(1); // what a@x had: context
    // Marked as sent again: p1's outbox may still deliver its first copy to a@x (chaos seed 1625151203).
    expect(toAgent.find((s) => s.getChildText("body") === "did you get this?")?.getChild("delay", "urn:xmpp:delay")).toBeDefined();
  });

  it("relays a visitor message stored while its chat is being assigned once: by the process that stored it, not again by the assignment", async () => {
    const store = new MemoryStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x"], 3);
    const [assigning, storing] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const { visitor, chat } = await newChat(store, site);
    const upsert = rosters.holdNextUpsert();
    const assigned = assigning.chats.assign(site, visitor, chat, "a@x", { ignoreCap: false });
    // The chat is a@x's; the roster item is on its way (a second or more right after ejabberd
    // restarts). The visitor writes again, through another process, which finds it active.
    await upsert.reached;
    clock += 1;
    const appended = await store.appendVisitorMessage({ visitorId: visitor.id, siteId: site.id, clientId: "c-again", fallbackName: "V", text: "still there?", ts: now(), newChatId: newChatId(visitor.id, now()) });
    expect(appended.chat.state).toBe("active");
    await storing.chats.onVisitorMessage(site, appended.visitor, appended);
    upsert.release();
    await assigned;
    const toAgent = [...assigning.sent, ...storing.sent].filter((s) => s.is("message") && s.attrs.to === "a@x");
    expect(toAgent.map((s) => s.getChildText("body")).sort()).toEqual(["hi", "still there?"]);
  });

  it("gives whoever takes a gone agent's chat what the visitor wrote since the agent went away as messages, not as context", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const p1 = process(store, "p1");
    const [{ visitor, chat }] = (await routeNewChats(store, site, p1, 1)) as [{ visitor: Visitor; chat: Chat }];
    const gone = (await store.getChat(chat.id))!.agentJid!;
    const other = gone === "a@x" ? "b@x" : "a@x";
    await goneAfterVisitorWrote(store, p1, visitor, gone, "anyone?");
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: other });
    const toOther = p1.sent.filter((s) => s.is("message") && s.attrs.to === other).map((s) => s.getChildText("body") ?? "");
    expect(toOther).toContain("anyone?");
    expect(toOther.some((b) => b.startsWith("[parley]") && b.endsWith(": hi"))).toBe(true); // what the agent had: context
    expect(toOther.some((b) => b.startsWith("[parley]") && b.endsWith(": anyone?"))).toBe(false);
  });

  it("assigns a gone agent's requeued chat with what the visitor wrote since the agent went away as messages", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 1);
    const p1 = process(store, "p1");
    const [{ visitor, chat }] = (await routeNewChats(store, site, p1, 1)) as [{ visitor: Visitor; chat: Chat }];
    await goneAfterVisitorWrote(store, p1, visitor, "a@x", "anyone?");
    expect((await store.getChat(chat.id))?.state).toBe("queued"); // nobody else
    p1.sent.length = 0;
    await store.setAgentResource("a@x", "phone", "available", now()); // back
    await p1.chats.drainQueue(site);
    const bodies = p1.sent.filter((s) => s.is("message") && s.attrs.to === "a@x").map((s) => s.getChildText("body") ?? "");
    expect(bodies).toContain("anyone?");
    expect(bodies).not.toContain("hi");
  });

  it("relays what a requeued chat waited with to the agent it is transferred to while another process was assigning it", async () => {
    const store = new MemoryStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const [{ visitor, chat }] = (await routeNewChats(store, site, p1, 2)) as [{ visitor: Visitor; chat: Chat }];
    const first = (await store.getChat(chat.id))!.agentJid!;
    const other = first === "a@x" ? "b@x" : "a@x";
    clock += 1;
    await p1.chats.reassign(site, visitor, (await store.getChat(chat.id))!, "You did not answer."); // the other agent is full: queued
    expect((await store.getChat(chat.id))?.state).toBe("queued");
    clock += 1;
    // Written while the chat waits: p1 stores it and relays nothing, the assignment will.
    await store.appendVisitorMessage({ visitorId: visitor.id, siteId: site.id, clientId: "c-waiting", fallbackName: "V", text: "still there?", ts: now(), newChatId: newChatId(visitor.id, now()), owner: "p1" });
    // p2 assigns it to the first agent again, who transfers it (through p1) before the assignment relays it (chaos seed 1072514441).
    const upsert = rosters.holdNextUpsert();
    const assigning = p2.chats.drainQueue(site);
    await upsert.reached;
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: first });
    expect(await p1.chats.transfer(site, visitor, (await store.getChat(chat.id))!, other)).toBe(true);
    upsert.release();
    await assigning;
    const relayed = [...p1.sent, ...p2.sent].filter((s) => s.is("message") && s.getChildText("body") === "still there?");
    expect(relayed.map((s) => s.attrs.to)).toEqual([other]);
    expect(relayed[0]!.getChild("delay", "urn:xmpp:delay")).toBeDefined();
  });

  it("takes the visitor out of the new agent's roster when another process ends the chat while it is being transferred", async () => {
    const store = new MemoryStore();
    const rosters = new AgentRosters();
    const site = await siteWith(store, ["a@x", "b@x"], 3);
    const [p1, p2] = [process(store, "p1", rosters), process(store, "p2", rosters)];
    const { visitor, chat } = await newChat(store, site);
    await p1.chats.assign(site, visitor, chat, "a@x", { ignoreCap: false });
    const upsert = rosters.holdNextUpsert();
    const transferring = p1.chats.transfer(site, visitor, (await store.getChat(chat.id))!, "b@x");
    await upsert.reached;
    expect(await p2.chats.end(site, visitor, (await store.getChat(chat.id))!)).toBe(true);
    upsert.release();
    await transferring;
    expect(rosters.visitorsOf("a@x")).toEqual([]);
    expect(rosters.visitorsOf("b@x")).toEqual([]);
  });

  it("lets an agent who said !busy take a queued chat by answering it, and moves those behind up a place", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x"], 1);
    const p = process(store, "p1");
    const agentMessages = new AgentMessages({ store, domain: "chat.localhost", send: () => {}, chats: p.chats, commands: p.commands, lanes: p.lanes, now, newId: () => `id${++visitors}`, logger, metrics: createMetrics(async () => ({})) });
    await agentMessages.onMessage(parse('<message type="chat" from="b@x/laptop" to="acme@chat.localhost"><body>!busy</body></message>'));
    expect(await store.isAgentBusy("b@x")).toBe(true);
    const [, second, third] = await routeNewChats(store, site, p, 3);
    expect(await store.queuedChats("acme")).toEqual([second!.chat.id, third!.chat.id]);

    await agentMessages.onMessage(parse(`<message type="chat" id="m1" from="b@x/laptop" to="${second!.visitor.jid}"><body>Hello, I can help you.</body></message>`));
    expect(await store.getChat(second!.chat.id)).toMatchObject({ state: "active", agentJid: "b@x" });
    expect(p.frames.filter((f) => f.visitorId === second!.visitor.id).map((f) => f.frame)).toContainEqual(expect.objectContaining({ type: "message", from: "agent", text: "Hello, I can help you." }));
    expect(p.frames.filter((f) => f.visitorId === third!.visitor.id && f.frame.type === "queue").at(-1)?.frame).toEqual({ type: "queue", position: 1 });
    expect(await store.isAgentBusy("b@x")).toBe(true); // routing still gives them nothing new
  });
});

describe("leaving offline mode", () => {
  it("relays a message stored in offline mode to the agent whose answer took the chat meanwhile on another process", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 2);
    const [p1, p2] = [process(store, "p1"), process(store, "p2")];
    await store.setAgentResource("a@x", "laptop", null, now());
    const { visitor, chat } = await newChat(store, site, { text: "anyone?" });
    await p1.chats.route(site, visitor, chat);
    await store.setAgentResource("a@x", "laptop", "available", now());

    // The visitor writes again (stored while the chat is in offline mode); before p1 goes on
    // with it, a@x's answer reaches p2, which takes the chat.
    clock += 1;
    const appended = await store.appendVisitorMessage({ visitorId: visitor.id, siteId: site.id, clientId: "c-again", fallbackName: "V", text: "still there?", ts: now(), newChatId: newChatId(visitor.id, now()) });
    expect(appended.chat.state).toBe("offline");
    expect(await p2.chats.takeOver(site, visitor, (await store.getChat(chat.id))!, "a@x")).toBe(true);
    p1.sent.length = 0;
    await p1.chats.onVisitorMessage(site, appended.visitor, appended);

    const toAgent = [...p1.sent, ...p2.sent].filter((s) => s.is("message") && s.attrs.to === "a@x").map((s) => s.getChildText("body"));
    expect(toAgent).toContain("still there?");
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: "a@x" });
  });

  it("keeps a chat in offline mode, sending its new message to every agent, when the agents are gone again by the time routing decides", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x", "b@x"], 2);
    const p = process(store, "p1");
    for (const jid of ["a@x", "b@x"]) await store.setAgentResource(jid, "laptop", null, now());
    const { visitor, chat } = await newChat(store, site, { text: "anyone?" });
    await p.chats.route(site, visitor, chat);
    expect((await store.getChat(chat.id))?.state).toBe("offline");

    // The visitor wrote again while an agent was available; by the decision nobody is.
    clock += 1;
    const { message } = await store.appendVisitorMessage({ visitorId: visitor.id, siteId: site.id, clientId: "c-again", fallbackName: "V", text: "still there?", ts: now(), newChatId: newChatId(visitor.id, now()) });
    const leaving = (await store.updateChat(chat.id, ["offline"], { requeuedAt: message.ts }))!;
    p.sent.length = 0;
    await p.chats.finishRoute(site, visitor, leaving); // as the finish-route timer does

    const sent = p.sent.filter((s) => s.is("message")).map((s) => `${s.attrs.to} ${s.getChildText("body")}`);
    expect(sent.sort()).toEqual(["a@x still there?", "b@x still there?"]);
    expect(await store.getChat(chat.id)).toMatchObject({ state: "offline", requeuedAt: undefined });
  });
});

describe("an agent who does not answer", () => {
  it("keeps the chat, with a reminder, while no other agent can take it, and loses it at the next timeout once one can", async () => {
    const store = new MemoryStore();
    const site = await siteWith(store, ["a@x"], 2);
    const p = process(store, "p1");
    const [{ visitor, chat }] = (await routeNewChats(store, site, p, 1)) as [{ visitor: Visitor; chat: Chat }];
    expect((await store.getChat(chat.id))?.agentJid).toBe("a@x");
    p.sent.length = 0;

    clock += 121_000;
    await p.scheduler.tick();
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: "a@x" });
    const notices = p.sent.filter((s) => s.is("message") && s.attrs.to === "a@x").map((s) => s.getChildText("body") ?? "");
    expect(notices).toEqual([expect.stringMatching(/^\[parley\] You did not answer within 120 s\. .* is still waiting for your answer/)]);
    expect(p.frames.filter((f) => f.visitorId === visitor.id && f.frame.type === "agent" && f.frame.state === "left")).toEqual([]);
    expect(await store.queueLength("acme")).toBe(0);

    // Another agent is available by the next timeout: the chat moves to them.
    await store.putAgent("acme", { jid: "b@x", addedAt: 0 });
    await store.setAgentResource("b@x", "laptop", "available", now());
    clock += 121_000;
    await p.scheduler.tick();
    expect(await store.getChat(chat.id)).toMatchObject({ state: "active", agentJid: "b@x" });
  });
});
