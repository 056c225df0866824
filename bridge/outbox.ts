import type { KeyedQueue } from "./keyed-queue.js";
import type { Logger } from "./logger.js";
import { RepeatingTask } from "./repeating-task.js";
import type { OutboxStore } from "./store/types.js";

/**
 * The durable outbox of visitor → agent messages (CONTRACT §6: a `kill -9` loses no
 * acknowledged message).
 *
 * A visitor message is acknowledged once stored, but reaches ejabberd a moment later, or
 * much later when ejabberd is unreachable and the stanza waits in the XMPP link's memory
 * queue. A process killed in between would lose it. So:
 * 1. before storing, the process records itself in the store as a possible owner of the
 *    visitor's unrelayed messages (`track`), and the message is stored with its owner;
 * 2. once the stanza is written to ejabberd's socket (`written`) and ejabberd has shown that
 *    it routed it (`confirmRouted`, below), it is marked relayed; a stanza dropped from the
 *    XMPP link's full queue during a long outage (`dropped`), or written but unconfirmed
 *    when the component stream broke (`linkLost`), is sent again once ejabberd is back
 *    (`resendDropped`);
 * 3. every process beats a heartbeat; a process whose heartbeat is older than `staleMs`
 *    is presumed dead: one survivor claims it (atomically, with a lease, so a survivor
 *    dying mid-way leaves it to another) and hands each of its unrelayed messages to
 *    `redeliver`, in the visitor's lane, oldest first.
 *
 * Written is not routed: XEP-0114 has no acknowledgements, and ejabberd 23.01, stopping,
 * shuts its session manager down before it closes component streams, so messages it reads
 * in between vanish without an error (measured: 1–4 acknowledged messages lost in 5 of 6
 * graceful stops at 330 msg/s). So after writing, the outbox sends an XEP-0199 ping to the
 * agent's bare JID, which ejabberd answers through the same session manager, after every
 * stanza written before it: an answer confirms them all.
 *
 * What this does not cover, by XEP-0114's design: a stanza written to the socket of a
 * process that dies before ejabberd reads it is in the kernel's buffer, which the kernel
 * still delivers on close; and a redelivered message may reach the agent twice (when the
 * process died between writing and marking) or after a newer message of the same visitor
 * sent meanwhile through another process. Redelivered stanzas keep their id and carry a
 * XEP-0203 delay, so the agent's client shows when the visitor wrote them.
 */
export interface OutboxDeps {
  store: OutboxStore;
  processId: string;
  lanes: KeyedQueue;
  now(): number;
  logger: Logger;
  /** Relays the given unrelayed messages of a visitor (they are oldest first). */
  redeliver(visitorId: string, messageIds: string[]): Promise<void>;
  /**
   * Whether ejabberd answered a ping to `jid` sent after everything written so far (an
   * error answer counts: it was routed); false on no answer in time or a broken stream.
   * Without it, a written message counts as relayed.
   */
  confirmRouted?(jid: string): Promise<boolean>;
  heartbeatMs?: number;
  staleMs?: number;
}

/** Sweeps between two cleanups of this process's own outbox index. */
const CLEANUP_EVERY_SWEEPS = 30;
/**
 * Relayed marks are written in batches, one command per interval (per visitor on Redis
 * Cluster) instead of one per message. The price: a process killed within this interval of relaying a message
 * leaves it to be relayed again by a survivor (the agent may see it twice).
 */
const RELAYED_FLUSH_MS = 250;
/** A visitor leaves this process's outbox index after this long without a message. */
const TRACKED_QUIET_MS = 5 * 60_000;
/**
 * Written messages wait this long for the ping that confirms them, so that one ping covers
 * all that a busy process writes meanwhile (at most ≈ 20 pings a second). What is
 * unconfirmed when the stream breaks is sent again: the agent may see it twice.
 */
const CONFIRM_EVERY_MS = 50;

interface Written {
  visitorId: string;
  messageId: string;
  agentJid: string;
}

export class Outbox {
  readonly processId: string;
  /** Visitors this process is recorded as a possible owner for, with when it last stored one of their messages. */
  private readonly tracked = new Map<string, number>();
  private readonly log: Logger;
  /** The heartbeat, on a loop of its own (see the constructor). */
  private readonly beating: RepeatingTask;
  /** Takeovers of dead processes, and now and then a cleanup of our own index. */
  private readonly sweeping: RepeatingTask;
  private sweeps = 0;
  private readonly staleMs: number;
  private relayedBatch = new Map<string, string[]>();
  /** Messages handed to the XMPP link and not yet written or dropped, as `visitorId|messageId`. */
  private readonly inFlight = new Set<string>();
  private relayedFlush: NodeJS.Timeout | null = null;
  /** Visitor messages dropped from the XMPP link's full queue, per visitor, oldest first. */
  private droppedByVisitor = new Map<string, string[]>();
  /** Whether this process's heartbeat has been recorded once (see `sweep`). */
  private registered = false;
  /** Written, oldest first, and not yet confirmed routed; `checking` is what the ping in flight covers. */
  private unconfirmed: Written[] = [];
  private checking: Written[] = [];
  private confirmTimer: NodeJS.Timeout | null = null;

