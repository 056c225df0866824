import type { Element } from "@xmpp/xml";
import { parse } from "ltx";
import { pino } from "pino";
import { describe, expect, it } from "vitest";
import type { ChatService } from "../../bridge/chats.js";
import { PresenceService } from "../../bridge/presence.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";

// An agent's client that logs in again under the same resource (a phone back from a dead
// network) replaces its old session at the server, and the old session's unavailable may
// reach Parley after the new session's presence (chaos seed 1133038364: the agent, online,
// lost every chat once the grace period ended). Parley asks the server again.

const DESK = "acme@chat.localhost";
const AGENT = "ann@localhost";

async function presenceOfOneSite() {
  let clock = 1_700_000_000_000;
  const store = new MemoryStore();
  await store.putSite({ id: "acme", name: "Acme", origins: [], maxChatsPerAgent: 3, createdAt: 0, updatedAt: 0 });
  await store.putAgent("acme", { jid: AGENT, addedAt: 0 });
  const sent: Element[] = [];
  const timers = new Set<string>();
  const presence = new PresenceService({
    store,
    domain: "chat.localhost",
    send: (stanza) => void sent.push(stanza),
    chats: { drainQueue: async () => {}, announceQueuePositions: async () => {} } as unknown as ChatService,
    scheduler: { schedule: async (kind, key) => void timers.add(`${kind}|${key}`), cancel: async (kind, key) => void timers.delete(`${kind}|${key}`) },
    agentGraceMs: 60_000,
    restoreDesk: async () => {},
    now: () => clock,
    newId: () => "id",
    logger: pino({ level: "silent" }),
  });
  const from = (xml: string) => presence.onPresence(parse(xml) as unknown as Element);
  const probes = () => sent.filter((s) => s.attrs.type === "probe").map((s) => `${s.attrs.from} → ${s.attrs.to}`);
  return { store, presence, from, probes, timers, tick: (ms: number) => (clock += ms) };
}

describe("an agent's resource that goes unavailable", () => {
  it("is checked with the server, and a session that replaced it under the same resource keeps the agent available", async () => {
    const { store, from, probes, timers } = await presenceOfOneSite();
    await from(`<presence from="${AGENT}/phone" to="${DESK}"/>`);
    // The new session's presence came first, then the replaced session's unavailable.
    await from(`<presence from="${AGENT}/phone" to="${DESK}"/>`);
    await from(`<presence from="${AGENT}/phone" to="${DESK}" type="unavailable"/>`);
    expect(await store.getAgentPresence(AGENT)).toBe("offline");
    expect(probes()).toEqual([`${DESK} → ${AGENT}`]);
    expect(timers).toEqual(new Set([`agent-gone|${AGENT}`]));

    // The server answers the probe with what is online now.
    await from(`<presence from="${AGENT}/phone" to="${DESK}"/>`);
    expect(await store.getAgentPresence(AGENT)).toBe("available");
    expect(timers).toEqual(new Set()); // their chats stay with them
  });

  it("asks once per agent a second, and not for the server's own answer that the agent is offline", async () => {
    const { store, from, probes, tick } = await presenceOfOneSite();
    await store.putSite({ id: "shop", name: "Shop", origins: [], maxChatsPerAgent: 3, createdAt: 0, updatedAt: 0 });
    await store.putAgent("shop", { jid: AGENT, addedAt: 0 });
    await from(`<presence from="${AGENT}/phone" to="${DESK}"/>`);
    // One unavailable reaches each desk the agent shares presence with.
    await from(`<presence from="${AGENT}/phone" to="${DESK}" type="unavailable"/>`);
    await from(`<presence from="${AGENT}/phone" to="shop@chat.localhost" type="unavailable"/>`);
    await from(`<presence from="${AGENT}" to="${DESK}" type="unavailable"/>`); // the probe's answer: offline
    expect(probes()).toHaveLength(1);
    tick(1000);
    await from(`<presence from="${AGENT}" to="${DESK}" type="unavailable"/>`);
    expect(probes()).toHaveLength(1);
    expect(await store.getAgentPresence(AGENT)).toBe("offline");
  });
});
