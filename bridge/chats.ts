import type { Element } from "@xmpp/xml";
import { contextMessageToStanza, noticeToStanza, pageStatus, presenceToStanza, visitorMessageToStanza } from "../stanza-mappers/visitor-to-stanza.js";
import type { ServerFrame } from "../stanza-mappers/visitor-protocol.js";
import { visitorIdOfChat } from "./store/ids.js";
import { messageFrame } from "./store/message-frame.js";
import { compareMessageIds } from "./store/message-ids.js";
import { NS } from "../stanza-mappers/namespaces.js";
import xml from "@xmpp/xml";
import type { KeyedQueue } from "./keyed-queue.js";
import type { Logger } from "./logger.js";
import type { Outbox } from "./outbox.js";
import { agentDisplayName, visitorDisplayName } from "./names.js";
import type { Rosters } from "./rosters.js";
import type { Scheduler } from "./scheduler.js";
import { chooseAgent, type AgentLoad } from "./routing.js";
import type { AppendResult, Chat, Site, Store, StoredMessage, Visitor } from "./store/types.js";

/**
 * The life of a chat (CONTRACT §5): routing a new chat to an agent, the queue, offline
 * mode, relaying visitor messages to the assigned agent, and ending. Every step that
 * touches one visitor runs in that visitor's lane of the keyed queue, so that within a
 * process nothing of one conversation overtakes anything else of it.
 */
export interface ChatEvents {
  chatEnded(chat: Chat): Promise<void>;
  /** A visitor message (`messageId`) reached an offline chat: one event per message. */
  offlineMessage(chat: Chat, messageId: string): Promise<void>;
}

/** This process's own visitor sockets (the visitor gateway). */
export interface LocalDelivery {
  readonly processId: string;
  deliver(visitorId: string, frame: ServerFrame): void;
}

export interface ChatDeps {
  store: Store;
  local: LocalDelivery;
  scheduler: Pick<Scheduler, "schedule" | "cancel">;
  events?: ChatEvents;
  /** How long an ended chat's transcript is kept; 0 = forever. */
  retentionMs?: number;
  domain: string;
  send(stanza: Element): void;
  /**
   * Relaying visitor messages: sends, and resolves `true` once the stanza is written to
   * ejabberd's socket, `false` when it was dropped from the link's full queue. The durable
   * outbox (outbox.ts) is told each step: handed over, written (it leaves the outbox once
   * ejabberd confirms it routed it), or dropped (sent again once ejabberd is back).
   */
  relaySend?(stanza: Element): Promise<boolean>;
  outbox?: Pick<Outbox, "relaying" | "written" | "dropped">;
  rosters: Rosters;
  lanes: KeyedQueue;
  now(): number;
  logger: Logger;
  onChange?(siteId: string): void;
}

export const DEFAULT_ANSWER_TIMEOUT_SECONDS = 120;
const DEFAULT_OFFLINE_MESSAGE = "No one is available right now. Leave your message and we will get back to you.";
const REPLAY_AS_DELAYED_AFTER_MS = 5000;
const CONTEXT_MESSAGES = 10;

/** How many answered assignments each process remembers (see `agentAnswered`). */
const ANSWERED_CHATS_REMEMBERED = 100_000;
/** How often the queue's drain chooses again when the agent it chose filled up meanwhile. */
const QUEUE_ASSIGN_ATTEMPTS = 3;
/** When another process finishes an end that its process did not (see `end`). */
const FINISH_END_AFTER_MS = 60_000;
/**
 * When another process puts in line a chat whose queueing stopped midway (see `queueing`):
 * the visitor waits without a place meanwhile, so sooner than an end.
 */
const FINISH_QUEUE_AFTER_MS = 10_000;
/** When another process routes a chat whose routing stopped midway (see `route`). */
const FINISH_ROUTE_AFTER_MS = 10_000;
/** When another process finishes an assignment that stopped midway (see `assign`). */
const FINISH_ASSIGN_AFTER_MS = 10_000;
/** When another process finishes a transfer that stopped midway (see `transfer`). */
const FINISH_TRANSFER_AFTER_MS = 10_000;

export class ChatService {
  private readonly log: Logger;
  private readonly answeredChats = new Set<string>();
  /** Numbers this process's guarded changes, so that each has its own timer. */
  private guardedChanges = 0;

  constructor(private readonly deps: ChatDeps) {
    this.log = deps.logger.child({ module: "chats" });
  }

  /** Called in the visitor's lane after their message was stored and acknowledged. */
  async onVisitorMessage(site: Site, visitor: Visitor, appended: AppendResult): Promise<void> {
    const { chat, message } = appended;
    switch (chat.state) {
      case "new":
        await this.route(site, visitor, chat);
        return;
      case "active":
        if (chat.agentJid) this.relay(visitor, chat.agentJid, message);
        return;
      case "offline": {
        if (chooseAgent(await this.agentLoads(site), site.maxChatsPerAgent).kind === "offline") {
          await this.leaveForEveryAgent(site, visitor, chat, message);
          return;
        }
        // An agent is back since the chat went to offline mode, and the visitor is still
        // writing: the chat is routed as a new one is. What they wrote before reached every
        // agent; this message reached nobody yet (see Chat.requeuedAt).
        const routable = await this.deps.store.updateChat(chat.id, ["offline"], { requeuedAt: message.ts });
        if (routable) {
          await this.route(site, visitor, routable);
          return;
        }
        // Moved on since it was stored (an agent's answer took it, on another process, and an
        // assignment from offline mode relays nothing): the message goes as the chat is now.
        const current = await this.deps.store.getChat(chat.id);
        if (current && current.state !== "offline") await this.onVisitorMessage(site, visitor, { ...appended, chat: current });
        return;
      }
      case "queued":
      case "ended":
        return; // queued messages are replayed on assignment
    }
  }

