import { describe, expect, it } from "vitest";
import { backoffDelay, DEFAULT_BACKOFF, planReconnect, REST_AFTER_FAILURES, REST_INTERVAL_MS, restartDelay } from "../../widget/src/backoff.js";

const lowest = () => 0;
const highest = () => 0.999999;

describe("widget reconnect backoff", () => {
  it("doubles the window with every attempt", () => {
    expect([0, 1, 2, 3].map((a) => backoffDelay(a, lowest))).toEqual([500, 1000, 2000, 4000]);
  });

  it("never waits longer than the cap, however many attempts failed", () => {
    for (const attempt of [5, 6, 20, 1000]) {
      expect(backoffDelay(attempt, highest)).toBeLessThanOrEqual(DEFAULT_BACKOFF.capMs);
      expect(backoffDelay(attempt, lowest)).toBe(DEFAULT_BACKOFF.capMs / 2);
    }
  });

  it("keeps jitter within half the window, so two visitors dropped together spread out", () => {
    for (let attempt = 0; attempt < 8; attempt++) {
      const ceiling = Math.min(DEFAULT_BACKOFF.capMs, DEFAULT_BACKOFF.baseMs * 2 ** attempt);
      for (const r of [0, 0.25, 0.5, 0.75, 0.999]) {
        const d = backoffDelay(attempt, () => r);
        expect(d).toBeGreaterThanOrEqual(ceiling / 2);
        expect(d).toBeLessThan(ceiling);
      }
    }
    expect(backoffDelay(3, () => 0.1)).not.toBe(backoffDelay(3, () => 0.9));
  });

  it("reconnects within a second after a bridge restart (close 1012)", () => {
    expect(restartDelay(lowest)).toBe(0);
    expect(restartDelay(highest)).toBeLessThan(1000);
  });

  it("stops for good when the bridge closes for a deleted site (4404), however few the failures", () => {
    expect(planReconnect(4404, 1, lowest)).toEqual({ kind: "stop" });
  });

  it("retries with the growing backoff until six closes in a row came without a welcome, then rests for minutes", () => {
    const plans = [1, 2, 3, 4, 5, 6, 7].map((failures) => planReconnect(1006, failures, lowest));
    expect(plans.slice(0, REST_AFTER_FAILURES - 1)).toEqual([500, 1000, 2000, 4000, 8000].map((delayMs) => ({ kind: "retry", delayMs })));
    expect(plans.slice(REST_AFTER_FAILURES - 1)).toEqual([
      { kind: "rest", delayMs: 0.8 * REST_INTERVAL_MS },
      { kind: "rest", delayMs: 0.8 * REST_INTERVAL_MS },
    ]);
    const longest = planReconnect(1006, REST_AFTER_FAILURES, highest);
    expect(longest.kind === "rest" && longest.delayMs <= REST_INTERVAL_MS).toBe(true);
  });

  it("comes back within a second after a restart (1012) even after failures", () => {
    expect(planReconnect(1012, 0, highest)).toEqual({ kind: "retry", delayMs: restartDelay(highest) });
  });
});
