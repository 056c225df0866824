import { EventEmitter } from "node:events";
import { aggregatePresence, type AgentPresence, type AgentShow } from "../../stanza-mappers/presence-to-agent-state.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { visitorIdOfChat } from "./ids.js";
import { chatMatchesListState } from "./chat-list-state.js";
import { messageFrame } from "./message-frame.js";
import { BEFORE_ANY_MESSAGE } from "./message-ids.js";
import { UnknownVisitorError, VisitorBlockedError, type Agent, type AppendAgentMessage, type AppendAgentOutcome, type AppendResult, type AppendVisitorMessage, type BusHandler, type Chat, type ProcessMessage, type ChatState, type Site, type Store, type StoredMessage, type Visitor, type WebhookEvent } from "./types.js";

/** Expired visitors are swept after this many new ones (and dropped whenever read). */
const VISITOR_SWEEP_EVERY = 1000;

/** One resource of an agent: its presence and the probe round it was last heard of in. */
interface HeardResource {
  show: AgentShow;
  round: number;
}

/**
 * The store for a single process (the default when PARLEY_REDIS_URL is unset). Same
 * contract as the Redis store; values are cloned in and out so callers can never
 * mutate stored state by accident, just as with a real database.
 */
export class MemoryStore implements Store {
  readonly kind = "memory" as const;
  private readonly sites = new Map<string, Site>();
  private readonly agents = new Map<string, Map<string, Agent>>();
  private readonly resources = new Map<string, Map<string, HeardResource>>();
  private readonly probeRounds = new Map<string, number>();
  private readonly unavailableSince = new Map<string, number>();
  private readonly busyAgents = new Set<string>();
  private readonly visitors = new Map<string, Visitor>();
  /** When each visitor who never chatted is forgotten (ms); checked when read, swept now and then. */
  private readonly visitorForgetAt = new Map<string, number>();
  private visitorsCreatedSinceSweep = 0;
  private readonly visitorNumbers = new Map<string, number>();
  private readonly online = new Map<string, Map<string, number>>();
  private readonly chats = new Map<string, Chat>();
  private readonly siteChats = new Map<string, Set<string>>();
  private readonly messages = new Map<string, StoredMessage[]>();
  private readonly clientIds = new Map<string, Map<string, string>>();
  private readonly loads = new Map<string, Map<string, { chatIds: Set<string>; lastAssignedAt: number }>>();
  private readonly queues = new Map<string, { chatId: string; ts: number }[]>();
  private readonly timers = new Map<string, number>();
  private readonly webhookEvents = new Map<string, WebhookEvent>();
  private readonly bus = new EventEmitter().setMaxListeners(0);
  private readonly unrelayedMessages = new Map<string, Map<string, string>>();
  private readonly processes = new Map<string, number>();
  private readonly outboxes = new Map<string, Set<string>>();
  private readonly holders = new Map<string, Set<string>>();
  private lastMessageMs = 0;
  private messageSeq = 0;

  async ping(): Promise<void> {}
  async close(): Promise<void> {
    this.bus.removeAllListeners();
  }

