/**
 * Values kept for `ttlMs` after they were loaded, then loaded again on the next read. The
 * value is the load's promise, so concurrent reads share one load; a failed load is not
 * kept. Entries nobody reads any more are swept once per `ttlMs`: the cache holds only
 * what was read in the last two periods, however many keys are tried (ids of sites that
 * never existed included).
 */
export class ExpiringCache<V> {
  private readonly entries = new Map<string, { at: number; value: Promise<V> }>();
  private sweptAt = Number.NEGATIVE_INFINITY;

  /** `now` is first called on the first read (an owner may build its clock after its fields). */
  constructor(private readonly options: { ttlMs: number; now(): number }) {}

  get(key: string, load: () => Promise<V>): Promise<V> {
    const now = this.options.now();
    this.sweep(now);
    const entry = this.entries.get(key);
    if (entry && now - entry.at < this.options.ttlMs) return entry.value;
    const value = load();
    this.entries.set(key, { at: now, value });
    value.catch(() => {
      if (this.entries.get(key)?.value === value) this.entries.delete(key);
    });
    return value;
  }

  delete(key: string): void {
    this.entries.delete(key);
  }

  get size(): number {
    return this.entries.size;
  }

  private sweep(now: number): void {
    if (now - this.sweptAt < this.options.ttlMs) return;
    this.sweptAt = now;
    for (const [key, entry] of this.entries) if (now - entry.at >= this.options.ttlMs) this.entries.delete(key);
  }
}