  /**
   * Decides where a new (or orphaned) chat goes; runs in the visitor's lane. The visitor's
   * message is acknowledged by now: a store error or a death before the chat leaves `new`
   * would leave it unrouted until the visitor writes again, so a `finish-route` timer
   * routes it from another process (`finishRoute`).
   */
  async route(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    await this.guarded("finish-route", chat.id, FINISH_ROUTE_AFTER_MS, () => this.decideAndRoute(site, visitor, chat));
  }

  /** The `finish-route` timer: the chat is routed unless something moved it on meanwhile. */
  async finishRoute(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    const leavingOfflineMode = chat.state === "offline" && chat.requeuedAt !== undefined;
    if (chat.state !== "new" && !leavingOfflineMode) return;
    this.log.info({ chatId: chat.id, siteId: site.id }, "routing a chat whose routing stopped midway");
    await this.route(site, visitor, chat);
  }

  private async decideAndRoute(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const loads = await this.agentLoads(site);
      const decision = chooseAgent(loads, site.maxChatsPerAgent);
      if (decision.kind === "assign" && (await this.deps.store.queueLength(site.id)) > 0) {
        // Others are waiting (a slot came free before the queue was drained): first come, first served.
        await this.enqueue(site, visitor, chat);
        return;
      }
      if (decision.kind === "assign") {
        // Loads read a moment ago are stale when many chats start at once (on this process or
        // others): the store picks the least loaded available agent and claims in one step.
        const candidates = loads.filter((a) => a.presence === "available").map((a) => a.jid).sort();
        const agentJid = await this.deps.store.claimLeastLoaded(site.id, candidates, chat.id, site.maxChatsPerAgent, this.deps.now());
        if (agentJid && (await this.assign(site, visitor, chat, agentJid, { ignoreCap: false }))) return;
        continue; // all full by now, or the chat moved on: decide again on fresh data
      }
      if (decision.kind === "queue") {
        await this.enqueue(site, visitor, chat);
        return;
      }
      if (chat.state === "offline") await this.stayOffline(site, visitor, chat);
      else await this.goOffline(site, visitor, chat);
      return;
    }
    await this.enqueue(site, visitor, chat);
  }

  /**
   * Gives the chat to the agent: claim a slot (atomic, at most `maxChatsPerAgent`), move the
   * chat to `active` (compare-and-set, so a chat is never assigned twice), put the visitor
   * in the agent's roster (and out again if another process ended or moved the chat
   * meanwhile), then replay what the visitor said so far.
   *
   * Once the chat is theirs, the roster item, the visitor's presence, the messages that
   * waited and `joined` follow: a death or a store error in between left
   * the agent with a chat they never heard of and its messages unrelayed, since nobody else
   * relays what came before the chat was active. The `finish-assign` timer, naming the
   * agent, lets another process finish those steps (`finishAssign`).
   */
  async assign(site: Site, visitor: Visitor, chat: Chat, agentJid: string, options: { ignoreCap: boolean }): Promise<boolean> {
    return this.guarded("finish-assign", chat.id, FINISH_ASSIGN_AFTER_MS, () => this.assignSteps(site, visitor, chat, agentJid, options), agentJid);
  }

  /**
   * The `finish-assign` timer: if the chat became the agent's, its assignment's steps are
   * done again, each safe to repeat; of the messages, only those stored before it became
   * active (the others are relayed by whichever process stored them) and still unrelayed,
   * to whichever agent has the chat now.
   */
  async finishAssign(site: Site, visitor: Visitor, chat: Chat, agentJid: string): Promise<void> {
    if (chat.state !== "active" || !chat.agentJid) return;
    this.log.warn({ chatId: chat.id, siteId: site.id, agent: agentJid }, "finishing an assignment that stopped midway");
    // Moved on meanwhile (a transfer, an answer timeout): its agent now gets what the
    // assignment left unrelayed; the rest was the move's to do.
    if (chat.agentJid === agentJid) {
      await this.deps.rosters.upsert(agentJid, rosterItemOf(site, visitor));
      if (!(await this.keepRosterItemOnlyIfTheirs(site, visitor, chat.id, agentJid))) return;
      await this.sendVisitorPresence(site, visitor, agentJid);
    }
    const unrelayed = new Set((await this.deps.store.unrelayed(visitor.id)).map((p) => p.messageId));
    for (const message of await this.deps.store.transcript(chat.id)) {
      if (message.from === "visitor" && unrelayed.has(message.id) && storedBefore(chat, message)) this.relay(visitor, chat.agentJid, message, { again: true });
    }
    if (chat.agentJid === agentJid) await this.publish(visitor.id, { type: "agent", state: "joined", name: chat.agentName ?? agentDisplayName(undefined, agentJid) });
  }

  /**
   * What an assignment of `chat` (as it was before, now `active`) relays: `owed` as the
   * visitor's messages, `seen` as context. Offline chats already reached every agent through
   * ejabberd; one leaving offline mode because its visitor wrote again owes what they wrote
   * from `requeuedAt` on. A chat back from the queue reached its previous agent up to `requeuedAt`: that
   * part is context (as on a transfer), the rest is owed. Others never reached anyone. What
   * is still unrelayed from before `requeuedAt` (written and unconfirmed, or waiting for
   * ejabberd) is owed too. Messages stored once the chat was active (the roster change can
   * take a second) were relayed by whichever process stored them: only those up to
   * `activatedAfter` are owed.
   */
  private async waitingMessages(visitor: Visitor, chat: Chat, active: Chat): Promise<{ seen: StoredMessage[]; owed: StoredMessage[] }> {
    if (chat.state === "offline" && chat.requeuedAt === undefined) return { seen: [], owed: [] }; // taken by an agent's answer
    const { store } = this.deps;
    const transcript = await store.transcript(chat.id);
    const seenUntil = chat.requeuedAt ?? -Infinity;
    // Unconfirmed, a message may have gone with an agent who left; what offline mode sent
    // every agent is in ejabberd's hands once written, and the outbox's until then.
    const unrelayed = chat.requeuedAt && chat.state !== "offline" ? new Set((await store.unrelayed(visitor.id)).map((p) => p.messageId)) : new Set<string>();
    const isOwed = (m: StoredMessage) => m.from === "visitor" && (m.ts >= seenUntil || unrelayed.has(m.id)) && storedBefore(active, m);
    return { seen: transcript.filter((m) => m.ts < seenUntil && !isOwed(m)), owed: transcript.filter(isOwed) };
  }

  /** The visitor's presence, as the agent sees them once the chat is theirs: online on a page, or gone. */
  private async sendVisitorPresence(site: Site, visitor: Visitor, agentJid: string): Promise<void> {
    const online = await this.deps.store.isOnline(site.id, visitor.id, this.deps.now());
    this.deps.send(presenceToStanza({ from: visitor.jid, to: agentJid, ...(online ? { status: pageStatus(visitor.page) } : { type: "unavailable" }) }));
  }

  private async assignSteps(site: Site, visitor: Visitor, chat: Chat, agentJid: string, { ignoreCap }: { ignoreCap: boolean }): Promise<boolean> {
    const { store } = this.deps;
    const now = this.deps.now();
    const cap = ignoreCap ? Number.MAX_SAFE_INTEGER : site.maxChatsPerAgent;
    if (!(await store.claimAgent(site.id, agentJid, chat.id, cap, now))) return false;
    const agents = await store.listAgents(site.id);
    const agentName = agentDisplayName(
      agents.find((a) => a.jid === agentJid),
      agentJid,
    );
    const active = await store.updateChat(chat.id, ["new", "queued", "offline"], { state: "active", agentJid, agentName, assignedAt: now });
    if (!active) {
      await this.releaseUnlessHeld(site, agentJid, chat.id);
      return false;
    }
    await store.removeFromQueue(site.id, chat.id);
    this.log.info({ chatId: chat.id, siteId: site.id, agent: agentJid }, "chat assigned");
    // Before anything reaches the agent: an answer that came first could not cancel it.
    await this.expectAnswer(site, chat.id, agentJid, now);

    await this.deps.rosters.upsert(agentJid, rosterItemOf(site, visitor));
    if (!(await this.keepRosterItemOnlyIfTheirs(site, visitor, chat.id, agentJid))) {
      // Ended or moved by another process meanwhile: it was assigned, what follows is not
      // ours to do, but for the messages that waited for it, which nobody else relays: a
      // transfer's new agent gets them (as finishAssign does), marked as sent again.
      const current = await store.getChat(chat.id);
      if (current?.state === "active" && current.agentJid && current.agentJid !== agentJid) {
        for (const message of (await this.waitingMessages(visitor, chat, active)).owed) this.relay(visitor, current.agentJid, message, { again: true });
      }
      return true;
    }
    await this.sendVisitorPresence(site, visitor, agentJid);
    const { seen, owed } = await this.waitingMessages(visitor, chat, active);
    if (seen.length > 0) this.sendContext(visitor, chat, agentJid, seen);
    // Back from the queue, each is stamped with when it was written (XEP-0203): it waited, or
    // it went to the previous agent too (after they went away, or unconfirmed), and ejabberd
    // may still deliver that copy, to the same agent if it is the same one.
    for (const message of owed) this.relay(visitor, agentJid, message, { again: chat.requeuedAt !== undefined && chat.state !== "offline" });
    await this.publish(visitor.id, { type: "agent", state: "joined", name: agentName });
    this.deps.onChange?.(site.id);
    return true;
  }

  /**
   * An agent of the site wrote to a visitor whose chat waits (queued, offline mode, or not
   * routed yet): they take it, past their cap and also while `!busy`, away or dnd. Those
   * keep routing from giving them chats; a message they chose to write is their choice, as
   * `!transfer` to an agent at the cap is (README, "For agents"). Those behind in the queue
   * move up a place.
   */
  async takeOver(site: Site, visitor: Visitor, chat: Chat, agentJid: string): Promise<boolean> {
    const taken = await this.assign(site, visitor, chat, agentJid, { ignoreCap: true });
    if (taken && chat.state === "queued") await this.announceQueuePositions(site);
    return taken;
  }

  /** The agent has `answerTimeoutSeconds` to say something before the chat moves on. */
  private async expectAnswer(site: Site, chatId: string, agentJid: string, now: number): Promise<void> {
    const seconds = site.answerTimeoutSeconds ?? DEFAULT_ANSWER_TIMEOUT_SECONDS;
    await this.deps.scheduler.schedule("unanswered", `${chatId}|${agentJid}`, now + seconds * 1000);
  }

  async renameInRoster(site: Site, visitor: Visitor, agentJid: string): Promise<void> {
    await this.deps.rosters.upsert(agentJid, { jid: visitor.jid, name: visitorDisplayName(visitor), group: site.name });
  }

  /**
   * Called for every agent message: the agent answered, so the chat stays with them. Only
   * the first answer of each assignment needs the store, so those already cancelled here
   * are remembered (a transfer or reassignment changes `assignedAt`).
   */
  async agentAnswered(chat: Chat): Promise<void> {
    if (!chat.agentJid) return;
    const key = answeredKey(chat, chat.agentJid);
    if (this.answeredChats.has(key)) return;
    await this.deps.scheduler.cancel("unanswered", `${chat.id}|${chat.agentJid}`);
    this.answeredChats.add(key);
    if (this.answeredChats.size > ANSWERED_CHATS_REMEMBERED) this.answeredChats.delete(this.answeredChats.values().next().value!);
  }

  /**
   * The chat's assignment to `agentJid` is over (moved, transferred, ended): its answer timer
   * goes, and so does what `agentAnswered` remembered of it. Otherwise every chat answered
   * here stayed in memory until a hundred thousand more had been answered.
   */
  private async assignmentOver(chat: Chat, agentJid: string): Promise<void> {
    this.answeredChats.delete(answeredKey(chat, agentJid));
    await this.deps.scheduler.cancel("unanswered", `${chat.id}|${agentJid}`);
  }

  /**
   * Takes the chat from its agent (unanswered, or gone past the grace period) and routes it
   * to another available agent with the context replayed, or queues it. The first agent
   * is told why; the visitor sees the agent leave (and the next one join). With
   * `keepIfNobodyElse` (an agent who is there but has not answered), a chat no other agent
   * can take stays with its agent, who is reminded, and the answer timer starts again:
   * queued, it would wait in a queue that only an event drains, and back to the same agent.
   */
  async reassign(site: Site, visitor: Visitor, chat: Chat, why: string, { awaySince, keepIfNobodyElse = false }: { awaySince?: number; keepIfNobodyElse?: boolean } = {}): Promise<void> {
    const { store } = this.deps;
    const fromAgentJid = chat.agentJid;
    if (chat.state !== "active" || !fromAgentJid) return;
    // The agent had the visitor's messages until they went away, if they did (while the chat was theirs).
    const seenUntil = awaySince === undefined ? undefined : Math.min(this.deps.now(), Math.max(awaySince, chat.assignedAt ?? 0));
    await this.assignmentOver(chat, fromAgentJid);
    const others = (await this.agentLoads(site)).filter((a) => a.jid !== fromAgentJid);
    const notice = (to: string) =>
      this.deps.send(noticeToStanza({ from: visitor.jid, to: fromAgentJid, id: `${chat.id}-moved-${this.deps.now()}`, text: `[parley] ${why} The chat with ${visitorDisplayName(visitor)} ${to}.` }));
    // As for a new chat, the store picks and claims under the cap in one step: moves decided
    // together (timers due in the same tick, other processes) cannot all pick the same agent.
    const candidates = others.filter((a) => a.presence === "available").map((a) => a.jid).sort();
    const toAgentJid = candidates.length > 0 ? await store.claimLeastLoaded(site.id, candidates, chat.id, site.maxChatsPerAgent, this.deps.now()) : null;
    if (!toAgentJid && keepIfNobodyElse) {
      await this.expectAnswer(site, chat.id, fromAgentJid, this.deps.now());
      this.deps.send(noticeToStanza({ from: visitor.jid, to: fromAgentJid, id: `${chat.id}-waiting-${this.deps.now()}`, text: `[parley] ${why} ${visitorDisplayName(visitor)} is still waiting for your answer: no other agent is available to take the chat.` }));
      return;
    }
    if (toAgentJid && (await this.transfer(site, visitor, chat, toAgentJid, { claimed: true, seenUntil }))) {
      const moved = await store.getChat(chat.id);
      notice(`moved to ${moved?.agentName ?? toAgentJid}`);
      return;
    }
    await this.queueing(chat.id, fromAgentJid, async () => {
      const queued = await store.updateChat(chat.id, ["active"], { state: "queued", agentJid: undefined, agentName: undefined, requeuedAt: seenUntil ?? this.deps.now() }, fromAgentJid);
      if (!queued) return;
      await store.releaseAgent(site.id, fromAgentJid, chat.id);
      await this.deps.rosters.remove(fromAgentJid, { jid: visitor.jid, name: visitorDisplayName(visitor), group: site.name });
      notice("is waiting for the next available agent");
      await this.publish(visitor.id, { type: "agent", state: "left", name: chat.agentName ?? agentDisplayName(undefined, fromAgentJid) });
      await store.enqueue(site.id, chat.id, chat.startedAt);
      // Back in line by its start time, maybe ahead of others: everyone's position may change.
      await this.announceQueuePositions(site);
      this.log.info({ chatId: chat.id, from: fromAgentJid }, "chat queued again");
      this.deps.onChange?.(site.id);
    });
  }

  /**
   * Moves an active chat to another agent: the visitor leaves the old agent's roster and
   * joins the new one's, who gets the recent context; the visitor gets left/joined.
   */
  async transfer(site: Site, visitor: Visitor, chat: Chat, toAgentJid: string, options: { claimed?: boolean; seenUntil?: number } = {}): Promise<boolean> {
    const fromAgentJid = chat.agentJid;
    if (chat.state !== "active" || !fromAgentJid) return false;
    // Bare JIDs hold no "/": it separates the two agents in the timer's key.
    return this.guarded("finish-transfer", chat.id, FINISH_TRANSFER_AFTER_MS, () => this.transferSteps(site, visitor, chat, fromAgentJid, toAgentJid, options), `${fromAgentJid}/${toAgentJid}`);
  }

  /**
   * The `finish-transfer` timer: a transfer stopped midway (a death or a store error) left
   * a slot or a roster item with the agent the chat is no longer with — the one it left, or
   * the one it was going to. Both agents keep what is theirs, and lose what is not.
   */
  async finishTransfer(site: Site, visitor: Visitor, chat: Chat, agentJids: readonly string[]): Promise<void> {
    this.log.warn({ chatId: chat.id, siteId: site.id, agents: agentJids }, "finishing a transfer that stopped midway");
    for (const agentJid of agentJids) {
      await this.releaseUnlessHeld(site, agentJid, chat.id);
      if (chat.agentJid === agentJid) await this.deps.rosters.upsert(agentJid, rosterItemOf(site, visitor));
      await this.keepRosterItemOnlyIfTheirs(site, visitor, chat.id, agentJid);
    }
  }

  private async transferSteps(site: Site, visitor: Visitor, chat: Chat, fromAgentJid: string, toAgentJid: string, { claimed = false, seenUntil }: { claimed?: boolean; seenUntil?: number }): Promise<boolean> {
    const { store } = this.deps;
    const now = this.deps.now();
    // An agent's explicit `!transfer` may go past the new agent's cap: a person chose them.
    if (!claimed) await store.claimAgent(site.id, toAgentJid, chat.id, Number.MAX_SAFE_INTEGER, now);
    const agents = await store.listAgents(site.id);
    const agentName = agentDisplayName(
      agents.find((a) => a.jid === toAgentJid),
      toAgentJid,
    );
    // Only from the agent it was read with: another process may have moved it since.
    const moved = await store.updateChat(chat.id, ["active"], { agentJid: toAgentJid, agentName, assignedAt: now }, fromAgentJid);
    if (!moved) {
      await this.releaseUnlessHeld(site, toAgentJid, chat.id);
      return false;
    }
    await store.releaseAgent(site.id, fromAgentJid, chat.id);
    this.drainSoon(site); // the old agent has room again
    await this.assignmentOver(chat, fromAgentJid);
    await this.expectAnswer(site, chat.id, toAgentJid, now);
    const item = rosterItemOf(site, visitor);
    await this.deps.rosters.remove(fromAgentJid, item);
    await this.deps.rosters.upsert(toAgentJid, item);
    if (!(await this.keepRosterItemOnlyIfTheirs(site, visitor, chat.id, toAgentJid))) return true;
    await this.sendVisitorPresence(site, visitor, toAgentJid);
    await this.replayContext(visitor, chat, toAgentJid, seenUntil);
    await this.publish(visitor.id, { type: "agent", state: "left", name: chat.agentName ?? agentDisplayName(undefined, fromAgentJid) });
    await this.publish(visitor.id, { type: "agent", state: "joined", name: agentName });
    this.log.info({ chatId: chat.id, from: fromAgentJid, to: toAgentJid }, "chat transferred");
    this.deps.onChange?.(site.id);
    return true;
  }

  /**
   * The last messages of the chat, labelled by author, for an agent taking over. When the
   * previous agent had the visitor's messages only until `seenUntil` (they went away), the
   * later ones come as the visitor's messages, marked as sent again (ejabberd may hold them
   * for the agent who left).
   */
  private async replayContext(visitor: Visitor, chat: Chat, agentJid: string, seenUntil = Infinity): Promise<void> {
    const transcript = await this.deps.store.transcript(chat.id);
    const unseen = (m: StoredMessage) => m.from === "visitor" && m.ts >= seenUntil;
    this.sendContext(visitor, chat, agentJid, transcript.filter((m) => !unseen(m)));
    for (const message of transcript) if (unseen(message)) this.relay(visitor, agentJid, message, { again: true });
  }

  /** The last CONTEXT_MESSAGES of `messages` (system notices aside), as `[parley]` lines. */
  private sendContext(visitor: Visitor, chat: Chat, agentJid: string, messages: readonly StoredMessage[]): void {
    const recent = messages.filter((m) => m.from !== "system").slice(-CONTEXT_MESSAGES);
    if (recent.length === 0) return;
    this.deps.send(noticeToStanza({ from: visitor.jid, to: agentJid, id: `${chat.id}-ctx-${this.deps.now()}`, text: `[parley] Recent messages in this chat (${recent.length}):` }));
    for (const m of recent) {
      const author = m.from === "visitor" ? { role: "visitor" as const, name: visitorDisplayName(visitor) } : { role: m.from === "note" ? ("note" as const) : ("agent" as const), name: m.name };
      this.deps.send(contextMessageToStanza({ from: visitor.jid, to: agentJid, messageId: m.id, text: m.text, ts: m.ts, author }));
    }
  }

  /**
   * Moves every chat of the agent on this site to another agent, or queues it, with the
   * agent told why (their connection is gone, or they were removed from the site).
   */
  async moveChatsOf(site: Site, agentJid: string, why: string, options: { awaySince?: number } = {}): Promise<void> {
    const { store } = this.deps;
    for (const chatId of (await store.agentLoads(site.id)).get(agentJid)?.chatIds ?? []) {
      const chat = await store.getChat(chatId);
      const visitor = chat && (await store.getVisitor(chat.visitorId));
      if (!chat || !visitor) continue;
      await this.deps.lanes.run(visitor.id, async () => {
        const current = await store.getChat(chatId);
        if (current?.state === "active" && current.agentJid === agentJid) await this.reassign(site, visitor, current, why, options);
      });
    }
  }

  /**
   * Ends every open chat of a site that has just been deleted, as `!end` would: visitors
   * told, agents' roster items removed. The site is already gone from the store, so no chat
   * starts meanwhile and none is assigned from the queue. Returns how many ended.
   */
  async endOpenChats(site: Site): Promise<number> {
    const { store } = this.deps;
    let ended = 0;
    for (;;) {
      // Lists hold at most 1,000 chats each: go on until a pass ends none.
      const open = [...(await store.listChats(site.id, "queued")), ...(await store.listChats(site.id, "active"))];
      let endedInPass = 0;
      for (const chat of open) {
        const visitor = await store.getVisitor(chat.visitorId);
        if (!visitor) continue;
        const done = await this.deps.lanes.run(visitor.id, async () => {
          const current = await store.getChat(chat.id);
          return current !== null && (await this.end(site, visitor, current));
        });
        if (done) endedInPass++;
      }
      if (endedInPass === 0) return ended;
      ended += endedInPass;
    }
  }

  /**
   * Ends the chat: visitor told, slot freed, roster item removed, webhook queued, queue moves
   * on. The `finish-end` timer is written first: if this process dies after the chat is
   * ended and before the rest is done, another process finishes it (`finishEnd`).
   */
  async end(site: Site, visitor: Visitor, chat: Chat): Promise<boolean> {
    return this.guarded("finish-end", chat.id, FINISH_END_AFTER_MS, async () => {
      const ended = await this.deps.store.updateChat(chat.id, ["new", "queued", "active", "offline"], { state: "ended", endedAt: this.deps.now() });
      if (ended) await this.afterEnd(site, visitor, ended, true);
      if (ended && chat.state === "queued") await this.announceQueuePositions(site); // those behind move up
      return ended !== null;
    });
  }

  /**
   * The `finish-end` timer: the end of this chat may have stopped midway. Every step is
   * safe to run again; those about the visitor only while they have not started another
   * chat since (its roster item, its idle timer and its view are theirs now).
   */
  async finishEnd(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    if (chat.state !== "ended") return;
    await this.afterEnd(site, visitor, chat, !visitor.chatId || visitor.chatId === chat.id);
  }

  /**
   * The `finish-queue` timer: the chat was marked queued, but its process may have stopped
   * before putting it in the site's queue (see `queueing`). Every step is safe to repeat:
   * the agent it left (if any) gets their slot back and loses the roster item unless the
   * chat is theirs again; a chat still queued is put in line (once, by its start time).
   */
  async finishQueue(site: Site, visitor: Visitor, chat: Chat, fromAgentJid?: string): Promise<void> {
    const { store } = this.deps;
    if (fromAgentJid) {
      await this.releaseUnlessHeld(site, fromAgentJid, chat.id);
      await this.keepRosterItemOnlyIfTheirs(site, visitor, chat.id, fromAgentJid);
    }
    if (chat.state !== "queued" || (await store.queuePosition(site.id, chat.id)) !== null) return;
    await store.enqueue(site.id, chat.id, chat.startedAt);
    // Assigning and ending take a chat out of the queue after changing its state: if one of
    // them came after the read above, either it removed what we added or we see it here.
    if ((await store.getChat(chat.id))?.state !== "queued") {
      await store.removeFromQueue(site.id, chat.id);
      return;
    }
    // In line by its start time, maybe ahead of chats queued meanwhile: every position may change.
    await this.announceQueuePositions(site);
    this.log.info({ chatId: chat.id, siteId: site.id }, "chat put in line after its queueing stopped midway");
    this.deps.onChange?.(site.id);
    this.drainSoon(site); // an agent may have had room all along
  }

  private async afterEnd(site: Site, visitor: Visitor, ended: Chat, stillTheirs: boolean): Promise<void> {
    const { store, scheduler } = this.deps;
    await store.removeFromQueue(site.id, ended.id);
    await this.dropFromOutbox(visitor.id, ended);
    if (stillTheirs) await scheduler.cancel("chat-idle", visitor.id);
    if (ended.agentJid) {
      await this.assignmentOver(ended, ended.agentJid);
      await store.releaseAgent(site.id, ended.agentJid, ended.id);
      if (stillTheirs) await this.deps.rosters.remove(ended.agentJid, { jid: visitor.jid, name: visitorDisplayName(visitor), group: site.name });
    }
    if (stillTheirs) await this.publish(visitor.id, { type: "ended" });
    this.log.info({ chatId: ended.id, siteId: site.id }, "chat ended");
    await this.deps.events?.chatEnded(ended);
    if (this.deps.retentionMs) await scheduler.schedule("purge", ended.id, (ended.endedAt ?? this.deps.now()) + this.deps.retentionMs);
    this.deps.onChange?.(site.id);
    await this.drainQueue(site);
  }

  /**
   * Nothing of an ended chat is relayed any more. What never was (the messages of a queued
   * chat given up, or of an offline chat on a site without agents) stayed in the visitor's
   * outbox for good, and kept them in their process's outbox index (see outbox.ts).
   */
  private async dropFromOutbox(visitorId: string, ended: Chat): Promise<void> {
    const { store } = this.deps;
    const unrelayed = await store.unrelayed(visitorId);
    if (unrelayed.length === 0) return;
    const ofChat = new Set((await store.transcript(ended.id)).map((m) => m.id));
    await store.markRelayed(
      visitorId,
      unrelayed.map((p) => p.messageId).filter((id) => ofChat.has(id)),
    );
  }

  /** Assigns queued chats, oldest first, while some available agent has room. */
  async drainQueue(site: Site): Promise<void> {
    if (await this.assignFromQueue(site)) await this.announceQueuePositions(site);
  }

  /** Returns whether any queued chat was assigned. */
  private async assignFromQueue(site: Site): Promise<boolean> {
    const { store } = this.deps;
    let assignedAny = false;
    let failures = 0;
    for (;;) {
      const chatId = await store.firstInQueue(site.id);
      if (!chatId) return assignedAny;
      const decision = chooseAgent(await this.agentLoads(site), site.maxChatsPerAgent);
      if (decision.kind !== "assign") return assignedAny;
      // Guarded before it leaves the queue, as in `queueing`: out of the queue and still queued
      // until assigned or put back. Of processes draining at once, the one whose removal takes
      // the chat out assigns it; the others go on with the next.
      const assigned = await this.queueing(chatId, undefined, async () =>
        (await store.removeFromQueue(site.id, chatId)) ? this.assignDequeued(site, chatId, decision.agentJid) : "taken",
      );
      if (assigned === "assigned") assignedAny = true;
      // The agent chosen on loads read a moment ago filled up: choose again, a few times.
      if (assigned === "put-back" && ++failures >= QUEUE_ASSIGN_ATTEMPTS) return assignedAny;
    }
  }

  /** A chat just taken from the queue goes to the agent, or back in line if it cannot. */
  private async assignDequeued(site: Site, chatId: string, agentJid: string): Promise<"assigned" | "put-back" | "gone"> {
    const { store } = this.deps;
    const chat = await store.getChat(chatId);
    const visitor = chat && (await store.getVisitor(chat.visitorId));
    if (!chat || !visitor || chat.state !== "queued") return "gone";
    const assigned = await this.deps.lanes.run(visitor.id, async () => {
      const current = await store.getChat(chatId);
      return current?.state === "queued" && this.assign(site, visitor, current, agentJid, { ignoreCap: false });
    });
    if (assigned) return "assigned";
    const current = await store.getChat(chatId);
    if (current?.state === "queued") await store.enqueue(site.id, chatId, current.startedAt);
    return "put-back";
  }

  /** Tells every queued visitor of the site their position: one read of the queue, whatever the site's history. */
  async announceQueuePositions(site: Site): Promise<void> {
    const queued = await this.deps.store.queuedChats(site.id);
    await Promise.all(
      queued.map((chatId, i) => {
        const visitorId = visitorIdOfChat(chatId);
        return visitorId ? this.publish(visitorId, { type: "queue", position: i + 1 }) : undefined;
      }),
    );
  }

  async agentLoads(site: Site): Promise<AgentLoad[]> {
    const { store } = this.deps;
    const [agents, loads] = await Promise.all([store.listAgents(site.id), store.agentLoads(site.id)]);
    return Promise.all(
      agents.map(async (agent) => ({
        jid: agent.jid,
        presence: await this.routingPresence(agent.jid),
        activeChats: loads.get(agent.jid)?.chatIds.length ?? 0,
        lastAssignedAt: loads.get(agent.jid)?.lastAssignedAt ?? 0,
      })),
    );
  }

  /** The agent's presence as routing sees it: one who said !busy to the desk keeps their chats but gets no new ones ("dnd"). */
  async routingPresence(agentJid: string): Promise<AgentLoad["presence"]> {
    const { store } = this.deps;
    return (await store.isAgentBusy(agentJid)) ? "dnd" : store.getAgentPresence(agentJid);
  }

  /** Sends a stored visitor message to the agent, as a chat message from the visitor's JID. */
  relay(visitor: Visitor, agentJid: string, message: StoredMessage, { again = false } = {}): void {
    const stanza = visitorMessageToStanza({ from: visitor.jid, to: agentJid, messageId: message.id, text: message.text });
    if (again || this.deps.now() - message.ts > REPLAY_AS_DELAYED_AFTER_MS) {
      // XEP-0203: the agent's client shows when the visitor really wrote it; sent again, it
      // marks a copy of what the first attempt may have delivered (same id and origin-id).
      stanza.append(xml("delay", { xmlns: NS.delay, from: this.deps.domain, stamp: new Date(message.ts).toISOString() }));
    }
    const { relaySend, outbox } = this.deps;
    if (!relaySend || !outbox) return this.deps.send(stanza);
    outbox.relaying(visitor.id, message.id);
    void relaySend(stanza).then((written) => (written ? outbox.written(visitor.id, message.id, agentJid) : outbox.dropped(visitor.id, message.id)));
  }

  /**
   * Relays visitor messages that were stored (and acknowledged) but may never have been
   * written to ejabberd: left by a dead process (see outbox.ts), or by a first attempt that
   * stopped after storing (see AppendResult.unrelayed). Called in the visitor's lane, ids
   * oldest first.
   */
  async redeliver(visitorId: string, messageIds: string[]): Promise<void> {
    const { store } = this.deps;
    const visitor = await store.getVisitor(visitorId);
    const [site, chat] = visitor ? await Promise.all([store.getSite(visitor.siteId), visitor.chatId ? store.getChat(visitor.chatId) : null]) : [null, null];
    const wanted = new Set(messageIds);
    const pending = chat ? (await store.transcript(chat.id)).filter((m) => m.from === "visitor" && wanted.has(m.id)) : [];
    // Messages of a chat that is over (or of a visitor or site deleted since) have nowhere to go.
    const nowhere = messageIds.filter((id) => !pending.some((m) => m.id === id));
    await store.markRelayed(visitorId, nowhere);
    if (!visitor || !site || !chat || pending.length === 0) return;
    this.log.info({ chatId: chat.id, state: chat.state, count: pending.length }, "relaying visitor messages left unrelayed");
    switch (chat.state) {
      case "new":
        await this.route(site, visitor, chat); // assigning replays the whole transcript
        return;
      case "active":
        for (const message of pending) this.relay(visitor, chat.agentJid!, message, { again: true });
        return;
      case "offline":
        // The first attempt may have stopped before its webhook: the event's id comes from the
        // message, so one that was already sent is the same event to the receiver.
        for (const message of pending) {
          await this.sendToEveryAgent(site, visitor, message);
          await this.deps.events?.offlineMessage(chat, message.id);
        }
        return;
      case "queued":
        return; // replayed on assignment
      case "ended":
        await store.markRelayed(visitorId, [...wanted]);
        return;
    }
  }

  /** To the visitor's sockets here and, through the store's bus, on other processes. */
  async publish(visitorId: string, frame: ServerFrame): Promise<void> {
    const { local } = this.deps;
    local.deliver(visitorId, frame);
    await this.deps.store.publishToVisitor(visitorId, frame, local.processId);
  }

  async publishMessage(visitorId: string, message: StoredMessage): Promise<void> {
    if (message.from === "note") return;
    await this.publish(visitorId, messageFrame(message));
  }

  /** For a message the store has already published to the other processes as it stored it. */
  deliverStored(visitorId: string, message: StoredMessage): void {
    this.deps.local.deliver(visitorId, messageFrame(message));
  }

  get processId(): string {
    return this.deps.local.processId;
  }

  private async enqueue(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    const { store } = this.deps;
    await this.queueing(chat.id, undefined, async () => {
      const queued = await store.updateChat(chat.id, ["new", "offline"], { state: "queued" });
      if (!queued && chat.state !== "queued") return;
      await store.enqueue(site.id, chat.id, chat.startedAt);
      const position = (await store.queuePosition(site.id, chat.id)) ?? 1;
      await this.publish(visitor.id, { type: "queue", position });
      this.log.info({ chatId: chat.id, siteId: site.id, position }, "chat queued");
      this.deps.onChange?.(site.id);
      // A slot freed elsewhere between the decision and now found the queue empty.
      this.drainSoon(site);
    });
  }

  /**
   * Marking a chat queued and putting it in the site's queue are two writes (two keys, in
   * different Redis Cluster slots, no transaction), with more between them when the chat
   * leaves an agent. A store error or a death between them would leave the chat `queued`
   * in no queue, which nobody ever assigns: the `finish-queue` timer, naming the agent the
   * chat leaves, lets another process finish the steps (`finishQueue`). The queue's drain
   * takes a chat out before assigning it, and guards that the same way: the timer names the
   * chat at the head of the queue before it is taken out.
   */
  private async queueing<T>(chatId: string, fromAgentJid: string | undefined, steps: () => Promise<T>): Promise<T> {
    return this.guarded("finish-queue", chatId, FINISH_QUEUE_AFTER_MS, steps, fromAgentJid);
  }

  /**
   * Runs a change of several steps under a durable timer, written first and removed once
   * every step is done: if a store error or the process's death stops the change midway,
   * the timer fires on some process, which finishes it (each step is safe to repeat). Its
   * key is `{chatId}|{attempt}`, then `|{detail}` when the finishing needs more.
   */
  private async guarded<T>(kind: "finish-end" | "finish-queue" | "finish-route" | "finish-assign" | "finish-transfer", chatId: string, afterMs: number, steps: () => Promise<T>, detail?: string): Promise<T> {
    const { scheduler } = this.deps;
    const key = `${chatId}|${this.deps.local.processId}.${++this.guardedChanges}${detail === undefined ? "" : `|${detail}`}`;
    await scheduler.schedule(kind, key, this.deps.now() + afterMs);
    const result = await steps();
    await scheduler.cancel(kind, key);
    return result;
  }

  /**
   * Drains the queue without waiting for it: the caller may hold the lane of a visitor
   * whose chat the drain takes, which waits for that lane.
   */
  private drainSoon(site: Site): void {
    void this.drainQueue(site).catch((err: unknown) => this.log.warn({ err, siteId: site.id }, "queue drain failed"));
  }

  /**
   * Roster items live in ejabberd, where no compare-and-set guards them: an end or a move
   * on another process, between the chat becoming the agent's and the item reaching their
   * roster, removed the item before it was there. So once it is there the chat is read
   * again, and the item goes unless the visitor's current chat (this one, or a newer one) is
   * with the agent. Returns whether this chat is still the agent's.
   */
  private async keepRosterItemOnlyIfTheirs(site: Site, visitor: Visitor, chatId: string, agentJid: string): Promise<boolean> {
    const current = (await this.deps.store.visitorWithChat(visitor.id))?.chat;
    const withAgent = current?.state === "active" && current.agentJid === agentJid;
    if (!withAgent) await this.deps.rosters.remove(agentJid, rosterItemOf(site, visitor));
    return withAgent && current.id === chatId;
  }

  /** A slot claimed for a chat that ended up elsewhere is freed, unless the chat holds it after all. */
  private async releaseUnlessHeld(site: Site, agentJid: string, chatId: string): Promise<void> {
    const current = await this.deps.store.getChat(chatId);
    if (current?.state === "active" && current.agentJid === agentJid) return; // another attempt assigned it to them
    await this.deps.store.releaseAgent(site.id, agentJid, chatId);
  }

  private async goOffline(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    const { store } = this.deps;
    const offline = await store.updateChat(chat.id, ["new"], { state: "offline" });
    if (!offline) return;
    const notice = await store.appendMessage(visitor.id, {
      chatId: chat.id,
      from: "system",
      name: site.name,
      text: site.offlineMessage || DEFAULT_OFFLINE_MESSAGE,
      ts: this.deps.now(),
    });
    await this.publishMessage(visitor.id, notice);
    const visitorMessages = (await store.transcript(chat.id)).filter((m) => m.from === "visitor");
    for (const message of visitorMessages) await this.sendToEveryAgent(site, visitor, message);
    this.log.info({ chatId: chat.id, siteId: site.id }, "no agent available: chat is in offline mode");
    const last = visitorMessages.at(-1);
    if (last) await this.deps.events?.offlineMessage(offline, last.id);
    this.deps.onChange?.(site.id);
  }

  /**
   * The agents that were back when the visitor wrote again in offline mode were gone again
   * by the time routing chose: the chat stays in offline mode, and what it was routed for
   * goes to every agent as any message in offline mode does.
   */
  private async stayOffline(site: Site, visitor: Visitor, chat: Chat): Promise<void> {
    const since = chat.requeuedAt ?? Infinity;
    const unsent = (await this.deps.store.transcript(chat.id)).filter((m) => m.from === "visitor" && m.ts >= since);
    await this.deps.store.updateChat(chat.id, ["offline"], { requeuedAt: undefined });
    for (const message of unsent) await this.leaveForEveryAgent(site, visitor, chat, message);
  }

  private async leaveForEveryAgent(site: Site, visitor: Visitor, chat: Chat, message: StoredMessage): Promise<void> {
    await this.sendToEveryAgent(site, visitor, message);
    await this.deps.events?.offlineMessage(chat, message.id);
  }

  /** Offline mode: every agent of the site gets it; ejabberd stores it for those offline. */
  private async sendToEveryAgent(site: Site, visitor: Visitor, message: StoredMessage): Promise<void> {
    for (const agent of await this.deps.store.listAgents(site.id)) this.relay(visitor, agent.jid, message);
  }
}

/** Whether the message was stored before the chat became active (what its assignment relays). */
function storedBefore(active: Chat, message: StoredMessage): boolean {
  return !active.activatedAfter || compareMessageIds(message.id, active.activatedAfter) <= 0;
}

/** The visitor as a contact in an agent's roster (CONTRACT §5). */
function rosterItemOf(site: Site, visitor: Visitor) {
  return { jid: visitor.jid, name: visitorDisplayName(visitor), group: site.name };
}

/** One assignment of a chat: the same agent given the chat again is a new one (`assignedAt`). */
function answeredKey(chat: Chat, agentJid: string): string {
  return `${chat.id}|${agentJid}|${chat.assignedAt ?? 0}`;
}
