import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { promisify } from "node:util";
import { waitUntil } from "./wait.js";

const execFileAsync = promisify(execFile);

/**
 * One daemonized redis-server on 127.0.0.1:`port` with everything in `dir`
 * (data, pid file, log), as in EJABBERD.md "Private Redis". Resolves with its
 * pid once it answers PING (after an AOF reload on restart, not before).
 */
export async function launchRedisServer(port: number, dir: string, extraArgs: string[]): Promise<number> {
  const pidFile = join(dir, "redis.pid");
  const logFile = join(dir, "redis.log");
  await execFileAsync("redis-server", [
    ...["--port", String(port)],
    ...["--bind", "127.0.0.1"],
    ...["--dir", dir],
    ...["--save", ""],
    ...["--pidfile", pidFile],
    ...["--logfile", logFile],
    ...["--daemonize", "yes"],
    ...extraArgs,
  ]);
  try {
    await waitUntil(`redis-server on port ${port} to answer PING`, async () => (await redisCli(port, "PING")) === "PONG", {
      timeoutMs: 15_000,
    });
    return Number((await readFile(pidFile, "utf8")).trim());
  } catch (err) {
    const log = await readFile(logFile, "utf8").catch(() => "");
    throw new Error(`redis-server on port ${port} did not start; log tail:\n${log.split("\n").slice(-15).join("\n")}`, {
      cause: err,
    });
  }
}

/** Runs one redis-cli command and returns its trimmed output ("" if refused). */
export async function redisCli(port: number, ...command: string[]): Promise<string> {
  const { stdout } = await execFileAsync("redis-cli", ["-h", "127.0.0.1", "-p", String(port), ...command]);
  return stdout.trim();
}
