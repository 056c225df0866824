// Token bucket, pure: the caller passes the clock. "5/s burst 20" means a burst of 20
// and 5 per second sustained are always accepted (CONTRACT §2).

export interface RateSpec {
  perSecond: number;
  burst: number;
}

const SECONDS_PER_UNIT = new Map(Object.entries({ s: 1, sec: 1, second: 1, m: 60, min: 60, minute: 60, h: 3600, hour: 3600 }));

/** "5/s burst 20", "30/min", "100/h burst 10"; without a burst, one second's worth (at least 1). */
export function parseRateSpec(spec: string): RateSpec | null {
  const match = /^\s*(\d+(?:\.\d+)?)\s*\/\s*([a-z]+)(?:\s+burst\s+(\d+))?\s*$/i.exec(spec);
  const seconds = match && SECONDS_PER_UNIT.get(match[2]!.toLowerCase());
  if (!match || !seconds) return null;
  const perSecond = Number(match[1]) / seconds;
  const burst = match[3] === undefined ? Math.max(1, Math.ceil(perSecond)) : Number(match[3]);
  if (!(perSecond > 0) || !(burst >= 1)) return null;
  return { perSecond, burst };
}

/**
 * Messages sent at exactly the sustained rate do not arrive exactly spaced (timers, the
 * network): one may come a little early. Up to this much early is still accepted, so that
 * "always accepted" holds for a real client; it never adds more than one message.
 */
const EARLY_TOLERANCE_SECONDS = 0.05;

export class TokenBucket {
  private tokens: number;
  private updatedAt: number;

  constructor(
    private readonly spec: RateSpec,
    now: number,
  ) {
    this.tokens = spec.burst;
    this.updatedAt = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    const elapsed = Math.max(0, now - this.updatedAt) / 1000;
    this.tokens = Math.min(this.spec.burst, this.tokens + elapsed * this.spec.perSecond);
    this.updatedAt = now;
    if (this.tokens < 1 - Math.min(1, this.spec.perSecond * EARLY_TOLERANCE_SECONDS)) return false;
    this.tokens -= 1;
    return true;
  }
}
