import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runConversations, type ConversationResult } from "../support/conversations.js";
import { startDeployment, type Deployment } from "../support/deployment.js";
import { VisitorClient } from "../support/visitor-client.js";
import { waitUntil } from "../support/wait.js";

// Scale-out and resilience (CONTRACT §6, issue 5): three bridge processes (`node cli.mjs`)
// on one ejabberd 23.01 component domain and one Redis. ejabberd hands each stanza to a
// random connection, so every stanza may land on a process other than the visitor's.

let deployment: Deployment;

beforeAll(async () => {
  deployment = await startDeployment({ store: "redis", bridges: 3, agents: 5 });
}, 90_000);
afterAll(async () => {
  await deployment?.stop();
});

/** Checks exactly-once, in-order delivery both ways; returns the counts. */
function judge(result: ConversationResult, messages: number, tag: string) {
  let toAgents = 0;
  let toVisitors = 0;
  result.visitors.forEach((visitor, i) => {
    const bodies = result.received.get(visitor.jid) ?? [];
    expect(bodies).toEqual(Array.from({ length: messages }, (_, k) => `${tag} v${i} m${k + 1}`));
    toAgents += bodies.length;
    const texts = visitor.agentTexts();
    for (let k = 1; k <= messages; k++) expect(texts.get(`${tag} a${i} r${k}`)?.size).toBe(1);
    const order = visitor.views.at(-1)!.filter((m) => m.from === "agent").map((m) => m.text);
    expect(order).toEqual(Array.from({ length: messages }, (_, k) => `${tag} a${i} r${k + 1}`));
    expect(visitor.duplicatesShown()).toBe(0);
    toVisitors += order.length;
  });
  return { toAgents, toVisitors };
}

describe("three bridge processes, one Redis, one ejabberd", () => {
  it("carries 50 conversations with 5 agents, 20 messages each way, exactly once and in order", async () => {
    const started = Date.now();
    const result = await runConversations({ bridgeUrls: deployment.bridgeUrls, siteId: deployment.siteId, agents: deployment.agents, count: 50, messages: 20, tag: "s1" });
    const { toAgents, toVisitors } = judge(result, 20, "s1");
    expect(toAgents).toBe(1000);
    expect(toVisitors).toBe(1000);
    const perAgent = [...deployment.agents.keys()].map((name) => result.visitors.filter((v) => v.agentName === name).length);
    console.log(`3 processes: ${toAgents} visitor→agent and ${toVisitors} agent→visitor messages, each exactly once and in order, in ${Date.now() - started} ms; chats per agent ${perAgent.join("/")}`);
    await Promise.all(result.visitors.map((v) => v.close()));
  });

  it("gives every tab of a visitor, each on another process, every message exactly once", async () => {
    const [urlA, urlB, urlC] = deployment.bridgeUrls();
    const tab1 = await VisitorClient.connect(urlA!, deployment.siteId);
    const tab2 = await VisitorClient.connect(urlB!, deployment.siteId, { token: tab1.welcome.token });
    const tab3 = await VisitorClient.connect(urlC!, deployment.siteId, { token: tab1.welcome.token });
    const tabs = [tab1, tab2, tab3];
    const jid = `${deployment.siteId}.${tab1.welcome.visitorId}@chat.localhost`;
    await tab1.say("tabs hello");
    const agent = deployment.agents.get((await tab1.next("agent", (f) => f.state === "joined")).name)!;
    await agent.nextBody(jid, (b) => b === "tabs hello");

    // Visitor messages from each tab (stored and published by that tab's process) and agent
    // messages (handled by whichever process ejabberd picks): all of them, on every tab.
    const expected = ["tabs hello"];
    for (let k = 1; k <= 5; k++) {
      for (const [i, tab] of tabs.entries()) {
        await tab.say(`tabs t${i + 1} m${k}`);
        expected.push(`tabs t${i + 1} m${k}`);
      }
      await agent.sendMessage(jid, `tabs r${k}`);
      expected.push(`tabs r${k}`);
    }
    const texts = (tab: VisitorClient) => tab.frames.all.flatMap((f) => (f.type === "message" && f.text.startsWith("tabs ") ? [f.text] : []));
    const missingOn = (tab: VisitorClient) => expected.filter((t) => !texts(tab).includes(t));
    for (const [i, tab] of tabs.entries()) {
      await waitUntil(`tab ${i + 1} to show every message`, () => missingOn(tab).length === 0).catch((err: Error) => {
        throw new Error(`${err.message}; missing: ${tabs.map((t, j) => `tab ${j + 1}: ${JSON.stringify(missingOn(t))}`).join("; ")}`);
      });
      expect(texts(tab).sort()).toEqual([...expected].sort()); // and each exactly once
    }
    await Promise.all(tabs.map((t) => t.close()));
  });
});

