import { hash, timingSafeEqual } from "node:crypto";
import type { Element } from "@xmpp/xml";
import { visitorIdFromBytes, visitorJid, VISITOR_ID_PATTERN } from "../stanza-mappers/addressing.js";
import { isWebUrl } from "../stanza-mappers/parse-client-frame.js";
import { MAX_FRAME_BYTES, type ClientFrame, type MessageFrame, type ServerFrame } from "../stanza-mappers/visitor-protocol.js";
import { pageStatus, presenceToStanza, visitorTypingToStanza } from "../stanza-mappers/visitor-to-stanza.js";
import type { ChatService } from "./chats.js";
import { messageFrame } from "./store/message-frame.js";
import type { KeyedQueue } from "./keyed-queue.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { OnlineMarkBatch } from "./online-marks.js";
import { RandomPool } from "./random-pool.js";
import { visitorDisplayName } from "./names.js";
import type { PresenceService } from "./presence.js";
import type { Outbox } from "./outbox.js";
import type { Scheduler } from "./scheduler.js";
import { newChatId } from "./store/ids.js";
import { VisitorBlockedError, type AppendResult, type Site, type Store, type Visitor } from "./store/types.js";

/**
 * The visitor side of a chat (CONTRACT §4), independent of WebSockets: who a connecting
 * visitor is (resume tokens), the welcome frame, and what each client frame does.
 *
 * A resume token is `{visitorId}.{secret}`: 256 random bits, of which the store keeps only
 * a SHA-256 hash, compared in constant time. A token of another site, or one that does
 * not match, starts a new visitor.
 */
export interface VisitorDeps {
  store: Store;
  domain: string;
  send(stanza: Element): void;
  chats: ChatService;
  presence: PresenceService;
  lanes: KeyedQueue;
  now(): number;
  newId(): string;
  logger: Logger;
  metrics: Metrics;
  graceMs: number;
  /** How often the gateway pings sockets and refreshes online marks (PARLEY_HEARTBEAT_MS). */
  heartbeatMs?: number;
  scheduler: Pick<Scheduler, "schedule" | "cancel">;
  outbox?: Pick<Outbox, "processId" | "track" | "relayingHere" | "deadAmong">;
  /** How long a visitor who never chats is remembered after their last visit (PARLEY_VISITOR_RETENTION_DAYS); unset: forever. */
  retentionMs?: number;
  /**
   * PARLEY_CHAT_IDLE_MS: also how often a visitor with an open chat is looked at (the
   * `visitor-left` watch, lifecycle.ts), in case the process holding them dies. Unset: no watch.
   */
  chatIdleMs?: number;
}

/**
 * A resumed visitor's welcome carries their newest messages: at most this many, and as many
 * of those as keep the frame within the protocol's 16 KiB (CONTRACT §4). A widget shows the
 * recent past.
 */
const HISTORY_LIMIT = 200;
/** How often the gateway pings sockets and refreshes online marks, unless configured. */
export const DEFAULT_HEARTBEAT_MS = 30_000;
const VISITOR_NUMBER_BLOCK = 16;

export interface Session {
  visitor: Visitor;
  token: string;
  resumed: boolean;
}

export type Reply = (frame: ServerFrame) => void;

/** A frame from a visitor whose site was deleted after they connected. */
export class SiteDeletedError extends Error {
  constructor(siteId: string) {
    super(`site ${siteId} was deleted`);
    this.name = "SiteDeletedError";
  }
}

export class VisitorService {
  private readonly log: Logger;
  private readonly random = new RandomPool();
  /** Visitor numbers are reserved in blocks per site: one store round trip per block, not per visitor. */
  private readonly numberBlocks = new Map<string, { next: number; end: number }>();
  private readonly newVisitorsOnline = new OnlineMarkBatch((siteId, visitorIds, until) => this.deps.store.markManyOnline(siteId, visitorIds, until, this.deps.now()));

  constructor(private readonly deps: VisitorDeps) {
    this.log = deps.logger.child({ module: "visitors" });
  }

  async connect(site: Site, token: string | undefined, meta: { userAgent?: string; referrer?: string }): Promise<Session> {
    const resumed = token ? await this.resume(site, token) : null;
    if (resumed) return { visitor: resumed, token: token!, resumed: true };

    const id = visitorIdFromBytes(this.random.take(17));
    const secret = this.random.take(32).toString("base64url");
    const visitor: Visitor = {
      id,
      siteId: site.id,
      jid: visitorJid(site.id, id, this.deps.domain),
      tokenHash: sha256(secret),
      number: await this.nextNumber(site.id),
      createdAt: this.deps.now(),
    };
    if (meta.userAgent) visitor.userAgent = meta.userAgent.slice(0, 512);
    // The Referer is whatever the client sent: kept only when it is a web page's URL (see isWebUrl).
    if (meta.referrer && meta.referrer.length <= 2048 && isWebUrl(meta.referrer)) visitor.referrer = meta.referrer;
    return { visitor, token: `${id}.${secret}`, resumed: false };
  }

