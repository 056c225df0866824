import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// An agent's connection drops without a goodbye (a phone losing its network). With stream
// management, ejabberd keeps the session waiting for a resume and queues what arrives for it;
// when the wait times out, that queue is bounced back to the sender by default. Those are
// acknowledged visitor messages (CONTRACT §6: nothing acknowledged is lost): they must
// still reach the agent. (An agent back on the same resource before the wait ends is left
// out: ejabberd 23.01 then sometimes files that queue in offline storage after the new
// session fetched it, which Parley cannot see; docs/operations.md.)

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], store: "redis" });
});
afterAll(async () => {
  await stack?.stop();
});

it("delivers them when the dropped agent's session times out before they log in again", async () => {
  const { agent, visitor, visitorJid } = await stack.openChat("dropped", "agent1", "before the long drop");
  agent.drop();
  const texts = ["while gone 1", "while gone 2"];
  for (const text of texts) await visitor.say(text);
  // The resume wait (2 s here) ends: ejabberd sends the agent's unavailable presence.
  await stack.waitForPresence("dropped", "agent1@localhost", "offline");
  const back = await stack.agent("agent1");
  const received = new Set<string>();
  while (received.size < texts.length) {
    const message = await back.nextBody(visitorJid, (b) => b.startsWith("while gone") && !received.has(b), 15_000);
    received.add(message.getChildText("body")!);
  }
  expect([...received].sort()).toEqual(texts);
});