describe("failures", () => {
  it("survives kill -9 of one process mid-conversation: visitors resume elsewhere, nothing acknowledged is lost, no duplicate shown", async () => {
    const victim = deployment.bridges[1]!;
    const victimId = String((await victim.health()).body.process);
    let progress = 0;
    let killedAt = 0;
    const result = await runConversations({
      bridgeUrls: deployment.bridgeUrls,
      siteId: deployment.siteId,
      agents: deployment.agents,
      count: 30,
      messages: 12,
      tag: "s2",
      paceMs: 50,
      receipts: true,
      onProgress: () => {
        if (++progress === 90) {
          killedAt = Date.now();
          victim.kill();
        }
      },
    });
    expect(killedAt).toBeGreaterThan(0);
    expect(await victim.exited).toBeNull(); // killed by a signal

    let lost = 0;
    let duplicatesAtAgents = 0;
    let outOfOrderAtAgents = 0;
    result.visitors.forEach((visitor, i) => {
      const bodies = result.received.get(visitor.jid) ?? [];
      const expected = Array.from({ length: 12 }, (_, k) => `s2 v${i} m${k + 1}`);
      lost += expected.filter((t) => !bodies.includes(t)).length;
      duplicatesAtAgents += bodies.length - new Set(bodies).size;
      const firsts = expected.map((t) => bodies.indexOf(t));
      outOfOrderAtAgents += firsts.filter((at, k) => k > 0 && at < firsts[k - 1]!).length;
      expect(visitor.duplicatesShown()).toBe(0);
      for (let k = 1; k <= 12; k++) {
        const text = `s2 a${i} r${k}`;
        expect(visitor.agentTexts().get(text)?.size ?? 0).toBe(result.agentLost.includes(text) ? 0 : 1);
      }
    });
    const resumes = result.visitors.flatMap((v) => v.resumeTimesMs);
    expect(resumes.length).toBeGreaterThan(0);
    expect(Math.max(...resumes)).toBeLessThan(10_000);
    expect(lost).toBe(0);
    console.log(
      `kill -9: ${resumes.length} visitors resumed on another process (slowest ${Math.max(...resumes)} ms); ${30 * 12} acknowledged visitor messages, ${lost} lost, ` +
        `${duplicatesAtAgents} duplicated and ${outOfOrderAtAgents} out of order at agents (redelivered by the outbox); 0 duplicates shown to visitors; ` +
        `${result.agentUnconfirmed} agent messages without a receipt, of which ${result.agentLost.length} never reached the visitor (written by ejabberd to the killed process)`,
    );
    // The dead process never released its visitors; once a survivor has taken it over (its
    // heartbeat is gone), the visitors' survivors remove its entries as they release them.
    const redis = new Redis(deployment.redis!.url);
    try {
      await waitUntil("a survivor to take over the killed process", async () => (await redis.zscore("parley:processes", victimId)) === null, { timeoutMs: 20_000 });
      await Promise.all(result.visitors.map((v) => v.close()));
      const holderSets = result.visitors.map((v) => `parley:{v:${v.visitorId}}:holders`);
      await waitUntil("no visitor to list the killed process as holding it", async () => {
        const members = await Promise.all(holderSets.map((key) => redis.smembers(key)));
        return members.every((m) => !m.includes(victimId));
      });
    } finally {
      redis.disconnect();
    }
    await deployment.startBridge(); // back to three for what follows
  });

  it("keeps visitors connected while ejabberd is down for 10 s, then delivers what they said, in order, within 5 s of its return", async () => {
    const visitors = await Promise.all(deployment.bridgeUrls().flatMap((url) => [0, 1, 2].map(() => VisitorClient.connect(url, deployment.siteId))));
    let socketsClosed = 0;
    for (const v of visitors) void v.closed.then(() => socketsClosed++);
    const jid = (v: VisitorClient) => `${deployment.siteId}.${v.welcome.visitorId}@chat.localhost`;
    const agentOf = new Map<VisitorClient, string>();
    await Promise.all(
      visitors.map(async (v) => {
        await v.say("s3 hello");
        agentOf.set(v, (await v.next("agent", (f) => f.state === "joined")).name);
      }),
    );
    await Promise.all(visitors.map((v) => deployment.agents.get(agentOf.get(v)!)!.nextBody(jid(v), (b) => b === "s3 hello")));

    const down = Date.now();
    await deployment.ejabberd.stop();
    await waitUntil("every bridge to report xmpp down", async () => {
      const healths = await Promise.all(deployment.bridgeUrls().map((url) => fetch(`${url}/healthz`).then((r) => r.json() as Promise<{ xmpp: string }>)));
      return healths.every((h) => h.xmpp === "down");
    });
    for (let k = 1; k <= 5; k++) await Promise.all(visitors.map((v) => v.say(`s3 offline ${k}`)));
    // The outage itself lasts 10 s: a deliberate duration, not a wait for an event.
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, 10_000 - (Date.now() - down))));
    await deployment.ejabberd.start();
    const back = Date.now();
    await waitUntil("every bridge to report xmpp up", async () => {
      const healths = await Promise.all(deployment.bridgeUrls().map((url) => fetch(`${url}/healthz`).then((r) => r.json() as Promise<{ xmpp: string }>)));
      return healths.every((h) => h.xmpp === "up");
    }, { timeoutMs: 5_000 });
    const reconnectMs = Date.now() - back;

    // The agents' own connections dropped too: they log in again (ejabberd kept what arrived meanwhile).
    for (const [name, old] of deployment.agents) {
      await old.stop();
      const n = name.split(" ")[1]!;
      const { AgentClient } = await import("../support/agent-client.js");
      deployment.agents.set(name, await AgentClient.connect({ port: deployment.ejabberd.c2sPort, username: `agent${n}`, password: "agent-password" }));
    }
    await Promise.all(
      visitors.map(async (v) => {
        const agent = deployment.agents.get(agentOf.get(v)!)!;
        for (let k = 1; k <= 5; k++) await agent.nextBody(jid(v), (b) => b.startsWith("s3 offline"), 20_000).then((m) => expect(m.getChildText("body")).toBe(`s3 offline ${k}`));
      }),
    );
    expect(socketsClosed).toBe(0);
    console.log(`ejabberd down ${Date.now() - down - (Date.now() - back)} ms: ${visitors.length * 5} messages acknowledged meanwhile, all delivered in order; bridges back ${reconnectMs} ms after the listener; ${socketsClosed} visitor sockets closed`);
    await Promise.all(visitors.map((v) => v.close()));
  });

  it("answers unavailable (never a false ack) while Redis restarts, serves again within 2 s, and loses nothing acknowledged", async () => {
    await waitUntil("agents available again", async () => {
      const list = (await deployment.api("GET", `/api/sites/${deployment.siteId}/agents`)).body as { presence: string }[];
      return list.every((a) => a.presence === "available");
    });
    const visitor = await VisitorClient.connect(deployment.bridgeUrls()[0]!, deployment.siteId);
    const jid = `${deployment.siteId}.${visitor.welcome.visitorId}@chat.localhost`;
    await visitor.say("s4 before", "before");
    const agent = deployment.agents.get((await visitor.next("agent", (f) => f.state === "joined")).name)!;
    await agent.nextBody(jid, (b) => b === "s4 before");

    await deployment.redis!.stop();
    visitor.send({ type: "message", id: "during", text: "s4 during" });
    expect(await visitor.next("error", (e) => e.id === "during")).toMatchObject({ code: "unavailable" });
    const health = await fetch(`${deployment.bridgeUrls()[0]}/healthz`);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ store: "down", xmpp: "up" });

    await deployment.redis!.start();
    const back = Date.now();
    await waitUntil("every bridge to report healthy", async () => {
      const statuses = await Promise.all(deployment.bridgeUrls().map((url) => fetch(`${url}/healthz`).then((r) => r.status)));
      return statuses.every((s) => s === 200);
    }, { timeoutMs: 2_000, intervalMs: 20 });
    const healthyMs = Date.now() - back;
    await visitor.say("s4 during", "during"); // the widget resends what was refused
    await agent.nextBody(jid, (b) => b === "s4 during");
    await agent.sendMessage(jid, "s4 reply");
    await visitor.next("message", (f) => f.text === "s4 reply"); // the bus subscription came back too
    expect(visitor.frames.all.filter((f) => f.type === "ack" && f.id === "during")).toHaveLength(1);
    expect(visitor.ws.readyState).toBe(visitor.ws.OPEN);
    const again = await VisitorClient.connect(deployment.bridgeUrls()[1]!, deployment.siteId, { token: visitor.welcome.token });
    expect(again.welcome.history.map((m) => m.text)).toEqual(["s4 before", "s4 during", "s4 reply"]);
    console.log(`Redis restart: healthy again ${healthyMs} ms after it answered PING; refused while down with "unavailable"; 0 acknowledged messages lost`);
    await Promise.all([visitor.close(), again.close()]);
  });

  it("on SIGTERM tells its visitors to reconnect (1012), flushes and exits 0", async () => {
    const bridge = deployment.bridges.at(-1)!;
    const visitor = await VisitorClient.connect(bridge.httpUrl, deployment.siteId);
    await visitor.say("s5 before shutdown");
    const [code, closed] = await Promise.all([bridge.stop(), visitor.closed]);
    expect(closed.code).toBe(1012);
    expect(code).toBe(0);
    const resumed = await VisitorClient.connect(deployment.bridgeUrls()[0]!, deployment.siteId, { token: visitor.welcome.token });
    expect(resumed.welcome.history.map((m) => m.text)).toContain("s5 before shutdown");
    console.log(`SIGTERM: visitor closed with ${closed.code}, process exited ${code}`);
    await resumed.close();
  });

  it("on SIGTERM exits 0 within seconds even while Redis is unreachable", async () => {
    const bridge = await deployment.startBridge();
    const visitor = await VisitorClient.connect(bridge.httpUrl, deployment.siteId);
    await deployment.redis!.stop();
    try {
      const asked = Date.now();
      const [code, closed] = await Promise.all([bridge.stop(), visitor.closed]);
      const stopMs = Date.now() - asked;
      expect(closed.code).toBe(1012);
      expect(code).toBe(0);
      expect(stopMs).toBeLessThan(15_000);
      console.log(`SIGTERM with Redis down: exited ${code} after ${stopMs} ms`);
    } finally {
      await deployment.redis!.start();
    }
  });
});
