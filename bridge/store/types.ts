import type { AgentPresence, AgentShow } from "../../stanza-mappers/presence-to-agent-state.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";

// The store: every piece of state that more than one Parley process must see. Shaped by
// use cases, split into narrow interfaces; `memory-store.ts` and `redis-store.ts`
// implement all of them and pass the same contract tests (test/integration/store-contract).

export interface Site {
  id: string;
  name: string;
  origins: string[];
  maxChatsPerAgent: number;
  /** Seconds an assigned agent has to answer before the chat moves on (default 120). */
  answerTimeoutSeconds?: number;
  welcome?: string;
  offlineMessage?: string;
  webhookUrl?: string;
  webhookSecret?: string;
  createdAt: number;
  updatedAt: number;
}

export interface Agent {
  jid: string; // bare JID, lower case
  name?: string;
  addedAt: number;
}

export interface Visitor {
  id: string;
  siteId: string;
  jid: string;
  /** sha256 of the resume token's secret part, hex. The token itself is never stored. */
  tokenHash: string;
  number: number; // "Visitor 0042"
  name?: string;
  email?: string;
  page?: { url: string; title: string };
  referrer?: string;
  userAgent?: string;
  createdAt: number;
  chatId?: string; // the current (not ended) chat
  blocked?: boolean;
  pagesSeen?: number;
  chatCount?: number;
}

export type ChatState = "new" | "queued" | "active" | "offline" | "ended";

export interface Chat {
  id: string;
  siteId: string;
  visitorId: string;
  state: ChatState;
  agentJid?: string;
  agentName?: string;
  startedAt: number;
  assignedAt?: number;
  /**
   * When the chat last went back to the queue from an agent, or when that agent went away
   * before (see ChatService.reassign): its visitor messages before then reached that agent,
   * those after reached nobody yet. For a chat leaving offline mode (the visitor wrote again
   * once an agent was available), the time of that message: those before reached every agent.
   */
  requeuedAt?: number;
  /**
   * The id of the visitor's last stored message when the chat last became active (set by
   * the store in the same step). Visitor messages stored after it found the chat active and
   * were relayed by whoever stored them; the assignment relays only those up to it.
   */
  activatedAfter?: string;
  endedAt?: number;
}

export type Author = "visitor" | "agent" | "system" | "note";

export interface StoredMessage {
  id: string;
  chatId: string;
  from: Author;
  name: string;
  text: string;
  ts: number;
  clientId?: string;
}

export interface SiteStore {
  putSite(site: Site): Promise<void>;
  getSite(siteId: string): Promise<Site | null>;
  listSites(): Promise<Site[]>;
  deleteSite(siteId: string): Promise<boolean>;
  putAgent(siteId: string, agent: Agent): Promise<void>;
  removeAgent(siteId: string, jid: string): Promise<boolean>;
  listAgents(siteId: string): Promise<Agent[]>;
  /** Sites an agent belongs to (to update availability when their presence changes). */
  sitesOfAgent(jid: string): Promise<string[]>;
}

export interface PresenceStore {
  /**
   * Records one resource's presence (`null` = gone), stamped with the agent's current probe
   * round, and returns the agent's aggregate before and after.
   */
  setAgentResource(jid: string, resource: string, show: AgentShow | null, now: number): Promise<{ before: AgentPresence; after: AgentPresence }>;
  /**
   * Starts a probe round for the agent (a process is about to probe them) and returns its
   * number: presence heard of from now on is stamped with it.
   */
  beginProbeRound(jid: string): Promise<number>;
  /**
   * Forgets the agent's resources not heard of since probe round `round` began: those the
   * probe did not confirm (their unavailable was missed while no process was connected).
   */
  dropResourcesUnheardSince(jid: string, round: number, now: number): Promise<{ before: AgentPresence; after: AgentPresence }>;
  getAgentPresence(jid: string): Promise<AgentPresence>;
  /** When the agent was last seen going from available to not available (for the grace period). */
  agentUnavailableSince(jid: string): Promise<number | null>;
  /** `busy` (desk command !busy) keeps an agent out of routing whatever their IM presence says. */
  setAgentBusy(jid: string, busy: boolean): Promise<void>;
  isAgentBusy(jid: string): Promise<boolean>;
}

