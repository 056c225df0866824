import { readFileSync } from "node:fs";

/**
 * Polls `check` until it returns true, or fails after `timeoutMs`. For
 * readiness of external processes, which emit no event we could wait on;
 * in tests of our own code, wait on events instead.
 */
export async function waitUntil(
  what: string,
  check: () => boolean | Promise<boolean>,
  { timeoutMs = 30_000, intervalMs = 20 }: { timeoutMs?: number; intervalMs?: number } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() >= deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`, { cause: lastError });
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * True while the process runs. Daemons are reparented to init, which may be
 * slow to reap them: a zombie counts as gone (signal 0 alone would say alive).
 */
export function isAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return false;
  }
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z";
}

/** Sends `signal` to `pid` (if still there) and waits until it is gone. */
export async function signalAndWait(pid: number, signal: NodeJS.Signals, timeoutMs = 30_000): Promise<void> {
  try {
    process.kill(pid, signal);
  } catch {
    return; // already gone
  }
  await waitUntil(`pid ${pid} to exit after ${signal}`, () => !isAlive(pid), { timeoutMs, intervalMs: 10 });
}
