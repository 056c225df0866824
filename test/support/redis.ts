import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { trackLeftover } from "./leftovers.js";
import { freePort, retryIfPortTaken } from "./ports.js";
import { launchRedisServer } from "./redis-process.js";
import { signalAndWait } from "./wait.js";

/**
 * A private redis-server for one test file: its own port and temp dir,
 * AOF on by default (appendfsync everysec, as in production).
 *
 *   const redis = await startRedis();   // beforeAll
 *   new Redis(redis.url) ...
 *   await redis.destroy();              // afterAll (stop() also works)
 *
 * If a test file never reaches its afterAll, ./leftovers.ts kills the server
 * and removes its dir after the file's last hook.
 */
export interface PrivateRedis {
  /** redis://127.0.0.1:<port> */
  url: string;
  port: number;
  dir: string;
  /** The server process while running, else null. */
  pid: number | null;
  /** SIGTERM: Redis fsyncs the AOF and exits; start() finds the data again. */
  stop(): Promise<void>;
  /** Starts again after stop()/kill(): same port, same dir. */
  start(): Promise<void>;
  /** SIGKILL, like a crash: with AOF everysec up to ~1 s of writes is lost. */
  kill(): Promise<void>;
  /** Kills the server if running and removes its dir. Idempotent. */
  destroy(): Promise<void>;
}

export function startRedis(opts: { appendonly?: boolean } = {}): Promise<PrivateRedis> {
  return retryIfPortTaken(() => startOnFreePort(opts));
}

async function startOnFreePort(opts: { appendonly?: boolean }): Promise<PrivateRedis> {
  const dir = await mkdtemp(join(tmpdir(), "parley-redis-"));
  const server = new RedisProcess(await freePort(), dir, opts.appendonly ?? true);
  try {
    await server.start();
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

class RedisProcess implements PrivateRedis {
  readonly url: string;
  pid: number | null = null;
  private readonly untrack: () => void;

  constructor(
    readonly port: number,
    readonly dir: string,
    private readonly appendonly: boolean,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
    this.untrack = trackLeftover({ pids: () => (this.pid === null ? [] : [this.pid]), dirs: [dir] });
  }

  async start(): Promise<void> {
    const persistence = this.appendonly ? ["--appendonly", "yes", "--appendfsync", "everysec"] : ["--appendonly", "no"];
    this.pid = await launchRedisServer(this.port, this.dir, persistence);
  }

  async stop(): Promise<void> {
    await this.signal("SIGTERM");
  }

  async kill(): Promise<void> {
    await this.signal("SIGKILL");
  }

  async destroy(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
    this.untrack();
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    if (this.pid === null) return;
    await signalAndWait(this.pid, signal);
    this.pid = null;
  }
}