  // --- sites and agents
  async putSite(site: Site) {
    this.sites.set(site.id, clone(site));
  }
  async getSite(siteId: string) {
    return cloneOrNull(this.sites.get(siteId));
  }
  async listSites() {
    return [...this.sites.values()].map(clone).sort((a, b) => a.id.localeCompare(b.id));
  }
  async deleteSite(siteId: string) {
    const agents = [...(this.agents.get(siteId)?.keys() ?? [])];
    this.agents.delete(siteId);
    for (const jid of agents) this.forgetAgentWithoutSites(jid);
    this.visitorNumbers.delete(siteId);
    this.online.delete(siteId);
    for (const jid of this.loads.get(siteId)?.keys() ?? []) this.forgetIdleFormerAgent(siteId, jid);
    return this.sites.delete(siteId);
  }
  async putAgent(siteId: string, agent: Agent) {
    mapOf(this.agents, siteId).set(agent.jid, clone(agent));
  }
  async removeAgent(siteId: string, jid: string) {
    const removed = this.agents.get(siteId)?.delete(jid) ?? false;
    this.forgetIdleFormerAgent(siteId, jid);
    this.forgetAgentWithoutSites(jid);
    return removed;
  }
  /** As in Redis (LEAVE_SITE): an agent of no site any more is forgotten. */
  private forgetAgentWithoutSites(jid: string) {
    if ([...this.agents.values()].some((agents) => agents.has(jid))) return;
    this.resources.delete(jid);
    this.probeRounds.delete(jid);
    this.unavailableSince.delete(jid);
    this.busyAgents.delete(jid);
  }
  /** As in Redis (redis-scripts.ts): an agent no longer of the site, with none of its chats, leaves its routing records. */
  private forgetIdleFormerAgent(siteId: string, jid: string) {
    const loads = this.loads.get(siteId);
    if (this.agents.get(siteId)?.has(jid) || (loads?.get(jid)?.chatIds.size ?? 0) > 0) return;
    loads?.delete(jid);
    if (loads?.size === 0) this.loads.delete(siteId);
  }
  async listAgents(siteId: string) {
    return [...(this.agents.get(siteId)?.values() ?? [])].map(clone).sort((a, b) => a.jid.localeCompare(b.jid));
  }
  async sitesOfAgent(jid: string) {
    return [...this.agents.entries()].filter(([, agents]) => agents.has(jid)).map(([siteId]) => siteId).sort();
  }

  // --- presence
  async setAgentResource(jid: string, resource: string, show: AgentShow | null, now: number) {
    return this.changeResources(jid, now, (resources) => {
      if (show === null) resources.delete(resource);
      else resources.set(resource, { show, round: this.probeRounds.get(jid) ?? 0 });
    });
  }
  async beginProbeRound(jid: string) {
    const round = (this.probeRounds.get(jid) ?? 0) + 1;
    this.probeRounds.set(jid, round);
    return round;
  }
  async dropResourcesUnheardSince(jid: string, round: number, now: number) {
    return this.changeResources(jid, now, (resources) => {
      for (const [resource, heard] of resources) if (heard.round < round) resources.delete(resource);
    });
  }
  private changeResources(jid: string, now: number, change: (resources: Map<string, HeardResource>) => void) {
    const resources = mapOf(this.resources, jid);
    const before = presenceOf(resources);
    change(resources);
    const after = presenceOf(resources);
    if (before === "available" && after !== "available") this.unavailableSince.set(jid, now);
    if (after === "available") this.unavailableSince.delete(jid);
    return { before, after };
  }
  async getAgentPresence(jid: string): Promise<AgentPresence> {
    return presenceOf(this.resources.get(jid) ?? new Map());
  }
  async agentUnavailableSince(jid: string) {
    return this.unavailableSince.get(jid) ?? null;
  }

  async setAgentBusy(jid: string, busy: boolean) {
    if (busy) this.busyAgents.add(jid);
    else this.busyAgents.delete(jid);
  }
  async isAgentBusy(jid: string) {
    return this.busyAgents.has(jid);
  }

