import { afterAll, beforeAll, expect, it } from "vitest";
import { AGENT_PASSWORD, startStack, type Stack } from "../support/stack.js";
import { AgentClient } from "../support/agent-client.js";
import { waitUntil } from "../support/wait.js";

// While ejabberd is unreachable the bridge keeps outbound stanzas in memory, up to
// PARLEY_XMPP_QUEUE_MAX, and drops the oldest beyond it. Visitor messages among the dropped
// ones were acknowledged: they must still reach the agent once ejabberd is back, although
// no process died (the outbox's takeover only covers dead processes).

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], env: { PARLEY_XMPP_QUEUE_MAX: "3" } });
});
afterAll(async () => {
  await stack?.stop();
});

it("sends again the visitor messages dropped from the full outbound queue once ejabberd is back", async () => {
  const { agent, visitor, visitorJid } = await stack.openChat("overflow", "agent1", "before the outage");
  await stack.ejabberd.stop();
  await waitUntil("the bridge to see ejabberd gone", () => !stack.bridge.link.online);
  await agent.stop();

  const texts = [1, 2, 3, 4, 5, 6].map((k) => `while ejabberd was down ${k}`);
  for (const text of texts) await visitor.say(text);
  expect(stack.bridge.link.queued).toBe(3); // the first three were dropped

  await stack.ejabberd.start();
  await waitUntil("the bridge's component stream again", () => stack.bridge.link.online, { timeoutMs: 20_000 });
  // ejabberd keeps messages for an offline agent and hands them over at login.
  const back = await AgentClient.connect({ port: stack.ejabberd.c2sPort, username: "agent1", password: AGENT_PASSWORD });
  try {
    const received = new Set<string>();
    while (received.size < texts.length) {
      const message = await back.nextBody(visitorJid, (b) => b.startsWith("while ejabberd was down") && !received.has(b), 20_000);
      received.add(message.getChildText("body")!);
    }
    expect([...received].sort()).toEqual(texts);
  } finally {
    await back.stop();
  }
});
