// Reconnect delays: capped exponential backoff with jitter, so a bridge restart is not
// met by every visitor reconnecting in the same instant, and a dead server is not
// hammered. Pure: the random source is passed in.

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, capMs: 30_000 };

/**
 * Delay before reconnect attempt `attempt` (0 for the first retry after a drop).
 * "Equal jitter": half the exponential step is fixed, half random, so the delay grows
 * reliably yet two visitors dropped together spread over half the window.
 */
export function backoffDelay(attempt: number, random: () => number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const ceiling = Math.min(policy.capMs, policy.baseMs * Math.pow(2, Math.max(0, attempt)));
  return ceiling / 2 + (random() * ceiling) / 2;
}

/**
 * Delay after the bridge closed with 1012 (service restart): reconnect promptly — the
 * other processes or the restarted one are ready — but spread the herd over `windowMs`.
 */
export function restartDelay(random: () => number, windowMs = 1000): number {
  return random() * windowMs;
}