  // --- visitors
  async createVisitor(visitor: Visitor, forgetAt?: number) {
    this.visitors.set(visitor.id, clone(visitor));
    if (forgetAt !== undefined) this.visitorForgetAt.set(visitor.id, forgetAt);
    if (++this.visitorsCreatedSinceSweep >= VISITOR_SWEEP_EVERY) {
      this.visitorsCreatedSinceSweep = 0;
      for (const visitorId of this.visitorForgetAt.keys()) this.visitor(visitorId);
    }
  }
  async keepVisitor(visitorId: string, forgetAt: number) {
    const visitor = this.visitor(visitorId);
    if (visitor && !visitor.chatCount) this.visitorForgetAt.set(visitorId, forgetAt);
  }
  /** The visitor, unless they never chatted and are past their time (then they go, as a Redis key expires). */
  private visitor(visitorId: string): Visitor | undefined {
    const forgetAt = this.visitorForgetAt.get(visitorId);
    if (forgetAt !== undefined && forgetAt <= Date.now()) {
      // Everything kept per visitor goes with them, as their Redis keys expire: a process
      // running for weeks otherwise kept an entry per visitor ever forgotten.
      this.visitors.delete(visitorId);
      this.visitorForgetAt.delete(visitorId);
      this.clientIds.delete(visitorId);
      this.messages.delete(visitorId);
      this.unrelayedMessages.delete(visitorId);
    }
    return this.visitors.get(visitorId);
  }
  async getVisitor(visitorId: string) {
    return cloneOrNull(this.visitor(visitorId));
  }
  async recordPage(visitorId: string, page: { url: string; title: string }) {
    const visitor = this.visitor(visitorId);
    if (!visitor) return;
    visitor.page = { ...page };
    visitor.pagesSeen = (visitor.pagesSeen ?? 0) + 1;
  }
  async updateVisitor(visitorId: string, patch: Partial<Pick<Visitor, "name" | "email" | "page" | "referrer" | "userAgent" | "blocked">>) {
    const visitor = this.visitor(visitorId);
    if (!visitor) return null;
    Object.assign(visitor, clone(patch));
    return clone(visitor);
  }
  async reserveVisitorNumbers(siteId: string, count: number) {
    const first = (this.visitorNumbers.get(siteId) ?? 0) + 1;
    this.visitorNumbers.set(siteId, first + count - 1);
    return first;
  }
  async markManyOnline(siteId: string, visitorIds: readonly string[], until: number, now: number) {
    // Expired marks go here, at the heartbeat, not at each mark (a scan of the whole site).
    await this.onlineVisitors(siteId, now);
    for (const id of visitorIds) mapOf(this.online, siteId).set(id, until);
  }
  async markOnline(siteId: string, visitorId: string, until: number) {
    mapOf(this.online, siteId).set(visitorId, until);
  }
  async onlineVisitors(siteId: string, now: number) {
    await this.forgetExpiredOnlineMarks(siteId, now);
    return [...(this.online.get(siteId)?.keys() ?? [])];
  }
  async forgetExpiredOnlineMarks(siteId: string, now: number) {
    const online = this.online.get(siteId);
    if (!online) return;
    for (const [id, until] of online) if (until <= now) online.delete(id);
    if (online.size === 0) this.online.delete(siteId);
  }
  async isOnline(siteId: string, visitorId: string, now: number) {
    return (this.online.get(siteId)?.get(visitorId) ?? 0) > now;
  }

