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
 * 2. once the stanza is written to ejabberd's socket, it is marked relayed (`relayed`);
 * 3. every process beats a heartbeat; a process whose heartbeat is older than `staleMs`
 *    is presumed dead: one survivor claims it (atomically, with a lease, so a survivor
 *    dying mid-way leaves it to another) and hands each of its unrelayed messages to
 *    `redeliver`, in the visitor's lane, oldest first.
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
  heartbeatMs?: number;
  staleMs?: number;
}

/** Sweeps between two cleanups of this process's own outbox index. */
const CLEANUP_EVERY_SWEEPS = 30;

export class Outbox {
  readonly processId: string;
  private readonly tracked = new Set<string>();
  private readonly log: Logger;
  private readonly beating: RepeatingTask;
  private sweeps = 0;

  constructor(private readonly deps: OutboxDeps) {
    this.processId = deps.processId;
    this.log = deps.logger.child({ module: "outbox" });
    this.beating = new RepeatingTask(() => this.sweep(), deps.heartbeatMs ?? 1000);
  }

  start(): void {
    this.beating.start({ immediately: true });
  }

  /**
   * Stops beating. The heartbeat is left to go stale rather than removed: if anything was
   * still unrelayed (ejabberd down at shutdown), a survivor relays it.
   */
  async stop(): Promise<void> {
    await this.beating.stop();
  }

  /** Called in the visitor's lane before storing a message this process will relay. */
  async track(visitorId: string): Promise<void> {
    if (this.tracked.has(visitorId)) return;
    await this.deps.store.addToOutbox(this.processId, visitorId);
    this.tracked.add(visitorId);
  }

  /** The stanza of this message was written to ejabberd's socket. */
  relayed(visitorId: string, messageId: string): void {
    this.deps.store.markRelayed(visitorId, [messageId]).catch((err: unknown) => {
      // Left in the outbox: at worst the agent gets it twice after this process dies.
      this.log.warn({ err, visitorId }, "could not mark a message relayed");
    });
  }

  /** One round: heartbeat, take over dead processes, now and then tidy our own index. */
  async sweep(): Promise<void> {
    const { store } = this.deps;
    const staleMs = this.deps.staleMs ?? 5000;
    try {
      await store.heartbeat(this.processId, this.deps.now());
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
    this.log.warn({ dead, visitors: visitors.length, redelivered }, "took over the outbox of a process that stopped beating");
  }

  /** Drops visitors with nothing left unrelayed from our index (in their lane: no append can slip in between). */
  private async cleanup(): Promise<void> {
    const { store } = this.deps;
    for (const visitorId of [...this.tracked]) {
      await this.deps.lanes.run(visitorId, async () => {
        if ((await store.unrelayed(visitorId)).some((p) => p.owner === this.processId)) return;
        await store.removeFromOutbox(this.processId, visitorId);
        this.tracked.delete(visitorId);
      });
    }
  }
}
