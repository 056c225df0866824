import { afterAll, beforeAll, expect, it } from "vitest";
import { newChatId } from "../../bridge/store/ids.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { messageFrame } from "../../bridge/store/message-frame.js";
import type { StoredMessage } from "../../bridge/store/types.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { startStack, type Stack } from "../support/stack.js";

// CONTRACT §4: the first server frame is `welcome`. A frame for the visitor may arrive while
// their welcome is still being built (history read, agents online): it must wait for it.
// The in-memory store hands a published frame to the bridge synchronously, so the frame
// below deterministically arrives mid-welcome; the ordering itself is the gateway's.

let stack: Stack;
/** Runs as the bridge's store reads a visitor's history (their welcome), before it does. */
let beforeHistory: ((store: MemoryStore, visitorId: string) => Promise<void>) | null = null;
const originalHistory = MemoryStore.prototype.history;

beforeAll(async () => {
  // On the prototype, before the bridge first reads a history: its store decorator binds each method once.
  MemoryStore.prototype.history = async function (this: MemoryStore, id, limit) {
    await beforeHistory?.(this, id);
    return originalHistory.call(this, id, limit);
  };
  stack = await startStack({ agents: [], store: "memory" });
  await stack.api("PUT", "/api/sites/order", { name: "Order" });
});
afterAll(async () => {
  await stack?.stop();
  MemoryStore.prototype.history = originalHistory;
});

it("writes a frame that arrives while the welcome is being built after the welcome", async () => {
  const first = await stack.visitor("order");
  const { visitorId, token } = first.welcome;
  await first.close();

  beforeHistory = async (store, id) => {
    // The socket is registered by now: a queue position published to the visitor reaches it at once.
    if (id === visitorId) await store.publishToVisitor(visitorId, { type: "queue", position: 3 }, "another-process");
  };
  try {
    const again = await stack.visitor("order", { token });
    const queued = await again.next("queue");
    expect(again.frames.all.map((f: ServerFrame) => f.type).indexOf("welcome")).toBe(0);
    expect(queued).toEqual({ type: "queue", position: 3 });
    await again.close();
  } finally {
    beforeHistory = null;
  }
});

it("still sends a tab a message that a second tab of the visitor, connecting on the same process, got in its welcome history", async () => {
  const first = await stack.visitor("order");
  const { visitorId, token } = first.welcome;
  await first.say("hello from the first tab");

  // A message is stored while the second tab's welcome reads the history (so it is in that
  // history), and its frame reaches this process only after that welcome went out: as when
  // the process storing it waits on a second write before delivering (a new chat's indexes).
  let stored: StoredMessage | null = null;
  beforeHistory = async (store, id) => {
    if (id !== visitorId || stored) return;
    const now = Date.now();
    ({ message: stored } = await store.appendVisitorMessage({ visitorId, siteId: "order", clientId: "late-frame", fallbackName: "V", text: "written as the second tab connected", ts: now, newChatId: newChatId(visitorId, now), publisher: stack.bridge.processId }));
  };
  let second;
  try {
    second = await stack.visitor("order", { token });
  } finally {
    beforeHistory = null;
  }
  expect(second.welcome.history.map((m) => m.text)).toContain("written as the second tab connected");
  await stack.bridge.store.publishToVisitor(visitorId, messageFrame(stored!), "another-process");

  await first.next("message", (f) => f.text === "written as the second tab connected");
  // Once in the second tab: its history had it. A ping's answer comes after any frame sent before it.
  second.send({ type: "ping" });
  await second.next("pong");
  expect(second.frames.all.filter((f) => f.type === "message" && f.messageId === stored!.id)).toEqual([]);
  await Promise.all([first.close(), second.close()]);
});