  /**
   * Stores a new session's visitor (nothing to do for a resumed one). Called once the
   * WebSocket is open, in the same turn as the gateway's hold on the visitor, so both
   * writes leave together and a failed handshake stores nothing.
   */
  async persist(session: Session): Promise<void> {
    if (session.resumed) return;
    await this.deps.store.createVisitor(session.visitor, this.forgetAt());
    this.log.debug({ visitorId: session.visitor.id, siteId: session.visitor.siteId }, "new visitor");
  }

  /** Unique per site, increasing per process; numbers reserved by a process that stops are skipped. */
  private async nextNumber(siteId: string): Promise<number> {
    let block = this.numberBlocks.get(siteId);
    if (!block || block.next > block.end) {
      const first = await this.deps.store.reserveVisitorNumbers(siteId, VISITOR_NUMBER_BLOCK);
      block = this.numberBlocks.get(siteId);
      // Another session of this site may have reserved a block meanwhile: use the fresher one.
      if (!block || block.next > block.end) {
        block = { next: first, end: first + VISITOR_NUMBER_BLOCK - 1 };
        this.numberBlocks.delete(siteId); // re-insert: the map stays ordered by last reservation
        this.numberBlocks.set(siteId, block);
        if (this.numberBlocks.size > 10_000) this.numberBlocks.delete(this.numberBlocks.keys().next().value!);
      }
    }
    return block.next++;
  }

  async welcome(site: Site, session: Session): Promise<ServerFrame[]> {
    const { store } = this.deps;
    const { visitor } = session;
    // A new visitor has no history and no chat: only a resumed one needs them read.
    const [history, agentsOnline, chat] = await Promise.all([
      session.resumed ? store.history(visitor.id, HISTORY_LIMIT) : Promise.resolve([]),
      this.deps.presence.agentsOnline(site.id),
      visitor.chatId ? store.getChat(visitor.chatId) : Promise.resolve(null),
    ]);
    const welcome: Extract<ServerFrame, { type: "welcome" }> = {
      type: "welcome",
      visitorId: visitor.id,
      token: session.token,
      resumed: session.resumed,
      agentsOnline,
      agent: chat?.state === "active" && chat.agentName ? { name: chat.agentName } : null,
      history: [],
      ...(site.welcome ? { welcome: site.welcome } : {}),
    };
    if (history.length > 0) {
      const room = MAX_FRAME_BYTES - Buffer.byteLength(JSON.stringify(welcome));
      welcome.history = newestWithin(history.filter((m) => m.from !== "note").map(messageFrame), room);
    }
    const frames: ServerFrame[] = [welcome];
    if (chat?.state === "queued") {
      const position = await store.queuePosition(site.id, chat.id);
      if (position !== null) frames.push({ type: "queue", position });
    }
    return frames;
  }

  /** A socket of the visitor opened: they are online (again). */
  async socketOpened(site: Site, session: Session): Promise<void> {
    const { visitor } = session;
    if (!session.resumed) {
      // New: no timers to cancel, no agent to tell; marked together with this turn's other new visitors.
      await this.newVisitorsOnline.mark(site.id, visitor.id, this.onlineUntil());
      return;
    }
    const now = this.deps.now();
    const forgetAt = visitor.chatCount ? undefined : this.forgetAt();
    const [wasOnline] = await Promise.all([this.deps.store.isOnline(site.id, visitor.id, now), forgetAt === undefined ? undefined : this.deps.store.keepVisitor(visitor.id, forgetAt)]);
    await this.markOnline(site.id, visitor.id);
    if (!wasOnline) {
      // Back with their chat open: watched again (the chat-idle timer is theirs no more).
      const leaving = visitor.chatId ? this.watch(visitor.id) : this.deps.scheduler.cancel("visitor-left", visitor.id);
      await Promise.all([leaving, this.deps.scheduler.cancel("chat-idle", visitor.id)]);
      await this.announcePresence(visitor.id);
    }
  }

