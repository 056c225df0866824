import { rmSync } from "node:fs";

/**
 * Last-resort cleanup when a test file forgets to stop what it started, or
 * fails before its afterAll: on process exit, SIGKILL the servers still
 * running and remove their temp dirs. 'exit' handlers must be synchronous,
 * hence SIGKILL (nothing to wait for) and rmSync. A worker that is itself
 * SIGKILLed runs no handler; then only `ps aux | grep -E 'beam|redis-server'`
 * finds the leftovers.
 */
export interface ExitCleanup {
  pids(): number[];
  dirs: string[];
}

const pending = new Set<ExitCleanup>();
let installed = false;

export function cleanUpOnExit(entry: ExitCleanup): () => void {
  if (!installed) {
    installed = true;
    process.once("exit", () => {
      for (const item of pending) killAndRemove(item);
    });
  }
  pending.add(entry);
  return () => pending.delete(entry);
}

function killAndRemove(item: ExitCleanup): void {
  for (const pid of item.pids()) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  for (const dir of item.dirs) rmSync(dir, { recursive: true, force: true });
}
