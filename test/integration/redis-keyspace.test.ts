import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { keys } from "../../bridge/store/keys.js";
import { bundleBridge, startBridgeProcess, type BridgeProcess } from "../support/bridge-process.js";
import { startStack, type Stack } from "../support/stack.js";
import { VisitorClient } from "../support/visitor-client.js";
import { waitUntil } from "../support/wait.js";

// Parley runs for years against one Redis: every key it writes belongs to something alive
// (a site, an agent of a site, a visitor within retention, a chat or transcript within
// retention, a running process, a webhook being delivered) or goes when its owner ends.
// Visitors here go through every ending there is, retention is 2 s, and then the test Redis
// must hold exactly the keys of what is still alive: one site with one agent, one site
// without agents, one bridge process. A key left behind per visitor or per chat would be
// an unbounded leak in production.

const RETENTION_DAYS = String(2 / 86_400);
const CHAT_IDLE_MS = 1000;
const env = {
  PARLEY_VISITOR_RETENTION_DAYS: RETENTION_DAYS,
  PARLEY_TRANSCRIPT_RETENTION_DAYS: RETENTION_DAYS,
  PARLEY_CHAT_IDLE_MS: String(CHAT_IDLE_MS),
  PARLEY_HEARTBEAT_MS: "1000",
  PARLEY_AGENT_GRACE_MS: "1000",
};
const AGENT1 = "agent1@localhost";
const AGENT2 = "agent2@localhost";
const AGENT3 = "agent3@localhost";

let stack: Stack;
let redis: Redis;
let doomed: BridgeProcess | undefined;
const webhookBodies: string[] = [];
/** Deliveries fail until the test has seen an event waiting for its retry in Redis. */
let acceptWebhooks = false;
const webhookReceiver = createServer((req, res) => {
  let body = "";
  req.on("data", (chunk: Buffer) => (body += chunk.toString()));
  req.on("end", () => {
    webhookBodies.push(body);
    res.writeHead(acceptWebhooks ? 204 : 500).end();
  });
});

