import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Bridge } from "../../bridge/main.js";
import { startStack, type Stack } from "../support/stack.js";
import { VisitorClient } from "../support/visitor-client.js";
import { waitUntil } from "../support/wait.js";

// A visitor is on the site while any of their tabs is open, whichever process holds it
// (CONTRACT §5: the agent sees them available until they are gone longer than the grace
// period). Closing one of two tabs, each on another process, used to mark them as leaving.

let stack: Stack;
let second: Bridge;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], store: "redis" });
  second = await stack.startBridge();
});
afterAll(async () => {
  await stack?.stop();
});

it("keeps a visitor online while a tab on another process stays open", async () => {
  const { agent, visitor: tab1, visitorJid } = await stack.openChat("tabs", "agent1", "hello from tab 1");
  const tab2 = await VisitorClient.connect(second.httpUrl, "tabs", { token: tab1.welcome.token });
  const holders = `parley:{v:${tab1.welcome.visitorId}}:holders`;
  const redis = new Redis(stack.redis!.url);
  try {
    await waitUntil("both processes to hold the visitor", async () => (await redis.scard(holders)) === 2);
    await tab1.close();
    await waitUntil("the first process to let the visitor go", async () => (await redis.scard(holders)) === 1);
    // Three grace periods (300 ms each here): a deliberate duration, long enough for a wrong "left".
    await new Promise((resolve) => setTimeout(resolve, 900));
    const online = (await stack.api("GET", "/api/sites/tabs/visitors")).body as { id: string }[];
    expect(online.map((v) => v.id)).toEqual([tab1.welcome.visitorId]);
    expect(agent.presences.pending((p) => p.attrs.from === visitorJid && p.attrs.type === "unavailable")).toEqual([]);

    await tab2.close();
    await agent.presences.next((p) => p.attrs.from === visitorJid && p.attrs.type === "unavailable", "the visitor's unavailable once both tabs closed", 10_000);
  } finally {
    redis.disconnect();
  }
});