  constructor(private readonly deps: OutboxDeps) {
    this.processId = deps.processId;
    this.staleMs = deps.staleMs ?? 5000;
    this.log = deps.logger.child({ module: "outbox" });
    // Two loops: a takeover can take seconds (it routes the dead process's chats and waits
    // for their roster changes, which wait for ejabberd's answers), and a heartbeat waiting
    // behind it would make this live process look dead: a survivor would relay again what
    // it had just relayed, and the agents would see it twice.
    this.beating = new RepeatingTask(() => this.beat(), deps.heartbeatMs ?? 1000);
    this.sweeping = new RepeatingTask(() => this.takeOverDead(), deps.heartbeatMs ?? 1000);
  }

  start(): void {
    this.beating.start({ immediately: true });
    this.sweeping.start({ immediately: true });
  }

  /**
   * Stops beating. The heartbeat is left to go stale rather than removed: if anything was
   * still unrelayed (ejabberd down at shutdown), a survivor relays it.
   */
  async stop(): Promise<void> {
    await Promise.all([this.beating.stop(), this.sweeping.stop()]);
    if (this.confirmTimer) clearTimeout(this.confirmTimer);
    await this.flushRelayed();
  }

  /** Those of `processIds` whose heartbeat is stale or gone: dead (or cut off long enough to count as dead). */
  async deadAmong(processIds: readonly string[]): Promise<string[]> {
    const beats = await this.deps.store.lastHeartbeats(processIds);
    const staleBefore = this.deps.now() - this.staleMs;
    return processIds.filter((_, i) => beats[i] === null || beats[i]! < staleBefore);
  }

  /** Called in the visitor's lane before storing a message this process will relay. */
  async track(visitorId: string): Promise<void> {
    if (!this.tracked.has(visitorId)) await this.deps.store.addToOutbox(this.processId, visitorId);
    this.tracked.set(visitorId, this.deps.now());
  }

  /**
   * Whether this process is relaying the message (its stanza waits to be written, e.g. for
   * ejabberd to come back) or relayed it and has not written that down yet (see RELAYED_FLUSH_MS).
   */
  relayingHere(visitorId: string, messageId: string): boolean {
    return this.inFlight.has(`${visitorId}|${messageId}`) || (this.relayedBatch.get(visitorId)?.includes(messageId) ?? false);
  }

  /** The stanza of this message was handed to the XMPP link; `written` or `dropped` follows. */
  relaying(visitorId: string, messageId: string): void {
    this.inFlight.add(`${visitorId}|${messageId}`);
  }

  /** The stanza of this message, to `agentJid`, was written to ejabberd's socket. */
  written(visitorId: string, messageId: string, agentJid: string): void {
    if (!this.deps.confirmRouted) return this.relayed(visitorId, messageId);
    this.unconfirmed.push({ visitorId, messageId, agentJid });
    this.confirmTimer ??= setTimeout(() => void this.confirm(), CONFIRM_EVERY_MS);
  }

  /**
   * The component stream broke: what ejabberd has not confirmed may be lost (see above),
   * and is sent again once it is back, like a dropped stanza.
   */
  linkLost(): void {
    const lost = [...this.checking, ...this.unconfirmed];
    this.checking = [];
    this.unconfirmed = [];
    for (const { visitorId, messageId } of lost) this.dropped(visitorId, messageId);
  }

  private async confirm(): Promise<void> {
    const batch = (this.checking = this.unconfirmed);
    this.unconfirmed = [];
    const last = batch.at(-1);
    const routed = last ? await this.deps.confirmRouted!(last.agentJid).catch(() => false) : true;
    // The stream broke meanwhile: `linkLost` took the batch over.
    if (this.checking === batch) {
      this.checking = [];
      if (routed) for (const { visitorId, messageId } of batch) this.relayed(visitorId, messageId);
      else this.unconfirmed = [...batch, ...this.unconfirmed];
    }
    this.confirmTimer = this.unconfirmed.length > 0 ? setTimeout(() => void this.confirm(), CONFIRM_EVERY_MS) : null;
  }

  private relayed(visitorId: string, messageId: string): void {
    this.inFlight.delete(`${visitorId}|${messageId}`);
    const ids = this.relayedBatch.get(visitorId);
    if (ids) ids.push(messageId);
    else this.relayedBatch.set(visitorId, [messageId]);
    this.relayedFlush ??= setTimeout(() => void this.flushRelayed(), RELAYED_FLUSH_MS).unref();
  }

  /**
   * The stanza of this message never reached ejabberd: the link dropped it from its full
   * queue. It stays unrelayed in the store under this (live) process, where no survivor
   * looks, so this process sends it again itself (`resendDropped`).
   */
  dropped(visitorId: string, messageId: string): void {
    this.inFlight.delete(`${visitorId}|${messageId}`);
    const ids = this.droppedByVisitor.get(visitorId);
    if (ids) ids.push(messageId);
    else this.droppedByVisitor.set(visitorId, [messageId]);
  }

