import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { setImmediate as nextTurn } from "node:timers/promises";
import { WebSocketServer, type WebSocket } from "ws";
import { parseClientFrame } from "../stanza-mappers/parse-client-frame.js";
import { SITE_ID_PATTERN } from "../stanza-mappers/addressing.js";
import { SITE_GONE_CLOSE_CODE, type ClientFrame, type MessageFrame, type ServerFrame } from "../stanza-mappers/visitor-protocol.js";
import { clientKey, isLocalProxy } from "./client-address.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { TokenBucket, type RateSpec } from "./rate-limit.js";
import { messageFrame } from "./store/message-frame.js";
import { corkForThisTurn } from "./write-batching.js";
import { UnknownVisitorError, type Site, type Store } from "./store/types.js";
import { DEFAULT_HEARTBEAT_MS, SiteDeletedError, type Session, type VisitorService } from "./visitors.js";

/**
 * The only user of `ws` (CONTRACT §4): upgrade checks (unknown site 404, foreign origin
 * 403), frame limits, rate limits, heartbeats, and fan-out of a visitor's frames to every
 * socket (tab) this process holds for them. Frames for a visitor come from this process
 * (`deliver`) or, through the store's bus, from the others: the gateway tells the store
 * which visitors it holds, so that others publish to it only what concerns its sockets.
 */
export interface GatewayDeps {
  store: Store;
  visitors: VisitorService;
  logger: Logger;
  metrics: Metrics;
  now(): number;
  visitorRate: RateSpec;
  /** New visitor connections per client address, an IPv6 one by its /64 (PARLEY_UPGRADE_RATE). */
  upgradeRate: RateSpec;
  /** All frames of one socket — pings, typing, pages, bad frames (PARLEY_SOCKET_RATE): generous, but bounded. */
  socketRate: RateSpec;
  /**
   * Open sockets per client address (an IPv6 one by its /64) on this process
   * (PARLEY_SOCKETS_PER_ADDRESS): the upgrade rate bounds how fast one address opens them,
   * this how many it keeps, so that one address cannot take every file descriptor.
   */
  socketsPerAddress: number;
  /** How often every socket is pinged (PARLEY_HEARTBEAT_MS); a socket that missed the last pong is closed. */
  heartbeatMs?: number;
  /** This process, as the store's bus knows it. */
  processId: string;
  /** Which of these processes are dead (stale heartbeat): their holds on visitors are removed. */
  deadProcesses?(processIds: readonly string[]): Promise<string[]>;
}

/**
 * Refusals (rate_limited) a socket may collect before it counts as flooding and is closed
 * (1008): 50 at once, then one a second. Frames that still get through do not reset it, so a
 * client that keeps sending faster than its limit is closed whatever its pace (at 300
 * messages/s within a fraction of a second, at 50/s within about a second, at 10/s within
 * about 12 s); one that goes over the limit now and then never is.
 */
const FLOOD_ALLOWANCE = { perSecond: 1, burst: 50 };
/** How far back a catch-up after a bus outage looks, and so how many sent ids are remembered. */
const CATCH_UP_MESSAGES = 50;
/** Visitors pinged in one turn of the event loop by the heartbeat (≈ 40 µs each). */
const HEARTBEAT_SLICE = 256;
/** A socket that lets this much pile up unread is terminated (slow reader). */
const MAX_BUFFERED_BYTES = 1024 * 1024;
/** ws refuses anything larger outright; between 16 KiB and this the client gets `too_large` first. */
const HARD_MAX_PAYLOAD = 64 * 1024;
/**
 * Refused connections logged per process: the first ten, then one a second. Enough for an
 * admin to see why a widget does not connect (a site's `origins` lacking the page's), too
 * few for a flood of refusals to flood the log.
 */
const REFUSAL_LOG_RATE = { perSecond: 1, burst: 10 };

// Per-socket state is kept small (a process holds hundreds of thousands of idle sockets):
// listeners are shared by all sockets and find their state through the WebSocket; buckets
// and id sets are created on first use.