  // --- chats and messages
  async appendVisitorMessage(input: AppendVisitorMessage): Promise<AppendResult> {
    const visitor = this.visitor(input.visitorId);
    if (!visitor) throw new UnknownVisitorError(input.visitorId);
    const seen = mapOf(this.clientIds, input.visitorId);
    const existingId = seen.get(input.clientId);
    if (existingId) {
      const message = this.messages.get(input.visitorId)!.find((m) => m.id === existingId)!;
      const unrelayed = this.unrelayedMessages.get(input.visitorId)?.has(message.id) ?? false;
      return { visitor: clone(visitor), message: clone(message), chat: clone(this.chats.get(message.chatId)!), chatCreated: false, duplicate: true, unrelayed };
    }
    if (visitor.blocked) throw new VisitorBlockedError(input.visitorId);
    let chatCreated = false;
    if (!visitor.chatId) {
      const chat: Chat = { id: input.newChatId, siteId: input.siteId, visitorId: input.visitorId, state: "new", startedAt: input.ts };
      this.chats.set(chat.id, chat);
      setOf(this.siteChats, input.siteId).add(chat.id);
      visitor.chatId = chat.id;
      visitor.chatCount = (visitor.chatCount ?? 0) + 1;
      this.visitorForgetAt.delete(visitor.id); // kept with their transcripts from now on
      chatCreated = true;
    }
    const message = this.push(input.visitorId, {
      chatId: visitor.chatId,
      from: "visitor",
      name: visitor.name || input.fallbackName,
      text: input.text,
      ts: input.ts,
      clientId: input.clientId,
    });
    seen.set(input.clientId, message.id);
    if (input.owner) mapOf(this.unrelayedMessages, input.visitorId).set(message.id, input.owner);
    this.publishMessage(input.visitorId, message, input.publisher);
    return { visitor: clone(visitor), message: clone(message), chat: clone(this.chats.get(visitor.chatId)!), chatCreated, duplicate: false };
  }
  async appendAgentMessage(input: AppendAgentMessage): Promise<AppendAgentOutcome> {
    const visitor = this.visitor(input.visitorId);
    if (!visitor || visitor.siteId !== input.siteId) return { kind: "unknown-visitor" };
    const chat = visitor.chatId ? this.chats.get(visitor.chatId) : undefined;
    if (!chat || chat.state !== "active" || chat.agentJid !== input.agentJid) return { kind: "not-assigned", visitor: clone(visitor), chat: cloneOrNull(chat) };
    const message = this.push(input.visitorId, { chatId: chat.id, from: "agent", name: chat.agentName || input.fallbackName, text: input.text, ts: input.ts });
    this.publishMessage(input.visitorId, message, input.publisher);
    return { kind: "appended", visitor: clone(visitor), chat: clone(chat), message: clone(message) };
  }
  async appendMessage(visitorId: string, message: Omit<StoredMessage, "id">) {
    return clone(this.push(visitorId, message));
  }
  async history(visitorId: string, limit: number) {
    return (this.messages.get(visitorId) ?? []).slice(-limit).map(clone);
  }
  async transcript(chatId: string) {
    const visitorId = visitorIdOfChat(chatId);
    if (!visitorId) return [];
    return (this.messages.get(visitorId) ?? []).filter((m) => m.chatId === chatId).map(clone);
  }
  async visitorWithChat(visitorId: string) {
    const visitor = this.visitor(visitorId);
    if (!visitor) return null;
    return { visitor: clone(visitor), chat: visitor.chatId ? cloneOrNull(this.chats.get(visitor.chatId)) : null };
  }
  async getChat(chatId: string) {
    return cloneOrNull(this.chats.get(chatId));
  }
  async updateChat(chatId: string, from: readonly ChatState[], patch: Partial<Omit<Chat, "id" | "siteId" | "visitorId">>, withAgent?: string) {
    const chat = this.chats.get(chatId);
    if (!chat || !from.includes(chat.state) || (withAgent !== undefined && chat.agentJid !== withAgent)) return null;
    const before = chat.state;
    Object.assign(chat, clone(patch));
    if (before !== "active" && chat.state === "active") chat.activatedAfter = this.messages.get(chat.visitorId)?.at(-1)?.id ?? BEFORE_ANY_MESSAGE;
    if (chat.state === "ended") {
      const visitor = this.visitor(chat.visitorId);
      if (visitor?.chatId === chatId) delete visitor.chatId;
    }
    return clone(chat);
  }
  async listChats(siteId: string, state: "active" | "queued" | "ended") {
    const ids = [...(this.siteChats.get(siteId) ?? [])];
    return ids
      .map((id) => this.chats.get(id)!)
      .filter((c) => chatMatchesListState(c, state))
      .map(clone)
      .sort((a, b) => a.startedAt - b.startedAt);
  }

  async purgeChat(chatId: string, forgetVisitorAt?: number) {
    const chat = this.chats.get(chatId);
    if (!chat || chat.state !== "ended") return;
    this.chats.delete(chatId);
    this.siteChats.get(chat.siteId)?.delete(chatId);
    const left = (this.messages.get(chat.visitorId) ?? []).filter((m) => m.chatId !== chatId);
    this.messages.set(chat.visitorId, left);
    const visitor = this.visitor(chat.visitorId);
    if (forgetVisitorAt === undefined || !visitor || visitor.chatId || left.length > 0) return;
    this.messages.delete(chat.visitorId);
    delete visitor.chatCount;
    this.visitorForgetAt.set(visitor.id, forgetVisitorAt);
  }
  async chatStateCounts() {
    const counts = { new: 0, queued: 0, active: 0, offline: 0, ended: 0 };
    for (const chat of this.chats.values()) counts[chat.state] += 1;
    return counts;
  }

