/**
 * Everything a test client received, in order, and a way to wait for the next item that
 * matches: tests wait on arrivals, never on sleeps. Items taken by `next` are consumed,
 * so a test can expect "the message, then the reply" without matching an item twice.
 */
export class Inbox<T> {
  readonly all: T[] = [];
  private unread: T[] = [];
  private waiters: { match: (item: T) => boolean; resolve: (item: T) => void }[] = [];

  push(item: T): void {
    this.all.push(item);
    const waiter = this.waiters.find((w) => w.match(item));
    if (waiter) {
      this.waiters = this.waiters.filter((w) => w !== waiter);
      waiter.resolve(item);
      return;
    }
    this.unread.push(item);
  }

  next(match: (item: T) => boolean, what: string, timeoutMs = 15_000): Promise<T> {
    const index = this.unread.findIndex(match);
    if (index !== -1) return Promise.resolve(this.unread.splice(index, 1)[0]!);
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; unread: ${JSON.stringify(this.unread.map((item) => (typeof item === "object" && item !== null && !("attrs" in item) ? item : String(item)))).slice(0, 2000)}`));
      }, timeoutMs);
      const done = (item: T) => {
        clearTimeout(timer);
        resolve(item);
      };
      this.waiters.push({ match, resolve: done });
    });
  }

  /** Items not consumed by `next` that match. */
  pending(match: (item: T) => boolean = () => true): T[] {
    return this.unread.filter(match);
  }
}