  /**
   * Looks at a visitor with an open chat every PARLEY_CHAT_IDLE_MS (the `visitor-left`
   * timer, lifecycle.ts): if the process holding their sockets dies, nobody else learns that
   * they left, and their chat would never end (nor its transcript ever be purged).
   */
  private async watch(visitorId: string): Promise<void> {
    if (this.deps.chatIdleMs) await this.deps.scheduler.schedule("visitor-left", visitorId, this.deps.now() + this.deps.chatIdleMs);
  }

  /** When a visitor who never chats, seen now, is forgotten; undefined when visitors are kept forever. */
  private forgetAt(): number | undefined {
    return this.deps.retentionMs ? this.deps.now() + this.deps.retentionMs : undefined;
  }

  /** Marks the visitor online for two heartbeats and the grace period (a socket of theirs is open here). */
  async markOnline(siteId: string, visitorId: string): Promise<void> {
    await this.deps.store.markOnline(siteId, visitorId, this.onlineUntil(), this.deps.now());
  }

  /** Whether the site still exists (from the site cache). */
  async siteExists(siteId: string): Promise<boolean> {
    return (await this.deps.store.getSite(siteId)) !== null;
  }

  /** Heartbeat: refreshes the online mark of every visitor of a site that this process holds. */
  async markManyOnline(siteId: string, visitorIds: readonly string[]): Promise<void> {
    await this.deps.store.markManyOnline(siteId, visitorIds, this.onlineUntil(), this.deps.now());
  }

  /** A visitor with an open socket counts as online for two missed heartbeats and the grace period. */
  private onlineUntil(): number {
    return this.deps.now() + 2 * (this.deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS) + this.deps.graceMs;
  }

  /** The visitor's last socket on this process closed: offline once the grace period passes. */
  async lastSocketClosed(site: Site, visitorId: string): Promise<void> {
    const now = this.deps.now();
    const until = now + this.deps.graceMs;
    await this.deps.store.markOnline(site.id, visitorId, until, now);
    // A durable timer, not a local one: if this process dies, another one still tells the agent.
    await this.deps.scheduler.schedule("visitor-left", visitorId, until + 1);
  }

  /**
   * `visitor` is the session's: its id and number never change. `siteId` is the site the
   * socket connected to; the site itself is read again for each frame (from the site
   * cache), in the visitor's lane so that frames keep their order: an admin may have
   * changed it since (a higher cap, a new name), or deleted it, and then the frame is
   * refused with `SiteDeletedError`.
   */
  async onFrame(siteId: string, visitor: Pick<Visitor, "id" | "number">, frame: ClientFrame, reply: Reply): Promise<void> {
    const visitorId = visitor.id;
    if (frame.type === "ping") {
      reply({ type: "pong" });
      return;
    }
    await this.deps.lanes.run(visitorId, async () => {
      const site = await this.deps.store.getSite(siteId);
      if (!site) throw new SiteDeletedError(siteId);
      switch (frame.type) {
        case "message":
          return this.onMessage(site, visitor, frame, reply);
        case "typing":
          return this.onTyping(visitorId, frame.state);
        case "page":
          return this.onPage(visitorId, { url: frame.url, title: frame.title });
        case "identify":
          return this.onIdentify(site, visitorId, frame);
      }
    });
  }

  private async resume(site: Site, token: string): Promise<Visitor | null> {
    const dot = token.indexOf(".");
    const visitorId = token.slice(0, dot);
    const secret = token.slice(dot + 1);
    if (dot === -1 || !VISITOR_ID_PATTERN.test(visitorId) || secret.length < 32 || secret.length > 64) return null;
    const visitor = await this.deps.store.getVisitor(visitorId);
    if (!visitor || visitor.siteId !== site.id) return null;
    const expected = Buffer.from(visitor.tokenHash, "hex");
    const actual = Buffer.from(sha256(secret), "hex");
    return expected.length === actual.length && timingSafeEqual(expected, actual) ? visitor : null;
  }

