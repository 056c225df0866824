import { once } from "node:events";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { loadConfig } from "../../bridge/config.js";
import { createLogger } from "../../bridge/logger.js";
import { startBridge, type Bridge } from "../../bridge/main.js";
import { freePort } from "../support/ports.js";

// Why a widget does not connect, as an admin finds out: the page only sees "failed", so
// the bridge counts each refused visitor connection by reason and logs the ones that come
// from a site's settings (an unknown site id, an origin the site does not list).
// No ejabberd is needed: upgrades are checked before anything reaches XMPP.

const TOKEN = "admin-token-8d1f0c2e6a";
const logLines: Record<string, unknown>[] = [];
let bridge: Bridge;

beforeAll(async () => {
  const env = { PARLEY_XMPP_SECRET: "secret", PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${await freePort()}`, PARLEY_HTTP_PORT: "0", PARLEY_ADMIN_TOKEN: TOKEN };
  const logger = createLogger("info", { write: (line: string) => void logLines.push(JSON.parse(line) as Record<string, unknown>) });
  bridge = await startBridge(loadConfig(env), logger);
  const response = await fetch(`${bridge.httpUrl}/api/sites/acme`, {
    method: "PUT",
    headers: { authorization: `Bearer ${TOKEN}` },
    body: JSON.stringify({ name: "Acme", origins: ["https://www.acme.example"] }),
  });
  expect(response.status).toBe(201);
});
afterAll(async () => {
  await bridge?.stop();
});

/** The HTTP status the upgrade was answered with. */
async function upgradeStatus(siteId: string, origin: string): Promise<number> {
  const ws = new WebSocket(`${bridge.httpUrl.replace("http", "ws")}/visitor?site=${siteId}`, { origin });
  const [, response] = (await once(ws, "unexpected-response")) as [unknown, { statusCode: number }];
  ws.on("error", () => {}); // terminating a socket that never opened reports an error: expected here
  ws.terminate();
  return response.statusCode;
}

async function refusals(): Promise<string> {
  const metrics = await (await fetch(`${bridge.httpUrl}/metrics`)).text();
  return metrics
    .split("\n")
    .filter((line) => line.startsWith("parley_visitor_upgrades_refused_total{"))
    .join("\n");
}

describe("refused visitor connections", () => {
  it("are counted by reason and logged with the origin the page sent and the ones the site allows", async () => {
    expect(await upgradeStatus("acme", "https://acme.example")).toBe(403);
    expect(await upgradeStatus("acne", "https://www.acme.example")).toBe(404);

    expect(await refusals()).toContain('parley_visitor_upgrades_refused_total{reason="origin"} 1');
    expect(await refusals()).toContain('parley_visitor_upgrades_refused_total{reason="unknown_site"} 1');
    const logged = logLines.filter((line) => String(line.msg).startsWith("visitor connection refused"));
    expect(logged).toMatchObject([
      { reason: "origin", siteId: "acme", origin: "https://acme.example", allowed: ["https://www.acme.example"] },
      { reason: "unknown_site", siteId: "acne", origin: "https://www.acme.example" },
    ]);
  });
});
