import { afterAll, beforeAll, expect, it } from "vitest";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { startStack, type Stack } from "../support/stack.js";

// CONTRACT §4: the first server frame is `welcome`. A frame for the visitor may arrive while
// their welcome is still being built (history read, agents online): it must wait for it.
// The in-memory store hands a published frame to the bridge synchronously, so the frame
// below deterministically arrives mid-welcome; the ordering itself is the gateway's.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: [], store: "memory" });
  await stack.api("PUT", "/api/sites/order", { name: "Order" });
});
afterAll(async () => {
  await stack?.stop();
});

it("writes a frame that arrives while the welcome is being built after the welcome", async () => {
  const first = await stack.visitor("order");
  const { visitorId, token } = first.welcome;
  await first.close();

  // On the prototype, before the bridge first reads a history: its store decorator binds each method once.
  const original = MemoryStore.prototype.history;
  MemoryStore.prototype.history = async function (this: MemoryStore, id, limit) {
    // The socket is registered by now: a queue position published to the visitor reaches it at once.
    if (id === visitorId) await this.publishToVisitor(visitorId, { type: "queue", position: 3 }, "another-process");
    return original.call(this, id, limit);
  };
  try {
    const again = await stack.visitor("order", { token });
    const queued = await again.next("queue");
    expect(again.frames.all.map((f: ServerFrame) => f.type).indexOf("welcome")).toBe(0);
    expect(queued).toEqual({ type: "queue", position: 3 });
    await again.close();
  } finally {
    MemoryStore.prototype.history = original;
  }
});
