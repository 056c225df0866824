import { describe, expect, it } from "vitest";
import { OnlineMarkBatch } from "../../bridge/online-marks.js";
import { RandomPool } from "../../bridge/random-pool.js";

describe("RandomPool", () => {
  it("hands out distinct slices of the requested size and wipes them from the pool", () => {
    const pool = new RandomPool(64);
    const slices = Array.from({ length: 40 }, (_, i) => pool.take(i % 2 === 0 ? 17 : 32));
    expect(slices.map((s) => s.length)).toEqual(slices.map((_, i) => (i % 2 === 0 ? 17 : 32)));
    expect(new Set(slices.map((s) => s.toString("hex"))).size).toBe(slices.length);
    const internal = (pool as unknown as { pool: Buffer; offset: number }).pool;
    const used = (pool as unknown as { offset: number }).offset;
    expect(internal.subarray(0, used).every((b) => b === 0)).toBe(true);
    expect(pool.take(100)).toHaveLength(100); // larger than the pool: straight from the OS
  });
});

describe("OnlineMarkBatch", () => {
  it("writes the marks of one turn once per site, with the latest expiry, and every caller waits for its write", async () => {
    const writes: { siteId: string; visitorIds: readonly string[]; until: number }[] = [];
    const batch = new OnlineMarkBatch(async (siteId, visitorIds, until) => {
      writes.push({ siteId, visitorIds, until });
    });
    const marked = [batch.mark("a", "v1", 10), batch.mark("b", "v2", 10), batch.mark("a", "v3", 12)];
    expect(writes).toEqual([]); // nothing before the turn ends
    await Promise.all(marked);
    expect(writes).toEqual([
      { siteId: "a", visitorIds: ["v1", "v3"], until: 12 },
      { siteId: "b", visitorIds: ["v2"], until: 10 },
    ]);
    await batch.mark("a", "v4", 20);
    expect(writes.at(-1)).toEqual({ siteId: "a", visitorIds: ["v4"], until: 20 });
  });

  it("rejects every caller of a batch whose write failed", async () => {
    const batch = new OnlineMarkBatch(async () => {
      throw new Error("store down");
    });
    const results = await Promise.allSettled([batch.mark("a", "v1", 1), batch.mark("a", "v2", 1)]);
    expect(results.map((r) => r.status)).toEqual(["rejected", "rejected"]);
  });
});
