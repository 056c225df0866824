import { describe, expect, it } from "vitest";
import { retryIfPortTaken } from "../support/ports.js";

// Two test processes may pick the same free port at once; the second service to bind it
// fails (ejabberd: eaddrinuse; Redis: "Address already in use") and starts again elsewhere.

describe("retryIfPortTaken", () => {
  it("starts again when the port was taken, and gives up after three tries", async () => {
    let calls = 0;
    const takenOnce = () => (++calls === 1 ? Promise.reject(new Error("failed_to_start_child ... eaddrinuse")) : Promise.resolve("started"));
    expect(await retryIfPortTaken(takenOnce)).toBe("started");
    expect(calls).toBe(2);

    calls = 0;
    const alwaysTaken = () => (++calls, Promise.reject(new Error("bind: Address already in use")));
    await expect(retryIfPortTaken(alwaysTaken)).rejects.toThrow(/Address already in use/);
    expect(calls).toBe(3);
  });

  it("does not start again for any other failure", async () => {
    let calls = 0;
    const broken = () => (++calls, Promise.reject(new Error("ejabberd exited during start: bad config")));
    await expect(retryIfPortTaken(broken)).rejects.toThrow(/bad config/);
    expect(calls).toBe(1);
  });
});
