import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { getHeapStatistics } from "node:v8";
import { pino } from "pino";
import { loadConfig } from "../bridge/config.js";
import { startBridge } from "../bridge/main.js";

/**
 * The bridge under test, as its own process (so its RSS and CPU are its own): the built
 * `dist/bridge` code (bench/build.mjs points these imports at dist/), configured from the
 * environment like `parley`, plus an IPC channel for the bench to read memory, event-loop
 * lag and utilization, and to force a GC (node --expose-gc) before memory readings.
 */
type Request = { id: number; kind: "stats" | "gc" | "reset" };

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const bridge = await startBridge(config, pino({ level: config.logLevel }));
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  let elu = performance.eventLoopUtilization();

  const waitOnline = () =>
    new Promise<void>((resolve) => {
      const check = () => (bridge.link.online ? resolve() : setTimeout(check, 20));
      check();
    });
  await waitOnline();
  process.send!({ kind: "ready", httpUrl: bridge.httpUrl });

  process.on("message", (req: Request) => {
    if (req.kind === "gc") {
      for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
      process.send!({ id: req.id });
    } else if (req.kind === "reset") {
      lag.reset();
      elu = performance.eventLoopUtilization();
      process.send!({ id: req.id });
    } else {
      // process.memoryUsage() opens /proc/self/statm: at the open-files limit it throws EMFILE.
      let mem: { heapUsed: number; external: number; arrayBuffers: number };
      try {
        mem = process.memoryUsage();
      } catch {
        const heap = getHeapStatistics();
        mem = { heapUsed: heap.used_heap_size, external: heap.external_memory, arrayBuffers: 0 };
      }
      const now = performance.eventLoopUtilization(elu);
      process.send!({
        id: req.id,
        mem,
        lagMs: { p50: lag.percentile(50) / 1e6, p99: lag.percentile(99) / 1e6, max: lag.max / 1e6, mean: lag.mean / 1e6 },
        eventLoopUtilization: now.utilization,
      });
    }
  });
  const stop = () => {
    setTimeout(() => process.exit(1), 15_000).unref(); // never outlive the bench for long
    void bridge.stop().finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
}

main().catch((err: unknown) => {
  process.stderr.write(`bench bridge: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
