// Reconnect delays: capped exponential backoff with jitter, so a bridge restart is not
// met by every visitor reconnecting in the same instant, and a dead server is not
// hammered. Pure: the random source is passed in.

import { SERVICE_RESTART_CLOSE_CODE, SITE_GONE_CLOSE_CODE } from "./protocol.js";

export interface BackoffPolicy {
  baseMs: number;
  capMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { baseMs: 1000, capMs: 30_000 };

/**
 * Closes in a row without a welcome after which the widget rests. A site that was deleted
 * (404) or a page whose origin the site does not allow (403) is refused at the upgrade,
 * which a browser reports only as a failed connection (1006), like a network failure: it
 * cannot tell them apart, but it can stop hammering a bridge that keeps refusing it.
 */
export const REST_AFTER_FAILURES = 6;
/** While resting, one attempt this often (jittered down to 80 %), besides those the page triggers (visible again, back online). */
export const REST_INTERVAL_MS = 5 * 60_000;

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

/**
 * What to do after a socket closed: `retry` soon, `rest` (the chat is unavailable; try
 * again rarely), or `stop` for good (the site is gone). `failures` counts the closes since
 * the last welcome, this one included; a restart (1012) is not counted by the caller.
 */
export type ReconnectPlan = { kind: "retry"; delayMs: number } | { kind: "rest"; delayMs: number } | { kind: "stop" };

export function planReconnect(closeCode: number | undefined, failures: number, random: () => number): ReconnectPlan {
  if (closeCode === SITE_GONE_CLOSE_CODE) return { kind: "stop" };
  if (closeCode === SERVICE_RESTART_CLOSE_CODE) return { kind: "retry", delayMs: restartDelay(random) };
  if (failures >= REST_AFTER_FAILURES) return { kind: "rest", delayMs: REST_INTERVAL_MS * (0.8 + 0.2 * random()) };
  return { kind: "retry", delayMs: backoffDelay(failures - 1, random) };
}
