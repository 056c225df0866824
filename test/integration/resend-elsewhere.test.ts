import { afterAll, beforeAll, expect, it } from "vitest";
import { AgentClient } from "../support/agent-client.js";
import { AGENT_PASSWORD, startStack, type Stack } from "../support/stack.js";
import { VisitorClient } from "../support/visitor-client.js";
import { waitUntil } from "../support/wait.js";

// A widget resends a message whose ack it did not see (its socket closed first) through
// whichever process it reconnects to. The original is stored, and the process that stored
// it is still relaying it (its stanza waits for ejabberd, or its relayed mark for the next
// batch): the resend must not make another process relay it too (CONTRACT §4: a resent
// message id is acknowledged again, not duplicated).

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], store: "redis" });
});
afterAll(async () => {
  await stack?.stop();
});

it("relays a message resent through another process once, while the first process still relays it", async () => {
  const { agent, visitor, visitorJid } = await stack.openChat("resend", "agent1", "hello");
  const other = await stack.startBridge();
  await stack.ejabberd.stop();
  await waitUntil("both bridges to see ejabberd gone", () => !stack.bridge.link.online && !other.link.online);
  await agent.stop();

  // Stored and queued by the first process; the widget resends it through the second.
  const first = await visitor.say("said once", "resend-1");
  const elsewhere = await VisitorClient.connect(other.httpUrl, "resend", { token: visitor.welcome.token });
  expect((await elsewhere.say("said once", "resend-1")).messageId).toBe(first.messageId);
  // A later message through each process: each process sends in order, so once both are in,
  // any second copy from either process is in too.
  await visitor.say("after, first process");
  await elsewhere.say("after, second process");

  await stack.ejabberd.start();
  await waitUntil("both component streams again", () => stack.bridge.link.online && other.link.online, { timeoutMs: 20_000 });
  const back = await AgentClient.connect({ port: stack.ejabberd.c2sPort, username: "agent1", password: AGENT_PASSWORD });
  try {
    await back.nextBody(visitorJid, (b) => b === "after, first process", 20_000);
    await back.nextBody(visitorJid, (b) => b === "after, second process", 20_000);
    const copies = back.messages.all.filter((m) => m.getChildText("body") === "said once");
    expect(copies).toHaveLength(1);
  } finally {
    await Promise.all([back.stop(), elsewhere.close()]);
  }
});