  // --- routing
  async claimAgent(siteId: string, agentJid: string, chatId: string, cap: number, now: number) {
    const load = this.loadOf(siteId, agentJid);
    if (load.chatIds.has(chatId)) return true;
    if (load.chatIds.size >= cap) return false;
    load.chatIds.add(chatId);
    load.lastAssignedAt = now;
    return true;
  }
  async claimLeastLoaded(siteId: string, candidates: readonly string[], chatId: string, cap: number, now: number) {
    let best: { jid: string; load: number; last: number } | null = null;
    for (const jid of candidates) {
      const { chatIds, lastAssignedAt } = this.loadOf(siteId, jid);
      if (chatIds.has(chatId)) return jid;
      if (chatIds.size >= cap) continue;
      if (!best || chatIds.size < best.load || (chatIds.size === best.load && lastAssignedAt < best.last)) best = { jid, load: chatIds.size, last: lastAssignedAt };
    }
    if (!best) return null;
    const load = this.loadOf(siteId, best.jid);
    load.chatIds.add(chatId);
    load.lastAssignedAt = now;
    return best.jid;
  }
  async releaseAgent(siteId: string, agentJid: string, chatId: string) {
    this.loads.get(siteId)?.get(agentJid)?.chatIds.delete(chatId);
    this.forgetIdleFormerAgent(siteId, agentJid);
  }
  async agentLoads(siteId: string) {
    const result = new Map<string, { chatIds: string[]; lastAssignedAt: number }>();
    for (const [jid, load] of this.loads.get(siteId) ?? []) result.set(jid, { chatIds: [...load.chatIds], lastAssignedAt: load.lastAssignedAt });
    return result;
  }
  async enqueue(siteId: string, chatId: string, ts: number) {
    const queue = this.queues.get(siteId) ?? [];
    if (!queue.some((q) => q.chatId === chatId)) queue.push({ chatId, ts });
    queue.sort((a, b) => a.ts - b.ts);
    this.queues.set(siteId, queue);
  }
  async firstInQueue(siteId: string) {
    return this.queues.get(siteId)?.[0]?.chatId ?? null;
  }
  async queuePosition(siteId: string, chatId: string) {
    const index = this.queues.get(siteId)?.findIndex((q) => q.chatId === chatId) ?? -1;
    return index === -1 ? null : index + 1;
  }
  async removeFromQueue(siteId: string, chatId: string) {
    const queue = this.queues.get(siteId) ?? [];
    const index = queue.findIndex((q) => q.chatId === chatId);
    if (index !== -1) queue.splice(index, 1);
    return index !== -1;
  }
  async queueLength(siteId: string) {
    return this.queues.get(siteId)?.length ?? 0;
  }
  async queuedChats(siteId: string) {
    return (this.queues.get(siteId) ?? []).map((q) => q.chatId);
  }

  // --- timers and webhook events
  async setTimer(id: string, dueAt: number) {
    this.timers.set(id, dueAt);
  }
  async clearTimer(id: string) {
    this.timers.delete(id);
  }
  async takeDueTimers(now: number, leaseMs: number, limit: number) {
    const due = [...this.timers.entries()]
      .filter(([, at]) => at <= now)
      .sort((a, b) => a[1] - b[1])
      .slice(0, limit)
      .map(([id]) => id);
    for (const id of due) this.timers.set(id, now + leaseMs);
    return due;
  }
  async finishTimer(id: string, leasedUntil: number, retryAt?: number) {
    if (this.timers.get(id) !== leasedUntil) return;
    if (retryAt === undefined) this.timers.delete(id);
    else this.timers.set(id, retryAt);
  }
  async putWebhookEvent(event: WebhookEvent) {
    this.webhookEvents.set(event.id, clone(event));
  }
  async getWebhookEvent(id: string) {
    return cloneOrNull(this.webhookEvents.get(id));
  }
  async deleteWebhookEvent(id: string) {
    this.webhookEvents.delete(id);
  }

  // --- outbox (see OutboxStore); insertion order is message order here
  async unrelayed(visitorId: string) {
    return [...(this.unrelayedMessages.get(visitorId) ?? [])].map(([messageId, owner]) => ({ messageId, owner }));
  }
  async markManyRelayed(batch: ReadonlyMap<string, readonly string[]>) {
    for (const [visitorId, ids] of batch) await this.markRelayed(visitorId, [...ids]);
  }
  async markRelayed(visitorId: string, messageIds: string[]) {
    const unrelayed = this.unrelayedMessages.get(visitorId);
    if (!unrelayed) return;
    for (const id of messageIds) unrelayed.delete(id);
    if (unrelayed.size === 0) this.unrelayedMessages.delete(visitorId); // not an empty map per visitor who ever wrote
  }
  async addToOutbox(processId: string, visitorId: string) {
    const set = this.outboxes.get(processId) ?? new Set();
    this.outboxes.set(processId, set.add(visitorId));
  }
  async removeFromOutbox(processId: string, visitorId: string) {
    this.outboxes.get(processId)?.delete(visitorId);
  }
  async outboxVisitors(processId: string) {
    return [...(this.outboxes.get(processId) ?? [])];
  }
  async heartbeat(processId: string, now: number) {
    const known = this.processes.has(processId);
    this.processes.set(processId, now);
    return known;
  }
  async lastHeartbeats(processIds: readonly string[]) {
    return processIds.map((id) => this.processes.get(id) ?? null);
  }
  async claimStaleProcess(staleBefore: number, now: number) {
    for (const [id, beat] of this.processes) {
      if (beat > staleBefore) continue;
      this.processes.set(id, now);
      return id;
    }
    return null;
  }
  async forgetProcess(processId: string) {
    this.processes.delete(processId);
    this.outboxes.delete(processId);
  }