export interface VisitorStore {
  /**
   * Stores a new visitor. With `forgetAt` (ms), a visitor who never starts a chat is
   * forgotten then (as if never seen: their resume token stops working) unless
   * `keepVisitor` moves the time; one who starts a chat is kept with their transcripts.
   */
  createVisitor(visitor: Visitor, forgetAt?: number): Promise<void>;
  /** Moves the time a visitor who never chatted is forgotten (they came back); nothing for one who chatted. */
  keepVisitor(visitorId: string, forgetAt: number): Promise<void>;
  getVisitor(visitorId: string): Promise<Visitor | null>;
  updateVisitor(visitorId: string, patch: Partial<Pick<Visitor, "name" | "email" | "page" | "referrer" | "userAgent" | "blocked">>): Promise<Visitor | null>;
  /** Records a page view: the current page, and one more page seen. */
  recordPage(visitorId: string, page: { url: string; title: string }): Promise<void>;
  /** Reserves `count` consecutive visitor numbers of a site ("Visitor 0042") and returns the first. */
  reserveVisitorNumbers(siteId: string, count: number): Promise<number>;
  /**
   * Marks the visitor online until `until` (ms); refreshed while a socket is open. Marks
   * expired at `now` are dropped: the site's marks hold only visitors seen lately.
   */
  markOnline(siteId: string, visitorId: string, until: number, now: number): Promise<void>;
  /** The same for many visitors of one site at once (heartbeats). */
  markManyOnline(siteId: string, visitorIds: readonly string[], until: number, now: number): Promise<void>;
  /** Visitors whose online mark has not expired at `now`. */
  onlineVisitors(siteId: string, now: number): Promise<string[]>;
  /**
   * Drops the marks expired at `now`. Marks are kept per site, one per visitor ever seen:
   * without this (called whenever a visitor leaves) they would grow without bound.
   */
  forgetExpiredOnlineMarks(siteId: string, now: number): Promise<void>;
  isOnline(siteId: string, visitorId: string, now: number): Promise<boolean>;
}

export interface AppendVisitorMessage {
  visitorId: string;
  siteId: string;
  clientId: string;
  /** The author's name if the visitor has not given one ("Visitor 0042"). */
  fallbackName: string;
  text: string;
  ts: number;
  /** Used only if the visitor has no current chat: a chat begins with the first message. */
  newChatId: string;
  /**
   * The process that will relay the message to ejabberd: the message stays in the
   * visitor's outbox, owned by it, until `markRelayed` (see OutboxStore).
   */
  owner?: string;
  /**
   * The process that appends and shows the message on its own sockets of the visitor: the
   * store publishes it, in the same step, to every other process holding the visitor.
   */
  publisher?: string;
}

/** No such visitor (forgotten after the retention, or Redis lost them): nothing was stored. */
export class UnknownVisitorError extends Error {
  constructor(visitorId: string) {
    super(`visitor ${visitorId} is unknown`);
    this.name = "UnknownVisitorError";
  }
}

/** The visitor was blocked: nothing was stored. */
export class VisitorBlockedError extends Error {
  constructor(visitorId: string) {
    super(`visitor ${visitorId} is blocked`);
    this.name = "VisitorBlockedError";
  }
}

export interface AppendAgentMessage {
  visitorId: string;
  siteId: string;
  /** Bare JID of the sender: the message is stored only if they hold the visitor's active chat. */
  agentJid: string;
  /** The author's name if the chat has none recorded for its agent. */
  fallbackName: string;
  text: string;
  ts: number;
  /** As in AppendVisitorMessage. */
  publisher?: string;
}

export type AppendAgentOutcome =
  | { kind: "appended"; visitor: Visitor; chat: Chat; message: StoredMessage }
  | { kind: "unknown-visitor" }
  /** Not the agent of an active chat of this visitor: nothing stored; the caller decides. */
  | { kind: "not-assigned"; visitor: Visitor; chat: Chat | null };

export interface AppendResult {
  /** The visitor as stored, read in the same step. */
  visitor: Visitor;
  message: StoredMessage;
  chat: Chat;
  /** True when the visitor's first message opened this chat. */
  chatCreated: boolean;
  /** True when `clientId` was already stored: the original message is returned, nothing is added. */
  duplicate: boolean;
  /**
   * For a duplicate: the original is still in the outbox, never relayed to ejabberd. Its
   * first attempt may have stopped after storing it (the store's answer lost and the
   * command resent, or a step after the store failed), so nobody may be relaying it.
   */
  unrelayed?: boolean;
}