  /**
   * Once ejabberd is back: relays the dropped messages, each visitor's in their lane, oldest
   * first (they arrive after newer ones that stayed queued, with their original time as a
   * XEP-0203 delay). Those dropped were never written; those lost with the stream may have
   * reached the agent already, who then sees them twice (same id and origin-id, delayed).
   */
  async resendDropped(): Promise<void> {
    const dropped = this.droppedByVisitor;
    if (dropped.size === 0) return;
    this.droppedByVisitor = new Map();
    let resent = 0;
    for (const [visitorId, ids] of dropped) {
      resent += ids.length;
      await this.deps.lanes.run(visitorId, () => this.deps.redeliver(visitorId, ids)).catch((err: unknown) => {
        // Tried again at the next connection (and relayed by a survivor if this process dies).
        for (const id of ids) this.dropped(visitorId, id);
        this.log.warn({ err, visitorId }, "could not resend visitor messages dropped while ejabberd was unreachable");
      });
    }
    this.log.warn({ visitors: dropped.size, resent }, "resent visitor messages dropped while ejabberd was unreachable");
  }

  private async flushRelayed(): Promise<void> {
    if (this.relayedFlush) clearTimeout(this.relayedFlush);
    this.relayedFlush = null;
    const batch = this.relayedBatch;
    this.relayedBatch = new Map();
    if (batch.size === 0) return;
    await this.deps.store.markManyRelayed(batch).catch((err: unknown) => {
      // Left in the outbox: at worst the agent gets them twice after this process dies.
      this.log.warn({ err, visitors: batch.size }, "could not mark messages relayed");
    });
  }


  /** One round of both loops: heartbeat, then take over dead processes (and now and then tidy our own index). */
  async sweep(): Promise<void> {
    await this.beat();
    await this.takeOverDead();
  }

  private async beat(): Promise<void> {
    try {
      const known = await this.deps.store.heartbeat(this.processId, this.deps.now());
      if (!known && this.registered) await this.reindex();
      this.registered = true;
    } catch (err) {
      this.log.warn({ err }, "outbox heartbeat failed; retrying");
    }
  }

  private async takeOverDead(): Promise<void> {
    const { store } = this.deps;
    const { staleMs } = this;
    try {
      for (;;) {
        const now = this.deps.now();
        const dead = await store.claimStaleProcess(now - staleMs, now);
        if (!dead) break;
        if (dead === this.processId) continue; // we were too slow to beat (the claim refreshed it)
        await this.takeOver(dead);
      }
      if (++this.sweeps % CLEANUP_EVERY_SWEEPS === 0) await this.cleanup();
    } catch (err) {
      this.log.warn({ err }, "outbox sweep failed; retrying");
    }
  }

  /**
   * Another process took this one for dead (it stalled, or could not reach the store, for
   * longer than `staleMs`) and forgot its outbox index. The visitors tracked here go back
   * into it: `track` adds a visitor only once, so a later crash of this process would
   * otherwise leave their unrelayed messages where nobody looks.
   */
  private async reindex(): Promise<void> {
    this.log.warn({ visitors: this.tracked.size }, "taken for dead by another process; rebuilding the outbox index");
    await Promise.all([...this.tracked.keys()].map((visitorId) => this.deps.store.addToOutbox(this.processId, visitorId)));
  }

  private async takeOver(dead: string): Promise<void> {
    const { store } = this.deps;
    const visitors = await store.outboxVisitors(dead);
    let redelivered = 0;
    for (const visitorId of visitors) {
      await this.deps.lanes.run(visitorId, async () => {
        const mine = (await store.unrelayed(visitorId)).filter((p) => p.owner === dead).map((p) => p.messageId);
        if (mine.length === 0) return;
        redelivered += mine.length;
        await this.deps.redeliver(visitorId, mine);
      });
    }
    await store.forgetProcess(dead);
    // Every process stopped cleanly leaves its heartbeat to go stale (see `stop`), so a
    // takeover with nothing to relay follows each restart: only a relay is worth a warning
    // (the agent may see those messages twice).
    if (redelivered > 0) this.log.warn({ dead, visitors: visitors.length, redelivered }, "took over the outbox of a process that stopped beating; relayed its messages");
    else this.log.info({ dead, visitors: visitors.length }, "forgot a process that stopped beating; it left nothing to relay");
  }

  /**
   * Drops visitors quiet for a while, with nothing left unrelayed, from our index (in their
   * lane: no append can slip in between). Visitors still chatting stay: dropping and
   * re-adding them would cost two commands per message.
   */
  private async cleanup(): Promise<void> {
    const { store } = this.deps;
    const quietSince = this.deps.now() - TRACKED_QUIET_MS;
    for (const [visitorId, lastTracked] of [...this.tracked]) {
      if (lastTracked > quietSince) continue;
      await this.deps.lanes.run(visitorId, async () => {
        if ((await store.unrelayed(visitorId)).some((p) => p.owner === this.processId)) return;
        await store.removeFromOutbox(this.processId, visitorId);
        this.tracked.delete(visitorId);
      });
    }
  }
}
