import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { keys } from "../../bridge/store/keys.js";
import { startStack, type Stack } from "../support/stack.js";

// Each visitor's online mark lives in one sorted set per site. Only listing the site's
// visitors (admin API, `!visitors`) removed expired marks, so on a site nobody listed, the
// set gained a member for every visitor ever seen and kept it (the memory soak found it:
// bench/soak.ts). A visitor who leaves now takes their mark with them once the grace
// period is over.

let stack: Stack;
let redis: Redis;

beforeAll(async () => {
  stack = await startStack({ agents: [], store: "redis", env: { PARLEY_VISITOR_GRACE_MS: "200" } });
  redis = new Redis(stack.redis!.url);
});
afterAll(async () => {
  redis?.disconnect();
  await stack?.stop();
});

it("removes a visitor's online mark once they are gone past the grace period", async () => {
  await stack.api("PUT", "/api/sites/marks", { name: "Marks" });
  const online = keys.online("marks");
  const first = await stack.visitor("marks");
  const second = await stack.visitor("marks");
  await expect.poll(() => redis.zcard(online)).toBe(2);

  await first.close();
  await expect.poll(() => redis.zscore(online, first.welcome.visitorId), { timeout: 10_000 }).toBeNull();
  expect(await redis.zscore(online, second.welcome.visitorId)).not.toBeNull(); // still here: their mark stays

  await second.close();
  await expect.poll(() => redis.zcard(online), { timeout: 10_000 }).toBe(0);
});