export interface ChatStore {
  /**
   * Atomically: dedupe by client id, open a chat if none, append the message, publish it to
   * the visitor's other processes. Throws VisitorBlockedError for a blocked visitor.
   */
  appendVisitorMessage(input: AppendVisitorMessage): Promise<AppendResult>;
  /** The hot path of agent replies: authorize, append and publish in one step. */
  appendAgentMessage(input: AppendAgentMessage): Promise<AppendAgentOutcome>;
  /** Appends an agent, system or note message to a chat of the visitor. */
  appendMessage(visitorId: string, message: Omit<StoredMessage, "id">): Promise<StoredMessage>;
  /** The visitor's messages, oldest first, at most `limit` of the newest. */
  history(visitorId: string, limit: number): Promise<StoredMessage[]>;
  transcript(chatId: string): Promise<StoredMessage[]>;
  getChat(chatId: string): Promise<Chat | null>;
  /** A visitor with their current chat, read together (one round trip on Redis). */
  visitorWithChat(visitorId: string): Promise<{ visitor: Visitor; chat: Chat | null } | null>;
  /**
   * Compare-and-set on the chat's state: applies `patch` only if the state is one of `from`
   * (and, with `withAgent`, the chat is with that agent: a move decided on a chat read
   * earlier must not apply to one that another process has moved since). A chat it makes
   * active gets `activatedAfter` in the same step.
   */
  updateChat(chatId: string, from: readonly ChatState[], patch: Partial<Omit<Chat, "id" | "siteId" | "visitorId">>, withAgent?: string): Promise<Chat | null>;
  listChats(siteId: string, state: "active" | "queued" | "ended"): Promise<Chat[]>;
  /**
   * Deletes an ended chat and its messages (transcript retention). With `forgetVisitorAt`,
   * a visitor left with no message and no current chat becomes one who never chatted:
   * forgotten at that time unless they come back (see `createVisitor`).
   */
  purgeChat(chatId: string, forgetVisitorAt?: number): Promise<void>;
  /** How many chats are in each state, over all sites (for metrics). */
  chatStateCounts(): Promise<Record<ChatState, number>>;
}

export interface RoutingStore {
  /** Atomically adds the chat to the agent's active set if they are below `cap` (or it is there already). */
  claimAgent(siteId: string, agentJid: string, chatId: string, cap: number, now: number): Promise<boolean>;
  /**
   * Atomically gives the chat to whichever of `candidates` (available agents) has the fewest
   * active chats below `cap`, ties to the one assigned least recently, then to the order
   * given; returns that agent (or the one already holding the chat), or null when all are full.
   * Deciding and claiming in one step keeps concurrent routes from all picking the same agent.
   */
  claimLeastLoaded(siteId: string, candidates: readonly string[], chatId: string, cap: number, now: number): Promise<string | null>;
  releaseAgent(siteId: string, agentJid: string, chatId: string): Promise<void>;
  /** Active chat ids and last assignment time of each agent of the site with any. */
  agentLoads(siteId: string): Promise<Map<string, { chatIds: string[]; lastAssignedAt: number }>>;
  enqueue(siteId: string, chatId: string, ts: number): Promise<void>;
  /** The oldest queued chat, left in the queue. */
  firstInQueue(siteId: string): Promise<string | null>;
  queuePosition(siteId: string, chatId: string): Promise<number | null>;
  /** Whether this call took the chat out of the queue: of callers at once, exactly one gets true. */
  removeFromQueue(siteId: string, chatId: string): Promise<boolean>;
  queueLength(siteId: string): Promise<number>;
  /** The queued chat ids of the site, oldest first (position = index + 1). */
  queuedChats(siteId: string): Promise<string[]>;
}

/**
 * Durable timers shared by every process (unanswered chats, agents' grace periods, idle
 * chats, webhook retries). Taking due timers leases them: a process that dies while
 * handling one leaves it to fire again when the lease runs out, so nothing is lost.
 */
export interface TimerStore {
  setTimer(id: string, dueAt: number): Promise<void>;
  clearTimer(id: string): Promise<void>;
  /** Atomically takes up to `limit` timers due at `now`, pushing each one to `now + leaseMs`. */
  takeDueTimers(now: number, leaseMs: number, limit: number): Promise<string[]>;
  /** Clears a timer taken at `leasedUntil` (or sets it to `retryAt`), unless it was set again meanwhile. */
  finishTimer(id: string, leasedUntil: number, retryAt?: number): Promise<void>;
}

/** Webhook events waiting for delivery: the exact body is kept so that retries are byte-identical. */
export interface WebhookEvent {
  id: string;
  siteId: string;
  body: string;
  attempts: number;
}

export interface WebhookStore {
  putWebhookEvent(event: WebhookEvent): Promise<void>;
  getWebhookEvent(id: string): Promise<WebhookEvent | null>;
  deleteWebhookEvent(id: string): Promise<void>;
}