beforeAll(async () => {
  const entry = bundleBridge();
  stack = await startStack({ agents: ["agent1", "agent2", "agent3"], store: "redis", env });
  redis = new Redis(stack.redis!.url);
  webhookReceiver.listen(0, "127.0.0.1");
  await new Promise((resolve) => webhookReceiver.once("listening", resolve));
  // A second bridge, a real OS process, to be killed with visitors on it.
  doomed = await startBridgeProcess(await entry, {
    PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${stack.ejabberd.componentPort}`,
    PARLEY_XMPP_DOMAIN: stack.ejabberd.componentDomain,
    PARLEY_XMPP_SECRET: stack.ejabberd.secret,
    PARLEY_EJABBERD_API_URL: stack.ejabberd.apiUrl,
    PARLEY_REDIS_URL: stack.redis!.url,
    PARLEY_ADMIN_TOKEN: stack.adminToken,
    PARLEY_VISITOR_GRACE_MS: "300",
    PARLEY_LOG_LEVEL: "warn",
    ...env,
  });
}, 60_000);
afterAll(async () => {
  doomed?.kill();
  webhookReceiver.close();
  redis?.disconnect();
  await stack?.stop();
});

/** Every key in the test Redis, sorted. */
async function allKeys(): Promise<string[]> {
  const found = new Set<string>();
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "COUNT", 1000);
    for (const key of batch) found.add(key);
    cursor = next;
  } while (cursor !== "0");
  return [...found].sort();
}

/** The keys that never expire (TTL -1). */
async function keysWithoutTtl(): Promise<string[]> {
  const all = await allKeys();
  const ttls = await Promise.all(all.map((key) => redis.ttl(key)));
  return all.filter((_, i) => ttls[i] === -1);
}

const jidOf = (siteId: string, visitor: VisitorClient) => `${siteId}.${visitor.welcome.visitorId}@chat.localhost`;

describe("the Redis keyspace", () => {
  it("holds only the keys of what is alive once visitors, chats, an agent, a site and a process have ended", async () => {
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await stack.api(method, path, body);
      expect(response.status, `${method} ${path}`).toBeLessThan(300);
      return response.body;
    };
    const webhookUrl = `http://127.0.0.1:${(webhookReceiver.address() as AddressInfo).port}/hook`;
    await api("PUT", "/api/sites/kept", { name: "Kept", maxChatsPerAgent: 10 });
    await api("PUT", `/api/sites/kept/agents/${AGENT1}`, {});
    await api("PUT", `/api/sites/kept/agents/${AGENT2}`, {});
    await api("PUT", "/api/sites/gone", { name: "Gone", maxChatsPerAgent: 1 });
    await api("PUT", `/api/sites/gone/agents/${AGENT3}`, {});
    await api("PUT", "/api/sites/after-hours", { name: "After Hours", webhookUrl }); // no agents: offline mode
    const agent1 = await stack.availableAgent("kept", "agent1");
    const agent2 = await stack.availableAgent("kept", "agent2");
    const agent3 = await stack.availableAgent("gone", "agent3");

    const agents = new Map([
      [AGENT1, agent1],
      [AGENT2, agent2],
    ]);
    /** The agent the visitor's chat went to (routing breaks ties by time and JID: either may get it). */
    const agentOf = async (visitor: VisitorClient) => {
      let jid: string | undefined;
      await waitUntil("the chat to be assigned", async () => {
        const active = (await api("GET", "/api/sites/kept/chats?state=active")) as { visitor: { id: string }; agent: { jid: string } }[];
        jid = active.find((chat) => chat.visitor.id === visitor.welcome.visitorId)?.agent.jid;
        return jid !== undefined;
      });
      return jid!;
    };

    // A browser that never chats: forgotten after the visitor retention.
    await (await stack.visitor("kept")).close();

    // A chat on a bridge process that is killed: nobody releases its visitor, nobody sees
    // them leave; the chat must still end, and the dead process's entries go.
    const orphaned = await VisitorClient.connect(doomed!.httpUrl, "kept");
    await orphaned.say("my bridge is about to die");
    await agentOf(orphaned);
    doomed!.kill();
    await doomed!.exited;
    await orphaned.closed;

    // A chat the agent ends: purged after the transcript retention, then its visitor goes.
    const ended = await stack.visitor("kept");
    await ended.say("please end this");
    await agents.get(await agentOf(ended))!.sendMessage(jidOf("kept", ended), "!end");
    await ended.next("ended");
    await ended.close();

    // A chat whose agent is removed from the site: it moves to the other agent (or waits in
    // the queue); its visitor leaves and the chat ends when idle. The removed agent then
    // belongs to no site.
    const moved = await stack.visitor("kept");
    await moved.say("who is there?");
    const removed = await agentOf(moved);
    const remaining = removed === AGENT1 ? AGENT2 : AGENT1;
    await api("DELETE", `/api/sites/kept/agents/${removed}`);
    await moved.next("agent", (f) => f.state === "left");
    await moved.close();

    // A queued chat whose visitor gives up waiting; then the site is deleted with a chat open.
    const served = await stack.visitor("gone");
    await served.say("first in line");
    await agent3.nextBody(jidOf("gone", served), (b) => b === "first in line");
    const waiting = await stack.visitor("gone");
    await waiting.say("second in line");
    await waiting.next("queue");
    await waiting.close();
    await expect.poll(async () => ((await api("GET", "/api/sites/gone/chats?state=queued")) as unknown[]).length, { timeout: 15_000 }).toBe(0);
    await api("DELETE", "/api/sites/gone");
    await served.next("ended");
    await served.close();

    // An offline chat: one webhook per message, one when it ends; the first deliveries fail.
    const offline = await stack.visitor("after-hours");
    await offline.say("anyone?");
    await waitUntil("the failed first webhook", () => webhookBodies.length >= 1);
    // Waiting for its retry, the event is in Redis: it must not be able to stay there forever.
    const eventKey = (await allKeys()).find((key) => key.startsWith("parley:webhook-event:"));
    expect(eventKey).toBeDefined();
    expect(await redis.ttl(eventKey!)).toBeGreaterThan(0);
    acceptWebhooks = true;
    await offline.close();
    await waitUntil("the chat.ended webhook", () => webhookBodies.some((body) => body.includes('"chat.ended"')), { timeoutMs: 15_000 });

    // Alive now: sites "kept" (its remaining agent, still online) and "after-hours" (no agents), this bridge.
    // Nothing of any visitor, chat, transcript, webhook, the removed agent, agent3, "gone" or
    // the killed process.
    const live = stack.bridge.processId;
    const expected = [
      keys.sites(),
      keys.chatStateCounts(),
      keys.processes(),
      keys.site("kept"),
      keys.agents("kept"),
      keys.visitorNumber("kept"),
      keys.loadedAgents("kept"),
      keys.lastAssigned("kept"),
      keys.site("after-hours"),
      keys.visitorNumber("after-hours"),
      keys.agentSites(remaining),
      keys.agentResources(remaining),
    ].sort();
    const keyspace = async () => ({
      // The live process's outbox index keeps the visitors who wrote through it in the last
      // minutes (outbox.ts, TRACKED_QUIET_MS): bounded by time, and the process's own.
      keys: (await allKeys()).filter((key) => key !== keys.outbox(live)),
      processes: await redis.zrange(keys.processes(), "0", "-1"),
      sites: (await redis.smembers(keys.sites())).sort(),
      loadedAgents: await redis.smembers(keys.loadedAgents("kept")),
      lastAssigned: await redis.hkeys(keys.lastAssigned("kept")),
    });
    await expect.poll(keyspace, { timeout: 30_000, interval: 500 }).toEqual({
      keys: expected,
      processes: [live],
      sites: ["after-hours", "kept"],
      loadedAgents: [remaining],
      lastAssigned: [remaining],
    });
    // What never expires is only what lives as long as its site, agent or process.
    expect((await keysWithoutTtl()).filter((key) => key !== keys.outbox(live))).toEqual(expected);
    expect(webhookBodies.filter((body) => body.includes('"offline.message"')).length).toBeGreaterThanOrEqual(2); // the failed one and its retry
  }, 120_000);
});
