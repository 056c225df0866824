import type { Logger } from "./logger.js";
import { RepeatingTask } from "./repeating-task.js";
import type { TimerStore } from "./store/types.js";

/**
 * Runs durable timers (in the store) on whichever process finds them due first. A handler
 * returns when its timer should fire again, or nothing when it is done; a handler that
 * throws (or a process that dies inside one) leaves the timer leased, so it fires again
 * after the lease: at least once, never lost.
 *
 * Timer ids are `{kind}:{key}`; each kind has one handler.
 */
export type TimerHandler = (key: string, now: number) => Promise<{ retryAt: number } | void>;

export interface SchedulerOptions {
  store: TimerStore;
  now(): number;
  logger: Logger;
  intervalMs?: number;
  leaseMs?: number;
}

export class Scheduler {
  private readonly handlers = new Map<string, TimerHandler>();
  private readonly log: Logger;
  private readonly sweeping: RepeatingTask;

  constructor(private readonly options: SchedulerOptions) {
    this.log = options.logger.child({ module: "scheduler" });
    this.sweeping = new RepeatingTask(() => this.tick(), options.intervalMs ?? 250);
  }

  on(kind: string, handler: TimerHandler): void {
    this.handlers.set(kind, handler);
  }

  async schedule(kind: string, key: string, dueAt: number): Promise<void> {
    await this.options.store.setTimer(`${kind}:${key}`, dueAt);
  }

  async cancel(kind: string, key: string): Promise<void> {
    await this.options.store.clearTimer(`${kind}:${key}`);
  }

  start(): void {
    this.sweeping.start({ immediately: false });
  }

  async stop(): Promise<void> {
    await this.sweeping.stop();
  }

  /** Fires every due timer once; exposed so that tests and shutdown can drive it. */
  async tick(): Promise<void> {
    const { store } = this.options;
    let due: string[];
    const now = this.options.now();
    const leasedUntil = now + (this.options.leaseMs ?? 30_000);
    try {
      due = await store.takeDueTimers(now, leasedUntil - now, 100);
    } catch (err) {
      this.log.warn({ err }, "could not read timers");
      return;
    }
    await Promise.all(due.map((id) => this.fire(id, leasedUntil)));
  }

  private async fire(id: string, leasedUntil: number): Promise<void> {
    const colon = id.indexOf(":");
    const handler = this.handlers.get(id.slice(0, colon));
    if (!handler) {
      this.log.warn({ id }, "timer of an unknown kind dropped");
      await this.options.store.clearTimer(id);
      return;
    }
    try {
      const result = await handler(id.slice(colon + 1), this.options.now());
      // Set again while its handler ran (e.g. a visitor left meanwhile): that time wins.
      await this.options.store.finishTimer(id, leasedUntil, result?.retryAt);
    } catch (err) {
      this.log.warn({ err, id }, "timer handler failed; it will fire again after its lease");
    }
  }
}