/**
 * The durable outbox of visitor → agent stanzas (CONTRACT §6: a `kill -9` loses no
 * acknowledged message). A visitor message is stored with its owner, the process that
 * acknowledged it; once that process has written the stanza to ejabberd's socket it
 * marks it relayed. Processes beat a heartbeat; a survivor claims the outbox of a process
 * whose heartbeat went stale and relays what it left behind.
 */
export interface OutboxStore {
  /** Visitor messages not yet written to ejabberd, oldest first, with their owner process. */
  unrelayed(visitorId: string): Promise<{ messageId: string; owner: string }[]>;
  markRelayed(visitorId: string, messageIds: string[]): Promise<void>;
  /** The same for many visitors at once (one command on a single Redis). */
  markManyRelayed(batch: ReadonlyMap<string, readonly string[]>): Promise<void>;
  /** Records that `processId` may own unrelayed messages of the visitor (before appending them). */
  addToOutbox(processId: string, visitorId: string): Promise<void>;
  removeFromOutbox(processId: string, visitorId: string): Promise<void>;
  outboxVisitors(processId: string): Promise<string[]>;
  /**
   * Records the process's heartbeat. False when it was not registered: its first beat, or
   * another process took it for dead and forgot it (see Outbox).
   */
  heartbeat(processId: string, now: number): Promise<boolean>;
  /** Each process's last heartbeat (null: none, or forgotten after a takeover). */
  lastHeartbeats(processIds: readonly string[]): Promise<(number | null)[]>;
  /** Atomically takes one process whose heartbeat is older than `staleBefore`, leasing it (its heartbeat becomes `now`). */
  claimStaleProcess(staleBefore: number, now: number): Promise<string | null>;
  /** Forgets a process: its heartbeat and its outbox index. */
  forgetProcess(processId: string): Promise<void>;
}

export type BusHandler = (frame: ServerFrame) => void;

/**
 * A message for one Parley process. ejabberd balances IQ results across the component's
 * connections, so the answer to a request may arrive at another process: it is forwarded
 * to the requester (whose process id starts the IQ's id).
 */
export type ProcessMessage =
  /** `from`: the answer's sender, checked against whom the request went to (see XmppLink.settleIq). */
  | { kind: "iq-result"; id: string; type: "result" | "error"; condition?: string; from?: string }
  /** A frame for the visitor's sockets on that process. */
  | { kind: "visitor-frame"; visitorId: string; frame: ServerFrame }
  /**
   * A visitor resent, through another process, a message that process stored and has not
   * marked relayed: relay it unless still relaying it (see VisitorService.relayIfStopped).
   */
  | { kind: "relay-if-stopped"; visitorId: string; messageId: string };

/**
 * Delivery of frames to whichever processes hold a visitor's (or a site's visitors')
 * sockets. Each process listens on its own channel only; the store records which
 * processes hold each visitor, so a frame goes only where it is wanted and a process
 * never hears back what it published itself.
 */
export interface VisitorBus {
  /**
   * From now on, frames for the visitor reach `processId` (call before reading the visitor's
   * history). Returns the other processes holding the visitor: a process that died keeps
   * its entry until someone removes it (see `releaseVisitor` and VisitorGateway).
   */
  holdVisitor(visitorId: string, processId: string): Promise<string[]>;
  /** Stops routing the visitor's frames to `processId`; returns the processes still holding them. */
  releaseVisitor(visitorId: string, processId: string): Promise<string[]>;
  /** Publishes to every process holding the visitor except `publisher` (which delivers to its own sockets). */
  publishToVisitor(visitorId: string, frame: ServerFrame, publisher?: string): Promise<void>;
  publishToSite(siteId: string, frame: ServerFrame): Promise<void>;
  subscribeSite(siteId: string, handler: BusHandler): Promise<() => Promise<void>>;
  /**
   * Called when the bus is back after being down: frames published meanwhile were lost
   * (pub/sub keeps nothing), so holders of sockets catch up from the durable log. Called
   * once every subscription is active again, so nothing published after the catch-up's
   * read can be missed.
   */
  onBusRecovered(handler: () => void): void;
  publishToProcess(processId: string, message: ProcessMessage): Promise<void>;
  subscribeProcess(processId: string, handler: (message: ProcessMessage) => void): Promise<() => Promise<void>>;
}

export interface Store extends SiteStore, PresenceStore, VisitorStore, ChatStore, RoutingStore, TimerStore, WebhookStore, OutboxStore, VisitorBus {
  readonly kind: "memory" | "redis" | "redis-cluster";
  /** Resolves when the store answers; rejects otherwise. */
  ping(): Promise<void>;
  close(): Promise<void>;
}
