/**
 * Coalesces the online marks of visitors whose sessions start in the same turn of the
 * event loop into one write per site: at a thousand new sessions a second, one sorted-set
 * update per turn instead of one per session. Each caller learns whether its mark was
 * written.
 */
export class OnlineMarkBatch {
  private pending = new Map<string, { visitorIds: string[]; until: number }>();
  private flushed: Promise<void> | null = null;

  constructor(private readonly write: (siteId: string, visitorIds: readonly string[], until: number) => Promise<void>) {}

  mark(siteId: string, visitorId: string, until: number): Promise<void> {
    const batch = this.pending.get(siteId);
    if (batch) {
      batch.visitorIds.push(visitorId);
      batch.until = Math.max(batch.until, until);
    } else {
      this.pending.set(siteId, { visitorIds: [visitorId], until });
    }
    this.flushed ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => this.flush());
    return this.flushed;
  }

  private async flush(): Promise<void> {
    const batches = this.pending;
    this.pending = new Map();
    this.flushed = null;
    await Promise.all([...batches].map(([siteId, { visitorIds, until }]) => this.write(siteId, visitorIds, until)));
  }
}