interface LocalVisitor {
  siteId: string;
  sockets: Set<VisitorSocket>;
  messageBucket: TokenBucket | null;
  /**
   * Typing, page and identify frames of all the visitor's tabs, which reach their agent
   * (a chat state, a presence, a roster rename): a per-socket limit alone let a visitor
   * with a hundred tabs send their agent thousands of stanzas a second.
   */
  noticeBucket: TokenBucket | null;
  /** Resolves once the store routes the visitor's frames to this process; null once it has. */
  held: Promise<void> | null;
  /**
   * Ids of the latest messages every socket of this visitor here has been sent, so that a
   * catch-up from the log sends only what the bus lost. A set, not a high-water mark: two
   * processes may publish a visitor's messages in another order than the log's.
   */
  recentMessageIds: Set<string> | null;
}

/** The open sockets of one client address (see clientKey), shared by those sockets. */
interface ClientSockets {
  key: string;
  open: number;
}

interface VisitorSocket {
  ws: WebSocket;
  /** The TCP socket under `ws`, to batch an ack with the message echo that follows it. */
  raw: Duplex;
  site: Site;
  client: ClientSockets;
  /** The session's visitor: only what never changes (fields, not an object: one less per socket). */
  visitorId: string;
  visitorNumber: number;
  alive: boolean;
  /** Frames from the bus held back until the welcome frame has gone out. */
  pending: ServerFrame[] | null;
  /**
   * Messages this socket's welcome history had that the visitor's other sockets here were
   * not sent yet (a message stored while this tab connected): their live frame still goes
   * to the others, not again to this one. Null when there are none (nearly always).
   */
  welcomedIds: Set<string> | null;
  frameBucket: TokenBucket;
  /** Refusals left before the socket counts as flooding (FLOOD_ALLOWANCE); made at the first. */
  refusalBucket: TokenBucket | null;
  /** The frame being handled, so a close for flooding waits for the acks of accepted messages. */
  inFlight: Promise<void> | null;
  closing: boolean;
}

export class VisitorGateway {
  private readonly wss = new WebSocketServer({ noServer: true, maxPayload: HARD_MAX_PAYLOAD, skipUTF8Validation: true, perMessageDeflate: false });
  private readonly local = new Map<string, LocalVisitor>();
  private readonly sockets = new WeakMap<WebSocket, VisitorSocket>();
  /** Per client (see clientKey). Behind a load balancer this is the balancer's address: limit there too. */
  private readonly upgradeBuckets = new Map<string, { bucket: TokenBucket; seen: number }>();
  private readonly clients = new Map<string, ClientSockets>();
  private readonly siteSubscriptions = new Map<string, { count: number; unsubscribe: Promise<() => Promise<void>> }>();
  private readonly heartbeat: NodeJS.Timeout;
  private readonly log: Logger;
  private accepting = true;
  private readonly refusalLogBucket: TokenBucket;
  private beating = false;
  /** Sites a beat found deleted while this process held sockets of theirs (see refreshOnlineMarks). */
  private sitesGone = new Set<string>();
  private sitesGoneBefore = new Set<string>();

  constructor(private readonly deps: GatewayDeps) {
    this.log = deps.logger.child({ module: "visitor-gateway" });
    this.refusalLogBucket = new TokenBucket(REFUSAL_LOG_RATE, deps.now());
    const heartbeatMs = deps.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.heartbeat = setInterval(() => void this.beat(heartbeatMs), heartbeatMs);
    deps.store.onBusRecovered(() => this.catchUp().catch((err: unknown) => this.log.warn({ err }, "catch-up after a bus outage failed")));
    this.heartbeat.unref();
    // The 101 response waits in the socket, corked, for the welcome frame (see `attach`):
    // one write and one wake-up of the client per session instead of two.
    this.wss.on("headers", holdHandshakeResponse);
  }

  get connections(): number {
    return this.wss.clients.size;
  }

