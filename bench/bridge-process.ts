import { monitorEventLoopDelay, performance } from "node:perf_hooks";
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { getHeapStatistics, writeHeapSnapshot } from "node:v8";
import { pino } from "pino";
import { loadConfig } from "../bridge/config.js";
import { startBridge } from "../bridge/main.js";

/**
 * The bridge under test, as its own process (so its RSS and CPU are its own): the built
 * `dist/bridge` code (bench/build.mjs points these imports at dist/), configured from the
 * environment like `parley`, plus an IPC channel for the bench to read memory, event-loop
 * lag and utilization, active resources (handles and timers), and to force a GC (node
 * --expose-gc) before memory readings.
 */
type Request = { id: number; kind: "stats" | "gc" | "reset" | "snapshot"; file?: string };

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
  // From the first measured run on (not while the bench sets up its chats).
  let allocations: Promise<{ write(file: string): Promise<void> }> | null = null;

  process.on("message", (req: Request) => {
    if (req.kind === "gc") {
      for (let i = 0; i < 3; i++) (globalThis as { gc?: () => void }).gc?.();
      process.send!({ id: req.id });
    } else if (req.kind === "snapshot") {
      writeHeapSnapshot(req.file);
      process.send!({ id: req.id });
    } else if (req.kind === "reset") {
      if (process.env.BENCH_ALLOC_PROFILE) allocations ??= sampleAllocations();
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
        activeResources: countByType(process.getActiveResourcesInfo()),
      });
    }
  });
  const stop = () => {
    setTimeout(() => process.exit(1), 15_000).unref(); // never outlive the bench for long
    void (allocations ? allocations.then((a) => a.write(process.env.BENCH_ALLOC_PROFILE!)) : Promise.resolve())
      .then(() => bridge.stop())
      .finally(() => process.exit(0));
  };
  process.on("SIGTERM", stop);
  process.on("disconnect", stop);
}

/** What keeps the event loop alive (sockets, timers, …), counted by kind: a leaked timer or socket shows here. */
function countByType(resources: string[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const type of resources) counts[type] = (counts[type] ?? 0) + 1;
  return counts;
}

/**
 * Samples every allocation, also of objects that died young (the default keeps only what is
 * still alive): what the scavenger has to do per message, by function. Written as a
 * `.heapprofile` (Chrome DevTools, Memory tab) when the bridge stops.
 */
async function sampleAllocations(): Promise<{ write(file: string): Promise<void> }> {
  const session = new Session();
  session.connect();
  // BENCH_ALLOC_SURVIVORS=1: only what outlived the young generation (what scavenges copy and promote).
  const survivorsOnly = process.env.BENCH_ALLOC_SURVIVORS === "1";
  await session.post("HeapProfiler.startSampling", { samplingInterval: 16_384, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: !survivorsOnly });
  return {
    async write(file) {
      const { profile } = await session.post("HeapProfiler.stopSampling");
      writeFileSync(file, JSON.stringify(profile));
    },
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench bridge: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
