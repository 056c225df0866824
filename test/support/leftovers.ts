import { rmSync } from "node:fs";
import { afterAll } from "vitest";

/**
 * Safety net for servers a test file forgot to stop, or never reached its
 * afterAll for: SIGKILL what still runs and remove the temp dirs.
 *
 * Two triggers, because vitest ends a worker without a process 'exit' event
 * (checked: a leaked server survived with only the 'exit' hook):
 * - a file-level afterAll, registered when a test file first imports this
 *   module, so it runs after that file's own hooks;
 * - process 'exit', for scripts that use the helpers outside vitest.
 * Both are synchronous (rmSync, SIGKILL: nothing to wait for). A worker that
 * is itself SIGKILLed runs neither; `ps aux | grep -E 'beam|redis-server'`
 * then finds the leftovers.
 */
export interface Leftover {
  pids(): number[];
  dirs: string[];
}

const pending = new Set<Leftover>();

/** Tracks `leftover` until the returned function is called (after a clean stop). */
export function trackLeftover(leftover: Leftover): () => void {
  pending.add(leftover);
  return () => pending.delete(leftover);
}

function removeLeftovers(): void {
  for (const leftover of pending) {
    for (const pid of leftover.pids()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const dir of leftover.dirs) rmSync(dir, { recursive: true, force: true });
  }
  pending.clear();
}

if (process.env.VITEST) afterAll(removeLeftovers);
process.once("exit", removeLeftovers);
