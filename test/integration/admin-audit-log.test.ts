import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadConfig } from "../../bridge/config.js";
import { createLogger } from "../../bridge/logger.js";
import { startBridge, type Bridge } from "../../bridge/main.js";
import { freePort } from "../support/ports.js";

// What the admin API changed shows in the bridge's log at info, sites and agents alike:
// who may answer a site's visitors is what an admin looks for after the fact.
// No ejabberd is needed: the roster changes wait in the link's queue.

const TOKEN = "admin-token-5e2b7d9c1f";
const logLines: { msg: string; [key: string]: unknown }[] = [];
let bridge: Bridge;

beforeAll(async () => {
  const env = { PARLEY_XMPP_SECRET: "secret", PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${await freePort()}`, PARLEY_HTTP_PORT: "0", PARLEY_ADMIN_TOKEN: TOKEN };
  const logger = createLogger("info", { write: (line: string) => void logLines.push(JSON.parse(line) as { msg: string }) });
  bridge = await startBridge(loadConfig(env), logger);
});
afterAll(async () => {
  await bridge?.stop();
});

async function api(method: string, path: string, body?: unknown): Promise<number> {
  const response = await fetch(`${bridge.httpUrl}${path}`, { method, headers: { authorization: `Bearer ${TOKEN}` }, ...(body ? { body: JSON.stringify(body) } : {}) });
  return response.status;
}

describe("the log of admin changes", () => {
  it("names each agent added, renamed and removed, with the site", async () => {
    expect(await api("PUT", "/api/sites/acme", { name: "Acme" })).toBe(201);
    expect(await api("PUT", "/api/sites/acme/agents/alice@localhost", { name: "Alice" })).toBe(201);
    expect(await api("PUT", "/api/sites/acme/agents/alice@localhost", { name: "Alice B." })).toBe(200);
    expect(await api("DELETE", "/api/sites/acme/agents/alice@localhost")).toBe(204);

    expect(logLines.filter((line) => line.msg.startsWith("agent "))).toMatchObject([
      { msg: "agent saved", siteId: "acme", agentJid: "alice@localhost", created: true },
      { msg: "agent saved", siteId: "acme", agentJid: "alice@localhost", created: false },
      { msg: "agent removed", siteId: "acme", agentJid: "alice@localhost" },
    ]);
  });
});
