import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../bridge/config.js";
import { createLogger } from "../../bridge/logger.js";
import { startBridge, type Bridge } from "../../bridge/main.js";
import { freePort } from "../support/ports.js";
import { startRedis, type PrivateRedis } from "../support/redis.js";

// The admin API while Redis is down: an outage to wait out (503, as /healthz says), not an
// internal error that sends the admin to the bridge's log. No ejabberd is needed.

const TOKEN = "admin-token-3c9f1e7a2b";
let redis: PrivateRedis;
let bridge: Bridge;

beforeAll(async () => {
  redis = await startRedis();
  const env = {
    PARLEY_XMPP_SECRET: "secret",
    PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${await freePort()}`,
    PARLEY_REDIS_URL: redis.url,
    PARLEY_HTTP_PORT: "0",
    PARLEY_ADMIN_TOKEN: TOKEN,
  };
  bridge = await startBridge(loadConfig(env), createLogger("silent"));
});
afterAll(async () => {
  await bridge?.stop();
  await redis?.destroy();
});

async function listSites(): Promise<{ status: number; body: { error?: { code: string; message: string } } }> {
  const response = await fetch(`${bridge.httpUrl}/api/sites`, { headers: { authorization: `Bearer ${TOKEN}` } });
  return { status: response.status, body: (await response.json()) as { error?: { code: string; message: string } } };
}

/** What /healthz says of the store (its status is 503 throughout: there is no ejabberd here). */
async function storeHealth(): Promise<string> {
  const response = await fetch(`${bridge.httpUrl}/healthz`);
  return ((await response.json()) as { store: string }).store;
}

describe("the admin API while the store is down", () => {
  it("answers 503 unavailable naming the store, and serves again once Redis is back", async () => {
    expect((await listSites()).status).toBe(200);
    await redis.stop();
    const down = await listSites();
    expect(down.status).toBe(503);
    expect(down.body.error?.code).toBe("unavailable");
    expect(down.body.error?.message).toMatch(/Redis/);
    await redis.start();
    await expect.poll(async () => (await listSites()).status).toBe(200);
  });

  it("/healthz says the store is down at once, also while Redis hangs with its connection open", async () => {
    await expect.poll(storeHealth).toBe("up"); // the previous test restarted Redis
    // A hung Redis (stopped, its socket open) answers nothing: a PING would wait for ever.
    process.kill(redis.pid!, "SIGSTOP");
    try {
      expect(await storeHealth()).toBe("down");
    } finally {
      process.kill(redis.pid!, "SIGCONT");
    }
    await expect.poll(storeHealth).toBe("up");
    await redis.stop();
    expect(await storeHealth()).toBe("down");
    await redis.start();
    await expect.poll(storeHealth).toBe("up");
  });
});
