/**
 * Runs an async task again and again, `intervalMs` after each run ends (never two runs at
 * once, so a slow store cannot pile up work), until stopped; `stop` waits for the run in
 * progress. Used by the scheduler's sweeps and the outbox's heartbeats.
 */
export class RepeatingTask {
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private current: Promise<void> = Promise.resolve();

  constructor(
    private readonly task: () => Promise<void>,
    private readonly intervalMs: number,
  ) {}

  start({ immediately }: { immediately: boolean }): void {
    if (this.running) return;
    this.running = true;
    const loop = () => {
      if (!this.running) return;
      this.current = this.task().finally(() => {
        if (this.running) this.timer = setTimeout(loop, this.intervalMs);
      });
    };
    if (immediately) loop();
    else this.timer = setTimeout(loop, this.intervalMs);
  }

  async stop(): Promise<void> {
    this.running = false;
    clearTimeout(this.timer);
    await this.current;
  }
}
