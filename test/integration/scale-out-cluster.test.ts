import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runConversations } from "../support/conversations.js";
import { startDeployment, type Deployment } from "../support/deployment.js";

// The multi-process path of scale-out.test.ts against a Redis Cluster of 3 masters
// (PARLEY_REDIS_CLUSTER): every multi-key command and script touches one hash slot
// (bridge/store/keys.ts), and the visitor bus runs on ioredis' Cluster pub/sub.

let deployment: Deployment;

beforeAll(async () => {
  deployment = await startDeployment({ store: "cluster", bridges: 3, agents: 5 });
}, 90_000);
afterAll(async () => {
  await deployment?.stop();
});

describe("three bridge processes on a Redis Cluster of 3 masters", () => {
  it("carries 50 conversations with 5 agents, 20 messages each way, exactly once and in order", async () => {
    const started = Date.now();
    const result = await runConversations({ bridgeUrls: deployment.bridgeUrls, siteId: deployment.siteId, agents: deployment.agents, count: 50, messages: 20, tag: "c1" });
    let toAgents = 0;
    let toVisitors = 0;
    result.visitors.forEach((visitor, i) => {
      const bodies = result.received.get(visitor.jid) ?? [];
      expect(bodies).toEqual(Array.from({ length: 20 }, (_, k) => `c1 v${i} m${k + 1}`));
      const order = visitor.views.at(-1)!.filter((m) => m.from === "agent").map((m) => m.text);
      expect(order).toEqual(Array.from({ length: 20 }, (_, k) => `c1 a${i} r${k + 1}`));
      expect(visitor.duplicatesShown()).toBe(0);
      toAgents += bodies.length;
      toVisitors += order.length;
    });
    expect([toAgents, toVisitors]).toEqual([1000, 1000]);
    console.log(`Redis Cluster (3 masters), 3 processes: ${toAgents} visitor→agent and ${toVisitors} agent→visitor messages, exactly once and in order, in ${Date.now() - started} ms`);
    await Promise.all(result.visitors.map((v) => v.close()));
  });
});
