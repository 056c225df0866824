import { fork, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The bridge under test as a child process (bench/bridge-process.ts, bundled to
 * .tmp/bench/bridge-process.mjs on the built dist/bridge), started with --expose-gc, and
 * the IPC requests the benches make of it: memory and event-loop readings, a forced GC.
 * Shared by the benchmark (main.ts) and the memory soak (soak.ts).
 */

/** The checkout, from the bundle's place in .tmp/bench/. */
const ROOT = resolve(fileURLToPath(import.meta.url), "..", "..", "..");

/**
 * `promise`, or what `onTimeout` gives after `ms`; the timer is cleared once either settles
 * (a bare `sleep` in a race would keep the bench alive for its whole length after the end).
 */
export function within<T>(promise: Promise<T>, ms: number, onTimeout: () => T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<T>((resolve, reject) => {
    timer = setTimeout(() => {
      try {
        resolve(onTimeout());
      } catch (err) {
        reject(err);
      }
    }, ms);
  });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

export class BridgeChild {
  private nextId = 0;
  private readonly waiting = new Map<number, (v: any) => void>();
  private exited: Promise<unknown>;

  private constructor(
    readonly proc: ChildProcess,
    readonly httpUrl: string,
  ) {
    this.exited = once(proc, "exit");
    proc.on("message", (m: { id?: number }) => {
      if (m.id !== undefined) this.waiting.get(m.id)?.(m);
      this.waiting.delete(m.id!);
    });
  }

  get pid(): number {
    return this.proc.pid!;
  }
  get port(): number {
    return Number(new URL(this.httpUrl).port);
  }

  static async start(env: Record<string, string>, opts: { cpuProfDir?: string; maxOldSpaceMb: number; logFd: number }): Promise<BridgeChild> {
    const execArgv = ["--expose-gc", `--max-old-space-size=${opts.maxOldSpaceMb}`];
    if (opts.cpuProfDir) execArgv.push("--cpu-prof", `--cpu-prof-dir=${opts.cpuProfDir}`);
    // e.g. "--perf-basic-prof-only-functions" (symbols for `perf record`) or "--trace-deopt"
    if (process.env.BENCH_BRIDGE_NODE_ARGS) execArgv.push(...process.env.BENCH_BRIDGE_NODE_ARGS.split(" ").filter(Boolean));
    const proc = fork(join(ROOT, ".tmp", "bench", "bridge-process.mjs"), [], {
      execArgv,
      env: { ...process.env, ...env },
      stdio: ["ignore", opts.logFd, opts.logFd, "ipc"],
    });
    const started = Promise.race([
      once(proc, "message").then(([m]) => m as { kind: string; httpUrl: string }),
      once(proc, "exit").then(() => {
        throw new Error("bridge process exited during start");
      }),
    ]);
    const ready = await within(started, 30_000, () => {
      throw new Error("bridge process not ready after 30 s");
    }).catch((err: unknown) => {
      proc.kill("SIGKILL");
      throw err;
    });
    return new BridgeChild(proc, ready.httpUrl);
  }

  /** `snapshot` writes a V8 heap snapshot of the bridge to `file` (it collects garbage first). */
  request(kind: "stats" | "gc" | "reset" | "snapshot", file?: string): Promise<any> {
    const id = ++this.nextId;
    const answered = Promise.race([
      new Promise((resolve) => {
        this.waiting.set(id, resolve);
        this.proc.send({ id, kind, ...(file ? { file } : {}) });
      }),
      this.exited.then(() => {
        throw new Error(`the bridge process exited (see bench/results/bridge.log)`);
      }),
    ]);
    return within(answered, kind === "snapshot" ? 120_000 : 30_000, () => {
      throw new Error(`the bridge process did not answer "${kind}" within 30 s`);
    });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGTERM");
    const timer = setTimeout(() => this.proc.kill("SIGKILL"), 30_000);
    await this.exited;
    clearTimeout(timer);
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill("SIGKILL");
    await this.exited;
  }
}
