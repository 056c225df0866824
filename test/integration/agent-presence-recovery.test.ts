import { xml } from "@xmpp/client";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import type { Bridge } from "../../bridge/main.js";
import { startStack, type Stack } from "../support/stack.js";
import { waitUntil } from "../support/wait.js";

// Presence that changes while no Parley process is connected to ejabberd never reaches the
// desk. On connecting, the bridge probes every agent and drops the resources the answers do
// not confirm: without that, an agent who logged out meanwhile stayed "available" forever
// and got every new chat.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["stays", "leaves", "switches", "remover"], store: "redis" });
});
afterAll(async () => {
  await stack?.stop();
});

async function presences(bridge: Bridge, siteId: string): Promise<Record<string, string>> {
  const response = await fetch(new URL(`/api/sites/${siteId}/agents`, bridge.httpUrl), { headers: { authorization: `Bearer ${stack.adminToken}` } });
  const agents = (await response.json()) as { jid: string; presence: string }[];
  return Object.fromEntries(agents.map((a) => [a.jid.split("@")[0], a.presence]));
}

it("tells an agent who removes the desk that they get no chats, and sees them again once they add it back", async () => {
  await stack.api("PUT", "/api/sites/desks", { name: "Desks" });
  await stack.api("PUT", "/api/sites/desks/agents/remover@localhost", {});
  const remover = await stack.availableAgent("desks", "remover");
  await remover.xmpp.iqCaller.set(xml("query", { xmlns: "jabber:iq:roster" }, xml("item", { jid: "desks@chat.localhost", subscription: "remove" })));
  await remover.nextBody("desks@chat.localhost", (b) => b.startsWith("[parley] You removed desks@chat.localhost (Desks)"));
  await stack.waitForPresence("desks", "remover@localhost", "offline");

  // What a client does to add a contact: a subscription request.
  await remover.xmpp.send(xml("presence", { to: "desks@chat.localhost", type: "subscribe" }));
  await stack.waitForPresence("desks", "remover@localhost", "available");
  expect((await remover.roster()).find((item) => item.attrs.jid === "desks@chat.localhost")?.attrs.subscription).toBe("both");
});

it("learns on connecting who left or changed resource while no bridge was connected", async () => {
  await stack.api("PUT", "/api/sites/recovery", { name: "Recovery" });
  for (const name of ["stays", "leaves", "switches"]) await stack.api("PUT", `/api/sites/recovery/agents/${name}@localhost`, {});
  await stack.availableAgent("recovery", "stays");
  const leaves = await stack.availableAgent("recovery", "leaves");
  const switches = await stack.availableAgent("recovery", "switches", { resource: "laptop" });

  await stack.bridge.stop();
  await leaves.stop();
  await switches.stop();
  await stack.agent("switches", { resource: "phone", show: "away" });
  const restarted = await stack.startBridge();

  const redis = new Redis(stack.redis!.url);
  try {
    const probeTimers = async () => (await redis.zrange("parley:timers", "0", "-1")).filter((id) => id.startsWith("probe-answers:"));
    // The restarted bridge probes once its component is online, a moment after it started.
    await waitUntil("the probes to be sent", async () => (await probeTimers()).length > 0);
    await waitUntil("the probes' answer window to close", async () => (await probeTimers()).length === 0, { timeoutMs: 30_000 });
  } finally {
    redis.disconnect();
  }
  expect(await presences(restarted, "recovery")).toEqual({ stays: "available", leaves: "offline", switches: "away" });
});
