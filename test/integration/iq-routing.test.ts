import xml from "@xmpp/xml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// ejabberd 23.01 balances every stanza to a component domain across its connections,
// IQ answers included (EJABBERD.md). An answer that lands on another process must still
// reach the process that asked, through the store.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: [], store: "redis" });
});
afterAll(async () => {
  await stack?.stop();
});

describe("IQ answers across processes", () => {
  it("settles every request of one process while two processes share the component domain", async () => {
    const other = await stack.startBridge();
    expect(other.processId).not.toBe(stack.bridge.processId);
    const asker = stack.bridge;
    let counter = 0;
    const ping = () =>
      asker.link.request(
        xml("iq", { type: "get", from: stack.ejabberd.componentDomain, to: stack.ejabberd.host, id: `${asker.processId}-ping${++counter}` }, xml("ping", { xmlns: "urn:xmpp:ping" })),
        3000,
      );
    // Without forwarding about half of these would time out: 30 all landing on the asker
    // by chance has a probability of 2^-30.
    const answers = await Promise.allSettled(Array.from({ length: 30 }, ping));
    const failed = answers.filter((a) => a.status === "rejected");
    console.log(`iq routing: ${answers.length - failed.length} of ${answers.length} pings answered across 2 processes`);
    expect(failed).toEqual([]);
  });
});
