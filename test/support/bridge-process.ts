import { spawn, type ChildProcess } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";
import { trackLeftover } from "./leftovers.js";
import { freePort } from "./ports.js";
import { waitUntil } from "./wait.js";

/**
 * Parley bridges as separate OS processes (`node cli.mjs`, the real `parley` entry point),
 * so that a test can `kill -9` one or SIGTERM it and read its exit code.
 *
 * The entry is bundled from the current sources with esbuild (≈ 0.2 s) instead of relying
 * on `dist/` being fresh; npm packages stay external and resolve from the repository's
 * node_modules, since the bundle lives in `.tmp/` inside it.
 *
 *   const entry = await bundleBridge();
 *   const bridge = await startBridgeProcess(entry, env);   // resolves once /healthz is 200
 *   bridge.kill();                                         // SIGKILL
 *   await bridge.stop();                                   // SIGTERM, resolves to the exit code
 *
 * Every child is killed when the test file ends, even if a test failed (./leftovers.ts).
 */
const ROOT = resolve(fileURLToPath(new URL("../..", import.meta.url)));

export async function bundleBridge(): Promise<string> {
  const dir = join(ROOT, ".tmp", `test-bridge-${process.pid}`);
  await mkdir(dir, { recursive: true });
  const outfile = join(dir, "cli.mjs");
  await build({ entryPoints: [join(ROOT, "bridge", "cli.ts")], outfile, bundle: true, platform: "node", format: "esm", target: "node20", packages: "external", logLevel: "warning" });
  return outfile;
}

/** Enough for every line a chaos run logs at info, so its invariants can read all of them. */
const LOG_KEPT_CHARS = 4_000_000;

export interface BridgeProcess {
  readonly httpUrl: string;
  readonly pid: number;
  /** Resolves with the exit code (null after a signal) once the process is gone. */
  readonly exited: Promise<number | null>;
  /** stderr and stdout so far (logs), for failure messages. */
  output(): string;
  health(): Promise<{ status: number; body: Record<string, unknown> }>;
  /** kill -9. */
  kill(): void;
  /** SIGTERM, then the exit code. */
  stop(): Promise<number | null>;
}

export async function startBridgeProcess(entry: string, env: Record<string, string>, { readyTimeoutMs = 20_000 } = {}): Promise<BridgeProcess> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [entry], {
    env: { PATH: process.env.PATH ?? "", ...env, PARLEY_HTTP_HOST: "127.0.0.1", PARLEY_HTTP_PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let log = "";
  const keep = (chunk: Buffer) => {
    log = (log + chunk.toString("utf8")).slice(-LOG_KEPT_CHARS);
  };
  child.stdout!.on("data", keep);
  child.stderr!.on("data", keep);
  let alive = true;
  const exited = new Promise<number | null>((resolve) =>
    child.once("exit", (code) => {
      alive = false;
      resolve(code);
    }),
  );
  const untrack = trackLeftover({ pids: () => (alive && child.pid ? [child.pid] : []), dirs: [] });
  void exited.then(untrack);

  const httpUrl = `http://127.0.0.1:${port}`;
  const bridge: BridgeProcess = {
    httpUrl,
    pid: child.pid!,
    exited,
    output: () => log,
    async health() {
      const response = await fetch(`${httpUrl}/healthz`, { signal: AbortSignal.timeout(2000) });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    },
    kill() {
      if (alive) child.kill("SIGKILL");
    },
    async stop() {
      if (alive) child.kill("SIGTERM");
      return exited;
    },
  };
  try {
    await waitUntil(`bridge process on port ${port} to report healthy`, async () => {
      if (!alive) throw new Error(`bridge exited: ${log.slice(-2000)}`);
      return (await bridge.health()).status === 200;
    }, { timeoutMs: readyTimeoutMs, intervalMs: 50 });
  } catch (err) {
    bridge.kill();
    throw new Error(`bridge process did not become healthy; output:\n${log.slice(-3000)}`, { cause: err });
  }
  return bridge;
}
