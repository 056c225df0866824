import { describe, expect, it } from "vitest";
import { ExpiringCache } from "../../bridge/expiring-cache.js";

// The cache behind the per-process site, agent and availability caches.

function setup() {
  const clock = { now: 0 };
  const cache = new ExpiringCache<string | null>({ ttlMs: 1000, now: () => clock.now });
  let loads = 0;
  const load = (value: string | null) => () => {
    loads++;
    return Promise.resolve(value);
  };
  return { clock, cache, load, loads: () => loads };
}

describe("ExpiringCache", () => {
  it("loads once per period, shares a load between concurrent reads, and loads again after it", async () => {
    const { clock, cache, load, loads } = setup();
    const [a, b] = await Promise.all([cache.get("acme", load("Acme")), cache.get("acme", load("other"))]);
    expect([a, b, loads()]).toEqual(["Acme", "Acme", 1]);
    clock.now = 999;
    expect(await cache.get("acme", load("Acme 2"))).toBe("Acme");
    clock.now = 1000;
    expect(await cache.get("acme", load("Acme 2"))).toBe("Acme 2");
    expect(loads()).toBe(2);
  });

  it("forgets a deleted key and a failed load at once", async () => {
    const { cache, load, loads } = setup();
    await cache.get("acme", load("Acme"));
    cache.delete("acme");
    expect(await cache.get("acme", load("Acme 2"))).toBe("Acme 2");
    await expect(cache.get("down", () => Promise.reject(new Error("store down")))).rejects.toThrow("store down");
    expect(await cache.get("down", load("back"))).toBe("back");
    expect(loads()).toBe(3);
  });

  it("holds only what was read in the last two periods, however many keys were tried", async () => {
    const { clock, cache, load } = setup();
    for (let i = 0; i < 10_000; i++) await cache.get(`no-such-site-${i}`, load(null));
    expect(cache.size).toBe(10_000);
    clock.now = 1500;
    await cache.get("acme", load("Acme"));
    expect(cache.size).toBe(1);
    clock.now = 2000;
    await cache.get("globex", load("Globex"));
    expect(cache.size).toBe(2);
  });
});
