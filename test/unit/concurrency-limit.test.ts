import { describe, expect, it } from "vitest";
import { ConcurrencyLimit } from "../../bridge/concurrency-limit.js";

/** A task that runs until the test settles it. */
function deferred() {
  let settle!: (ok: boolean) => void;
  const done = new Promise<void>((resolve, reject) => {
    settle = (ok) => (ok ? resolve() : reject(new Error("task failed")));
  });
  return { done, settle };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe("ConcurrencyLimit", () => {
  it("runs at most max tasks at once and starts the others first come first served", async () => {
    const limit = new ConcurrencyLimit(2);
    const tasks = Array.from({ length: 5 }, () => deferred());
    const started: number[] = [];
    const results = tasks.map((t, i) =>
      limit.run(async () => {
        started.push(i);
        await t.done;
        return i;
      }),
    );
    await flush();
    expect(started).toEqual([0, 1]);
    expect(limit.queued).toBe(3);

    tasks[1]!.settle(true);
    await flush();
    expect(started).toEqual([0, 1, 2]);
    tasks[0]!.settle(true);
    tasks[2]!.settle(true);
    await flush();
    expect(started).toEqual([0, 1, 2, 3, 4]);
    tasks[3]!.settle(true);
    tasks[4]!.settle(true);
    expect(await Promise.all(results)).toEqual([0, 1, 2, 3, 4]);
    expect(limit.queued).toBe(0);
  });

  it("frees the slot of a task that fails", async () => {
    const limit = new ConcurrencyLimit(1);
    const failing = deferred();
    const first = limit.run(() => failing.done);
    const second = limit.run(async () => "ran");
    failing.settle(false);
    await expect(first).rejects.toThrow("task failed");
    expect(await second).toBe("ran");
    expect(await limit.run(async () => "and again")).toBe("and again");
  });

  it("refuses a limit below one", () => {
    expect(() => new ConcurrencyLimit(0)).toThrow(RangeError);
  });
});