  /** Called by the HTTP server for `GET /visitor?site=…[&token=…]` upgrades. */
  async handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<void> {
    // A shared function, not a closure: a closure here would keep this call's whole scope
    // (the session, with its token) alive for as long as the socket lives.
    socket.on("error", destroyOnError);
    if (!this.accepting) return this.refuseUpgrade(socket, 503, "shutting down", "shutting_down");
    const remote = req.socket.remoteAddress ?? "unknown";
    const address = clientKey(remote);
    if (!isLocalProxy(remote)) {
      if (!this.takeUpgradeToken(address)) return this.refuseUpgrade(socket, 429, "too many connections", "rate_limited");
      // Upgrades still under way are not counted: the upgrade rate's burst bounds them.
      if ((this.clients.get(address)?.open ?? 0) >= this.deps.socketsPerAddress) return this.refuseUpgrade(socket, 429, "too many open connections", "too_many_sockets");
    }
    const siteId = url.searchParams.get("site") ?? "";
    let site: Site | null;
    try {
      site = SITE_ID_PATTERN.test(siteId) ? await this.deps.store.getSite(siteId) : null;
    } catch (err) {
      this.log.warn({ err }, "store unavailable during upgrade");
      return this.refuseUpgrade(socket, 503, "store unavailable", "unavailable");
    }
    const origin = req.headers.origin;
    if (!site) return this.refuseUpgrade(socket, 404, "unknown site", "unknown_site", { siteId: siteId.slice(0, 64), origin: origin?.slice(0, 256) });
    if (site.origins.length > 0 && (!origin || !site.origins.includes(origin))) {
      return this.refuseUpgrade(socket, 403, "origin not allowed", "origin", { siteId, origin: origin?.slice(0, 256) ?? null, allowed: site.origins });
    }

    let session: Session;
    try {
      session = await this.deps.visitors.connect(site, url.searchParams.get("token") ?? undefined, {
        userAgent: req.headers["user-agent"],
        referrer: req.headers.referer,
      });
    } catch (err) {
      this.log.warn({ err }, "could not start a visitor session");
      return this.refuseUpgrade(socket, 503, "store unavailable", "unavailable");
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => void this.attach(ws, socket, site, session, address));
  }

  /**
   * Answers an upgrade with an HTTP error, counted by reason. A refusal that comes from the
   * site's settings (unknown id, origin not listed) is also logged, with what the page sent,
   * since the widget cannot say more than "failed" in the visitor's console.
   */
  private refuseUpgrade(socket: Duplex, status: number, message: string, reason: string, details?: Record<string, unknown>): void {
    this.deps.metrics.upgradesRefused.inc({ reason });
    if (details && this.refusalLogBucket.take(this.deps.now())) this.log.info({ reason, ...details }, `visitor connection refused: ${message}`);
    refuse(socket, status, message);
  }