  // --- bus: frames are cloned so that subscribers never share an object with the publisher
  async holdVisitor(visitorId: string, processId: string) {
    const holders = setOf(this.holders, visitorId).add(processId);
    return [...holders].filter((p) => p !== processId);
  }
  async releaseVisitor(visitorId: string, processId: string) {
    const holders = this.holders.get(visitorId);
    holders?.delete(processId);
    if (holders?.size === 0) this.holders.delete(visitorId);
    return [...(holders ?? [])];
  }
  async publishToVisitor(visitorId: string, frame: ServerFrame, publisher?: string) {
    for (const processId of this.holders.get(visitorId) ?? []) {
      if (processId !== publisher) this.bus.emit(`p:${processId}`, clone({ kind: "visitor-frame", visitorId, frame }));
    }
  }
  async publishToSite(siteId: string, frame: ServerFrame) {
    this.bus.emit(`s:${siteId}`, clone(frame));
  }
  async subscribeSite(siteId: string, handler: BusHandler) {
    return this.subscribe(`s:${siteId}`, handler);
  }

  onBusRecovered(): void {
    // An in-process bus never goes down.
  }
  async publishToProcess(processId: string, message: ProcessMessage) {
    this.bus.emit(`p:${processId}`, clone(message));
  }
  async subscribeProcess(processId: string, handler: (message: ProcessMessage) => void) {
    return this.subscribe(`p:${processId}`, handler);
  }

  private subscribe<T>(channel: string, handler: (message: T) => void) {
    this.bus.on(channel, handler);
    return async () => {
      this.bus.off(channel, handler);
    };
  }

  private publishMessage(visitorId: string, message: StoredMessage, publisher: string | undefined): void {
    void this.publishToVisitor(visitorId, messageFrame(message), publisher);
  }

  private push(visitorId: string, message: Omit<StoredMessage, "id">): StoredMessage {
    // Same shape as a Redis stream id: milliseconds, then a sequence within that millisecond.
    const ms = Math.max(message.ts, this.lastMessageMs);
    this.messageSeq = ms === this.lastMessageMs ? this.messageSeq + 1 : 0;
    this.lastMessageMs = ms;
    const stored = { id: `${ms}-${this.messageSeq}`, ...message };
    const list = this.messages.get(visitorId) ?? [];
    list.push(stored);
    this.messages.set(visitorId, list);
    return stored;
  }

  private loadOf(siteId: string, agentJid: string) {
    const site = mapOf(this.loads, siteId);
    let load = site.get(agentJid);
    if (!load) site.set(agentJid, (load = { chatIds: new Set(), lastAssignedAt: 0 }));
    return load;
  }
}

function presenceOf(resources: Map<string, HeardResource>): AgentPresence {
  return aggregatePresence([...resources.values()].map((r) => r.show));
}

function clone<T>(value: T): T {
  return structuredClone(value);
}
function cloneOrNull<T>(value: T | undefined): T | null {
  return value === undefined ? null : clone(value);
}
function mapOf<K, V>(outer: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let inner = outer.get(key);
  if (!inner) outer.set(key, (inner = new Map()));
  return inner;
}
function setOf<V>(outer: Map<string, Set<V>>, key: string): Set<V> {
  let inner = outer.get(key);
  if (!inner) outer.set(key, (inner = new Set()));
  return inner;
}