  private async onMessage(site: Site, { id: visitorId, number }: Pick<Visitor, "id" | "number">, frame: Extract<ClientFrame, { type: "message" }>, reply: Reply): Promise<void> {
    const started = performance.now();
    const { store, outbox, chats } = this.deps;
    await outbox?.track(visitorId);
    const now = this.deps.now();
    let appended: AppendResult;
    try {
      // One step in the store: read the visitor, dedupe, store, publish to their other processes.
      appended = await store.appendVisitorMessage({
        visitorId,
        siteId: site.id,
        clientId: frame.id,
        fallbackName: visitorDisplayName({ number }),
        text: frame.text,
        ts: now,
        newChatId: newChatId(visitorId, now),
        publisher: chats.processId,
        ...(outbox ? { owner: outbox.processId } : {}),
      });
    } catch (err) {
      if (!(err instanceof VisitorBlockedError)) throw err;
      reply({ type: "error", code: "blocked", message: "This conversation has been closed.", id: frame.id });
      return;
    }
    // Stored durably: only now may the visitor be told (CONTRACT §4, §6).
    reply({ type: "ack", id: frame.id, messageId: appended.message.id, ts: appended.message.ts });
    if (appended.duplicate) {
      if (appended.unrelayed) await this.relayIfStopped(visitorId, appended.message.id);
      return;
    }
    chats.deliverStored(visitorId, appended.message); // the visitor's other tabs here
    if (appended.chatCreated) await this.watch(visitorId);
    await chats.onVisitorMessage(site, appended.visitor, appended);
    this.deps.metrics.messages.inc({ direction: "in" });
    this.deps.metrics.stanzaLatency.observe({ direction: "in" }, (performance.now() - started) / 1000);
  }

  /**
   * A resend whose original is stored but not marked relayed. Its first attempt may have
   * stopped after storing it (the store's answer lost and the command resent, or a step
   * after the store failing), and then nothing else would ever relay it; or the process that
   * stored it is still relaying it (its stanza waits for ejabberd, or its relayed mark for the
   * next batch), and relaying it here too would show it to the agent twice. Only the process
   * that stored it knows which: a resend through another process asks it. Called in the
   * visitor's lane, so this process's own attempt is over or has reached the link.
   */
  async relayIfStopped(visitorId: string, messageId: string): Promise<void> {
    const { store, outbox, chats } = this.deps;
    const pending = (await store.unrelayed(visitorId)).find((p) => p.messageId === messageId);
    if (!pending) return; // relayed meanwhile
    if (outbox && pending.owner !== outbox.processId) {
      // A dead owner's messages are relayed by the survivor that takes its outbox over.
      if ((await outbox.deadAmong([pending.owner])).length === 0) await store.publishToProcess(pending.owner, { kind: "relay-if-stopped", visitorId, messageId });
      return;
    }
    if (!outbox?.relayingHere(visitorId, messageId)) await chats.redeliver(visitorId, [messageId]);
  }

  private async onTyping(visitorId: string, state: "composing" | "paused"): Promise<void> {
    const chat = await this.activeChat(visitorId);
    if (!chat) return;
    this.deps.send(visitorTypingToStanza({ from: chat.visitor.jid, to: chat.agentJid, state, id: this.deps.newId() }));
  }

  private async onPage(visitorId: string, page: { url: string; title: string }): Promise<void> {
    await this.deps.store.recordPage(visitorId, page);
    const chat = await this.activeChat(visitorId);
    if (chat) this.deps.send(presenceToStanza({ from: chat.visitor.jid, to: chat.agentJid, status: pageStatus(page) }));
  }

  private async onIdentify(site: Site, visitorId: string, frame: Extract<ClientFrame, { type: "identify" }>): Promise<void> {
    const patch: { name?: string; email?: string } = {};
    if (frame.name?.trim()) patch.name = frame.name.trim();
    if (frame.email) patch.email = frame.email;
    const visitor = await this.deps.store.updateVisitor(visitorId, patch);
    const chat = visitor && (await this.activeChat(visitorId));
    if (chat && patch.name) await this.deps.chats.renameInRoster(site, chat.visitor, chat.agentJid);
  }

  /** Sends the visitor's current presence to their agent, if they have one. */
  private async announcePresence(visitorId: string): Promise<void> {
    const chat = await this.activeChat(visitorId);
    if (chat) await this.deps.presence.sendVisitorPresence(visitorId, chat.agentJid);
  }

  private async activeChat(visitorId: string): Promise<{ visitor: Visitor; agentJid: string } | null> {
    const current = await this.deps.store.visitorWithChat(visitorId);
    const chat = current?.chat;
    return current && chat?.state === "active" && chat.agentJid ? { visitor: current.visitor, agentJid: chat.agentJid } : null;
  }
}

/** The newest of `frames` whose JSON, comma-separated, takes at most `maxBytes`. */
function newestWithin(frames: MessageFrame[], maxBytes: number): MessageFrame[] {
  let bytes = 0;
  let first = frames.length;
  while (first > 0) {
    bytes += Buffer.byteLength(JSON.stringify(frames[first - 1])) + 1;
    if (bytes > maxBytes) break;
    first -= 1;
  }
  return frames.slice(first);
}

function sha256(secret: string): string {
  // One-shot: a Hash object per session cost ≈ 40 µs of the bridge's ≈ 0.7 ms per new session.
  return hash("sha256", secret, "hex");
}
