import { afterAll, beforeAll, expect, it } from "vitest";
import { AgentClient } from "../support/agent-client.js";
import { AGENT_PASSWORD, startStack, type Stack } from "../support/stack.js";

// A chat whose agent was gone past PARLEY_AGENT_GRACE_MS, with nobody else available, goes
// back to the queue; when it is assigned again (here to the same agent, back online), what
// the agent already had comes as [parley] context, not as the visitor's messages again.
// Found by the chaos run: the whole transcript was relayed a second time.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], env: { PARLEY_AGENT_GRACE_MS: "1000" } });
});
afterAll(async () => {
  await stack?.stop();
});

it("relays only what the agent has not had when a requeued chat is assigned again", async () => {
  const { agent, visitor, visitorJid } = await stack.openChat("requeue", "agent1", "hello");
  // The agent's client acknowledged "hello" before the drop; otherwise ejabberd would rightly
  // hand it to the agent's next session itself (resend_on_timeout), which is not Parley's doing.
  await agent.acknowledgeAll();
  agent.drop(); // gone without a word: after the grace period the chat goes back to the queue
  await expect.poll(async () => (await stack.api("GET", "/api/sites/requeue/chats?state=queued")).body.length, { timeout: 20_000 }).toBe(1);
  await visitor.say("anyone there?"); // while queued: reached nobody

  const back = await AgentClient.connect({ port: stack.ejabberd.c2sPort, username: "agent1", password: AGENT_PASSWORD, resource: "back" });
  try {
    await visitor.next("agent", (f) => f.state === "joined" && f.name !== undefined, 20_000);
    await back.nextBody(visitorJid, (b) => b === "anyone there?");
    await visitor.say("after");
    await back.nextBody(visitorJid, (b) => b === "after");
    const bodies = back.messages.all.filter((m) => m.attrs.from?.split("/")[0] === visitorJid).map((m) => m.getChildText("body")).filter((b): b is string => b !== null);
    expect(bodies.filter((b) => b === "hello")).toEqual([]); // not as the visitor's message again…
    expect(bodies.some((b) => b.startsWith("[parley] visitor") && b.endsWith(": hello"))).toBe(true); // …but as context
    expect(bodies.filter((b) => b === "anyone there?")).toHaveLength(1);
  } finally {
    await back.stop();
  }
});
