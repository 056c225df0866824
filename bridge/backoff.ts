// Capped exponential backoff with jitter, pure: the caller passes the random number.
// Jitter spreads the reconnects of many bridge processes after an ejabberd restart.

export interface BackoffSpec {
  baseMs: number;
  maxMs: number;
}

/** Delay before retry number `attempt` (0-based): between half and all of min(max, base·2^attempt). */
export function backoffDelay(spec: BackoffSpec, attempt: number, random: number): number {
  const ceiling = Math.min(spec.maxMs, spec.baseMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (ceiling / 2) * random);
}