  /** Graceful shutdown: stop accepting and ask every visitor to reconnect elsewhere (1012). */
  async close(): Promise<void> {
    this.accepting = false;
    clearInterval(this.heartbeat);
    for (const ws of this.wss.clients) ws.close(1012, "server restarting");
    await Promise.all(
      [...this.wss.clients].map(
        (ws) =>
          new Promise<void>((resolve) => {
            const timer = setTimeout(() => {
              ws.terminate();
              resolve();
            }, 2000);
            ws.once("close", () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
  }

  private async attach(ws: WebSocket, raw: Duplex, site: Site, session: Session, address: string): Promise<void> {
    const { visitor } = session;
    const now = this.deps.now();
    let client = this.clients.get(address);
    if (!client) this.clients.set(address, (client = { key: address, open: 0 }));
    client.open += 1;
    const socket: VisitorSocket = {
      ws,
      raw,
      site,
      client,
      visitorId: visitor.id,
      visitorNumber: visitor.number,
      alive: true,
      pending: [],
      welcomedIds: null,
      frameBucket: new TokenBucket(this.deps.socketRate, now),
      refusalBucket: null,
      inFlight: null,
      closing: false,
    };
    this.sockets.set(ws, socket);
    this.deps.metrics.visitorsConnected.inc();
    const entry = this.local.get(visitor.id) ?? this.holdLocally(site, session);
    entry.sockets.add(socket);

    ws.on("pong", this.listeners.pong);
    ws.on("message", this.listeners.message);
    ws.on("error", this.listeners.error);
    ws.on("close", this.listeners.close);

    try {
      try {
        await entry.held; // held before reading history, so nothing falls in between
        const frames = await this.deps.visitors.welcome(site, session);
        const welcome = frames[0];
        const seen = new Set(welcome?.type === "welcome" ? welcome.history.map((m) => m.messageId) : []);
        rememberWelcomed(entry, socket, [...seen].slice(-CATCH_UP_MESSAGES));
        for (const frame of frames) this.sendTo(socket, frame);
        const held = socket.pending ?? [];
        socket.pending = null;
        for (const frame of held) if (!(frame.type === "message" && seen.has((frame as MessageFrame).messageId))) this.sendTo(socket, frame);
      } finally {
        raw.uncork(); // the 101 response and the welcome (or the close) leave together
      }
      await this.deps.visitors.socketOpened(site, session);
    } catch (err) {
      this.log.warn({ err, visitorId: visitor.id }, "could not welcome visitor");
      ws.close(1011, "temporarily unavailable");
    }
  }

  /** The first socket of a visitor on this process: store a new visitor and route their frames here. */
  private holdLocally(site: Site, session: Session): LocalVisitor {
    const visitorId = session.visitor.id;
    const entry: LocalVisitor = { siteId: site.id, sockets: new Set(), messageBucket: null, noticeBucket: null, held: null, recentMessageIds: null };
    // A new visitor is stored with the hold: both writes leave in one batch.
    const held = Promise.all([this.deps.visitors.persist(session), this.deps.store.holdVisitor(visitorId, this.deps.processId)]).then(([, others]) => {
      if (entry.held === held) entry.held = null; // nothing left to wait for: free it
      this.pruneDeadHolders(visitorId, others);
    });
    entry.held = held;
    this.local.set(visitorId, entry);
    this.subscribeSite(site.id);
    return entry;
  }

  /**
   * A process that died never released its visitors: whoever next holds or releases such a
   * visitor removes the dead entry, so frames stop being published to a channel nobody
   * hears. (Right after a crash the dead process still looks alive; its entry then goes
   * when the visitor leaves or comes back.) Off the critical path; a failure only delays it.
   */
  private pruneDeadHolders(visitorId: string, others: readonly string[]): void {
    void this.liveHolders(visitorId, others).catch((err: unknown) => this.log.debug({ err, visitorId }, "could not prune dead holders"));
  }

  /** Those of `others` (processes holding the visitor) that are alive; the dead ones are released. */
  private async liveHolders(visitorId: string, others: readonly string[]): Promise<string[]> {
    const { deadProcesses } = this.deps;
    if (others.length === 0 || !deadProcesses) return [...others];
    const dead = await deadProcesses(others);
    await Promise.all(dead.map((processId) => this.deps.store.releaseVisitor(visitorId, processId)));
    return others.filter((processId) => !dead.includes(processId));
  }

  /** One set of listeners for every socket (see `socketListeners`). */
  private readonly listeners = socketListeners((ws) => this.sockets.get(ws), {
    data: (socket, data, isBinary) => void this.onData(socket, data, isBinary),
    close: (socket) => void this.detach(socket),
    error: (socket, err) => this.log.debug({ err, visitorId: socket.visitorId }, "visitor socket error"),
  });

  private async detach(socket: VisitorSocket): Promise<void> {
    const { site } = socket;
    const visitorId = socket.visitorId;
    this.deps.metrics.visitorsConnected.dec();
    if (--socket.client.open === 0) this.clients.delete(socket.client.key);
    const entry = this.local.get(visitorId);
    if (!entry?.sockets.delete(socket) || entry.sockets.size > 0) return;
    this.local.delete(visitorId);
    this.unsubscribeSite(site.id);
    try {
      await entry.held;
      // The visitor came back meanwhile: the hold stays (commands run in order), and so do they online.
      if (this.local.has(visitorId)) return;
      const others = await this.deps.store.releaseVisitor(visitorId, this.deps.processId);
      // A tab on another live process keeps them online: its heartbeat refreshes their mark.
      if ((await this.liveHolders(visitorId, others)).length > 0) return;
      if (this.accepting) await this.deps.visitors.lastSocketClosed(site, visitorId);
    } catch (err) {
      this.log.warn({ err, visitorId }, "could not record visitor leaving");
    }
  }

  private async onData(socket: VisitorSocket, data: Buffer, isBinary: boolean): Promise<void> {
    if (socket.closing) return;
    const visitorId = socket.visitorId;
    const now = this.deps.now();
    if (!socket.frameBucket.take(now)) return this.refuse(socket, { type: "error", code: "rate_limited", message: "too many frames; slow down" });
    const parsed = parseClientFrame(data, isBinary);
    if (!parsed.ok) {
      this.deps.metrics.frameErrors.inc({ code: parsed.code });
      this.sendTo(socket, { type: "error", code: parsed.code, message: parsed.message, ...(parsed.id ? { id: parsed.id } : {}) });
      if (parsed.close) socket.ws.close(parsed.close, parsed.message);
      return;
    }
    const { frame } = parsed;
    const entry = this.local.get(visitorId);
    if (frame.type === "message" && entry && !(entry.messageBucket ??= new TokenBucket(this.deps.visitorRate, now)).take(now)) {
      return this.refuse(socket, { type: "error", code: "rate_limited", message: "too many messages; wait a moment", id: frame.id });
    }
    // The same rate as messages, counted apart: typing never costs a visitor a message.
    if (frame.type !== "message" && frame.type !== "ping" && entry && !(entry.noticeBucket ??= new TokenBucket(this.deps.visitorRate, now)).take(now)) {
      return this.refuse(socket, { type: "error", code: "rate_limited", message: `too many ${frame.type} frames; slow down` });
    }
    const handled = this.deps.visitors
      .onFrame(socket.site.id, { id: visitorId, number: socket.visitorNumber }, frame, (reply) => this.sendTo(socket, reply))
      .catch((err: unknown) => this.frameFailed(socket, frame, err));
    socket.inFlight = handled;
    await handled;
    if (socket.inFlight === handled) socket.inFlight = null;
  }

  private frameFailed(socket: VisitorSocket, frame: ClientFrame, err: unknown): void {
    const id = frame.type === "message" ? { id: frame.id } : {};
    if (err instanceof SiteDeletedError) {
      this.closeForDeletedSite(socket, id);
      return;
    }
    if (err instanceof UnknownVisitorError) {
      // Forgotten while connected (a tab open past the retention, or a Redis that lost
      // them): reconnecting makes them a new visitor, and the widget sends the message again.
      socket.closing = true;
      socket.ws.close(1012, "session expired");
      return;
    }
    this.log.warn({ err, visitorId: socket.visitorId, type: frame.type }, "visitor frame failed");
    this.sendTo(socket, { type: "error", code: "unavailable", message: "temporarily unavailable; try again", ...id });
  }

  private refuse(socket: VisitorSocket, frame: ServerFrame): void {
    this.deps.metrics.frameErrors.inc({ code: "rate_limited" });
    this.sendTo(socket, frame);
    const now = this.deps.now();
    if (!socket.closing && !(socket.refusalBucket ??= new TokenBucket(FLOOD_ALLOWANCE, now)).take(now)) {
      // Frames are handled in order per visitor, so once the last accepted one is done,
      // every accepted message has been stored and acknowledged.
      socket.closing = true;
      void (socket.inFlight ?? Promise.resolve()).then(() => socket.ws.close(1008, "flooding"));
    }
  }

  /** Sends a frame to every socket of the visitor on this process (if any). */
  deliver(visitorId: string, frame: ServerFrame): void {
    const entry = this.local.get(visitorId);
    if (!entry) return;
    if (frame.type === "message") {
      if (entry.recentMessageIds?.has(frame.messageId)) return; // already sent (catch-up and bus both)
      rememberSent(entry, frame.messageId);
    }
    for (const socket of entry.sockets) {
      if (frame.type === "message" && alreadyWelcomedWith(socket, frame.messageId)) continue;
      this.sendTo(socket, frame);
    }
  }

  /**
   * After the bus was down, sends each local visitor the messages stored meanwhile (from
   * the durable log), in order; `deliver` drops any that also arrive through the bus.
   */
  private async catchUp(): Promise<void> {
    const visitorIds = [...this.local.keys()];
    this.log.info({ visitors: visitorIds.length }, "bus recovered: catching visitors up from the log");
    for (let i = 0; i < visitorIds.length; i += 50) {
      await Promise.all(
        visitorIds.slice(i, i + 50).map(async (visitorId) => {
          const missed = (await this.deps.store.history(visitorId, CATCH_UP_MESSAGES)).filter((m) => m.from !== "note");
          for (const message of missed) this.deliver(visitorId, messageFrame(message));
        }),
      );
    }
  }

  private sendTo(socket: VisitorSocket, frame: ServerFrame): void {
    // Until the welcome is written, every other frame waits: the welcome comes first (CONTRACT §4).
    if (socket.pending && frame.type !== "welcome") {
      socket.pending.push(frame);
      return;
    }
    if (socket.ws.readyState !== socket.ws.OPEN) return;
    if (frame.type === "ack") corkForThisTurn(socket.raw); // the echo of the message follows at once
    socket.ws.send(JSON.stringify(frame));
    if (socket.ws.bufferedAmount > MAX_BUFFERED_BYTES) {
      this.log.info("terminating a visitor socket that does not read");
      socket.ws.terminate();
    }
  }

  private subscribeSite(siteId: string): void {
    const existing = this.siteSubscriptions.get(siteId);
    if (existing) {
      existing.count += 1;
      return;
    }
    const unsubscribe = this.deps.store.subscribeSite(siteId, (frame) => {
      for (const entry of this.local.values()) if (entry.siteId === siteId) for (const socket of entry.sockets) this.sendTo(socket, frame);
    });
    unsubscribe.catch((err: unknown) => this.log.warn({ err, siteId }, "site subscription failed"));
    this.siteSubscriptions.set(siteId, { count: 1, unsubscribe });
  }

  private unsubscribeSite(siteId: string): void {
    const entry = this.siteSubscriptions.get(siteId);
    if (!entry || --entry.count > 0) return;
    this.siteSubscriptions.delete(siteId);
    void entry.unsubscribe.then((unsubscribe) => unsubscribe()).catch(() => {});
  }

  private takeUpgradeToken(address: string): boolean {
    const now = this.deps.now();
    let entry = this.upgradeBuckets.get(address);
    if (!entry) this.upgradeBuckets.set(address, (entry = { bucket: new TokenBucket(this.deps.upgradeRate, now), seen: now }));
    entry.seen = now;
    return entry.bucket.take(now);
  }

  /**
   * Pings every socket (one missed pong and it is terminated at the next beat) and refreshes
   * the online marks, in slices with a turn of the event loop between them: a ping is a
   * system call, and all at once they stalled everything else on the process (0.76 s every
   * 30 s at 19,000 sessions; ≈ 10 s at 250,000).
   */
  private async beat(heartbeatMs: number): Promise<void> {
    if (this.beating) return; // the last one is still going: only under extreme load
    this.beating = true;
    this.sitesGoneBefore = this.sitesGone;
    this.sitesGone = new Set();
    try {
      // Addresses quiet for a whole beat have refilled their bucket: forget them.
      const quietSince = this.deps.now() - heartbeatMs;
      for (const [address, entry] of this.upgradeBuckets) if (entry.seen < quietSince) this.upgradeBuckets.delete(address);
      let slice = new Map<string, string[]>();
      let inSlice = 0;
      for (const [visitorId, entry] of this.local) {
        for (const socket of entry.sockets) {
          if (!socket.alive) {
            socket.ws.terminate(); // its close handler updates `local`
            continue;
          }
          socket.alive = false;
          socket.ws.ping();
        }
        const ids = slice.get(entry.siteId);
        if (ids) ids.push(visitorId);
        else slice.set(entry.siteId, [visitorId]);
        if (++inSlice === HEARTBEAT_SLICE) {
          this.refreshOnlineMarks(slice);
          slice = new Map();
          inSlice = 0;
          await nextTurn();
          if (!this.accepting) return; // shutting down: the sockets are being closed
        }
      }
      this.refreshOnlineMarks(slice);
    } finally {
      this.beating = false;
    }
  }

  /**
   * Marks, in the same turn as they were collected: a visitor who leaves afterwards gets
   * their shorter mark (`lastSocketClosed`) written after this one, never before. And a
   * deleted site's sockets that sent nothing since (an idle tab) learn it here: one cached
   * site read per site and slice. They are closed at the second beat that finds the site
   * gone, not the first: whoever deleted it is ending its open chats meanwhile, and a socket
   * closed at once lost its visitor's `ended` frame.
   */
  private refreshOnlineMarks(bySite: Map<string, string[]>): void {
    for (const [siteId, visitorIds] of bySite) {
      this.deps.visitors.markManyOnline(siteId, visitorIds).catch((err: unknown) => this.log.warn({ err, siteId }, "heartbeat could not refresh online marks"));
      this.deps.visitors
        .siteExists(siteId)
        .then((exists) => {
          if (exists) return;
          this.sitesGone.add(siteId);
          if (!this.sitesGoneBefore.has(siteId)) return;
          for (const visitorId of visitorIds) for (const socket of this.local.get(visitorId)?.sockets ?? []) this.closeForDeletedSite(socket, {});
        })
        .catch((err: unknown) => this.log.warn({ err, siteId }, "heartbeat could not read the site"));
    }
  }

  /**
   * As for an unknown site at the upgrade: nothing more to serve on this socket, and a close
   * code of its own tells the widget not to come back (a browser never sees the 404 that its
   * next upgrade would get).
   */
  private closeForDeletedSite(socket: VisitorSocket, id: { id?: string }): void {
    if (socket.closing) return;
    this.sendTo(socket, { type: "error", code: "invalid", message: "this site no longer exists", ...id });
    socket.closing = true;
    socket.ws.close(SITE_GONE_CLOSE_CODE, "site deleted");
  }
}

/**
 * `ws` emits `headers` right before it writes the 101 response, and only for a handshake
 * it accepts: corked here, the response leaves with the welcome frame once the visitor is
 * stored (`attach` uncorks). A refused handshake is never corked; the client sees the
 * socket open when its welcome arrives, as it would a moment later otherwise.
 */
function holdHandshakeResponse(_headers: string[], req: IncomingMessage): void {
  req.socket.cork();
}

function destroyOnError(this: Duplex): void {
  this.destroy();
}

function refuse(socket: Duplex, status: number, reason: string): void {
  const body = JSON.stringify({ error: { code: reason.replace(/ /g, "_"), message: reason } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_TEXT[status] ?? "Error"}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

const STATUS_TEXT: Record<number, string> = { 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests", 503: "Service Unavailable" };

/**
 * Listeners shared by all sockets instead of closures per socket: `ws` calls them with the
 * socket as `this`, and they find its state through `find`.
 */
function socketListeners(
  find: (ws: WebSocket) => VisitorSocket | undefined,
  on: { data(socket: VisitorSocket, data: Buffer, isBinary: boolean): void; close(socket: VisitorSocket): void; error(socket: VisitorSocket, err: Error): void },
) {
  return {
    pong(this: WebSocket) {
      const socket = find(this);
      if (socket) socket.alive = true;
    },
    message(this: WebSocket, data: Buffer, isBinary: boolean) {
      const socket = find(this);
      if (socket) on.data(socket, data, isBinary);
    },
    error(this: WebSocket, err: Error) {
      const socket = find(this);
      if (socket) on.error(socket, err);
    },
    close(this: WebSocket) {
      const socket = find(this);
      if (socket) on.close(socket);
    },
  };
}

/**
 * A welcome's history went to one socket only. Alone, its ids are what every socket of the
 * visitor here has; beside others, those the others were not sent are this socket's alone.
 */
function rememberWelcomed(entry: LocalVisitor, socket: VisitorSocket, historyIds: readonly string[]): void {
  if (entry.sockets.size === 1) {
    for (const id of historyIds) rememberSent(entry, id);
    return;
  }
  const notYetLive = historyIds.filter((id) => !entry.recentMessageIds?.has(id));
  socket.welcomedIds = notYetLive.length > 0 ? new Set(notYetLive) : null;
}

/** Whether the socket's welcome history had this message (then it is forgotten: it comes live once). */
function alreadyWelcomedWith(socket: VisitorSocket, messageId: string): boolean {
  if (!socket.welcomedIds?.delete(messageId)) return false;
  if (socket.welcomedIds.size === 0) socket.welcomedIds = null;
  return true;
}

function rememberSent(entry: LocalVisitor, messageId: string): void {
  const ids = (entry.recentMessageIds ??= new Set());
  ids.add(messageId);
  // Sets iterate in insertion order: the first is the oldest.
  if (ids.size > CATCH_UP_MESSAGES) ids.delete(ids.values().next().value!);
}
