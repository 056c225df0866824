import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { openSync, closeSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { client, type Client } from "@xmpp/client";
import xml, { type Element } from "@xmpp/xml";
import { Redis } from "ioredis";
import type { ServerFrame } from "../stanza-mappers/visitor-protocol.js";
import { startEjabberd, type PrivateEjabberd } from "../test/support/ejabberd.js";
import { startRedis } from "../test/support/redis.js";
import { VisitorClient } from "../test/support/visitor-client.js";
import { BridgeChild, within } from "./bridge-child.js";
import { countHeapObjects, grownMost, totalBytes } from "./heap-snapshot-diff.js";
import { grownPatterns, redisBreakdown, type RedisBreakdown } from "./redis-breakdown.js";
import { rssBytes, round } from "./measure.js";

/**
 * Memory soak: does one bridge process stay flat while visitors, chats, agents and sites
 * come and go? It runs the bridge (bench/bridge-process.ts, --expose-gc) against a private
 * ejabberd and Redis and churns for `--minutes` (default 3):
 * - `--visitors` concurrent visitor loops (default 12), each visitor new or resumed (a
 *   stored token), one or two tabs: browsing only (page, typing, ping), a whole chat
 *   (answered, sometimes transferred, ended by the agent's `!end`), or a chat left open
 *   (ended by the bridge's idle timer once the visitor is gone);
 * - agents answering every message, one of them going offline (a clean logout or a
 *   dropped connection) and back every few seconds;
 * - a short-lived site created through the admin API, used by visitors, deleted;
 * - ejabberd restarted once, half-way (`--no-ejabberd-restart` skips it).
 * Every `--interval` seconds (default 15) it forces a GC in the bridge and records heap
 * used, RSS, active resources (handles, timers) and Redis' used_memory and DBSIZE. It
 * prints a table, writes JSON to bench/results/soak-<time>.json, and reports the slope of
 * each (bytes per visitor churned) over the samples after the warm-up (the first quarter,
 * at least 30 s), plus a last sample after the churn stops and the bridge's timers settle.
 * Between the first sample after the warm-up and the settled one it also reports which
 * Redis key patterns gained members, and with `--heap-snapshots` which kinds of objects
 * gained live instances in the bridge's heap (two V8 heap snapshots, kept in bench/results/
 * for DevTools; writing one costs the bridge ≈ 100 MB of RSS, so RSS is not comparable then).
 *
 *   npm run bench:soak [-- --minutes 3 --interval 15 --visitors 12]
 */

const ROOT = resolve(fileURLToPath(import.meta.url), "..", "..", "..");
const MINUTES = numberArg("--minutes", 3);
const INTERVAL_S = numberArg("--interval", 15);
const CONCURRENCY = numberArg("--visitors", 12);
const EJABBERD_RESTART = !process.argv.includes("--no-ejabberd-restart");
const WARMUP_S = Math.max(30, (MINUTES * 60) / 4);
const HEAP_SNAPSHOTS = process.argv.includes("--heap-snapshots");

const SITE = "soak";
const AGENTS = 6;
const PASSWORD = "soak-password";
const ADMIN_TOKEN = "soak-admin-token-0123456789";
/** Short timers so that what they clean up (visitors gone, idle chats, agents gone) happens many times a run. */
const VISITOR_GRACE_MS = 2000;
const AGENT_GRACE_MS = 3000;
const CHAT_IDLE_MS = 4000;
const HEARTBEAT_MS = 5000;
/** How long the bridge's timers need, after the churn stops, to end what the churn left open. */
const SETTLE_MS = VISITOR_GRACE_MS + CHAT_IDLE_MS + AGENT_GRACE_MS + 6000;
/** A visitor waits this long for an agent's answer (agents may be offline, being moved, or ejabberd restarting). */
const ANSWER_WAIT_MS = 8000;

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const log = (...args: unknown[]) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${args.join(" ")}\n`);
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;

function numberArg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i === -1) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!(value > 0)) throw new Error(`${name} takes a positive number`);
  return value;
}

/** What the churn did so far. */
const done = { visitors: 0, resumed: 0, secondTabs: 0, chatsEnded: 0, chatsLeftOpen: 0, transfers: 0, browseOnly: 0, agentOutages: 0, sitesCreated: 0, sitesDeleted: 0, ejabberdRestarts: 0 };
/** Visitor loops that hit a timeout or a closed socket (expected around agent outages, deleted sites and the ejabberd restart). */
const failures: Record<string, number> = {};
const fail = (what: string) => (failures[what] = (failures[what] ?? 0) + 1);

// ---------------------------------------------------------------- agents

/**
 * An agent's client that answers every visitor message ("bye" gets `!end`, "transfer" a
 * `!transfer` to another online agent) and reconnects while it is meant to be online (an
 * ejabberd restart drops every agent).
 */
class SoakAgent {
  private xmpp: Client | null = null;
  private wantOnline = false;
  private connecting: Promise<void> | null = null;

  constructor(
    readonly username: string,
    private readonly port: number,
    private readonly others: () => SoakAgent[],
  ) {}

  get jid(): string {
    return `${this.username}@localhost`;
  }

  get online(): boolean {
    return this.xmpp?.status === "online";
  }

  async goOnline(): Promise<void> {
    this.wantOnline = true;
    await this.ensureOnline();
  }

  /** A clean logout (unavailable presence) or a dropped connection (the bridge learns it from ejabberd). */
  async goOffline(how: "logout" | "drop"): Promise<void> {
    this.wantOnline = false;
    const xmpp = this.xmpp;
    this.xmpp = null;
    if (!xmpp) return;
    if (how === "drop" || xmpp.status !== "online") xmpp.socket?.destroy();
    else await within(xmpp.stop().catch(() => {}), 5000, () => undefined);
  }

  /** Called every second: brings the agent back if it should be online and is not. */
  async ensureOnline(): Promise<void> {
    if (!this.wantOnline || this.online) return;
    this.connecting ??= this.connect().finally(() => (this.connecting = null));
    await this.connecting;
  }

  private async connect(): Promise<void> {
    this.xmpp?.socket?.destroy();
    const xmpp = client({ service: `xmpp://127.0.0.1:${this.port}`, domain: "localhost", username: this.username, password: PASSWORD, resource: `soak${Date.now() % 100000}` });
    xmpp.reconnect.stop();
    xmpp.on("error", () => {}); // drops are part of the soak
    xmpp.on("stanza", (stanza: Element) => this.onStanza(xmpp, stanza));
    xmpp.iqCallee.set("jabber:iq:roster", "query", () => true);
    this.xmpp = xmpp;
    try {
      await within(xmpp.start(), 10_000, () => {
        throw new Error("login timed out");
      });
      await xmpp.send(xml("presence"));
    } catch {
      xmpp.socket?.destroy();
      if (this.xmpp === xmpp) this.xmpp = null;
    }
  }

  private onStanza(xmpp: Client, stanza: Element): void {
    const from = stanza.attrs.from as string | undefined;
    if (!from) return;
    // A subscription request (the fallback when a roster change could not go through the admin API).
    if (stanza.is("presence") && stanza.attrs.type === "subscribe") return void send(xmpp, xml("presence", { to: from, type: "subscribed" }));
    if (!stanza.is("message") || stanza.attrs.type === "error") return;
    const body = stanza.getChildText("body");
    // Visitors write from <site>.<id>@chat.localhost; `[parley]` lines are notices and replayed context.
    if (!body || body.startsWith("[parley]") || !from.split("@")[0]!.includes(".")) return;
    const to = from.split("/")[0]!;
    const reply = (text: string) => send(xmpp, xml("message", { type: "chat", to, id: `a${Math.random().toString(36).slice(2)}` }, xml("body", {}, text)));
    if (body.startsWith("bye")) {
      reply("bye, thanks for visiting");
      reply("!end");
    } else if (body.startsWith("transfer")) {
      const other = this.others().find((a) => a !== this && a.online);
      reply(other ? `!transfer ${other.jid}` : "nobody to transfer to, staying");
    } else {
      reply(`re: ${body.slice(0, 40)}`);
    }
  }
}

function send(xmpp: Client, stanza: Element): void {
  if (xmpp.status !== "online") return;
  try {
    xmpp.send(stanza).catch(() => {});
  } catch {
    // the socket went away: the visitor's wait times out
  }
}

// ---------------------------------------------------------------- visitors

/** Tokens of recent visitors of the main site: some visitors come back (a resumed session). */
const tokens: string[] = [];

async function visitorLoop(httpUrl: string, sites: () => string[], running: () => boolean): Promise<void> {
  while (running()) {
    const siteId = pick(sites());
    const token = siteId === SITE && tokens.length > 0 && Math.random() < 0.2 ? tokens.splice(Math.floor(Math.random() * tokens.length), 1)[0] : undefined;
    const tabs: VisitorClient[] = [];
    try {
      const first = await within(VisitorClient.connect(httpUrl, siteId, token ? { token } : {}), 10_000, () => {
        throw new Error("connect timed out");
      });
      tabs.push(first);
      if (first.welcome.resumed) done.resumed++;
      if (Math.random() < 0.1) {
        tabs.push(await VisitorClient.connect(httpUrl, siteId, { token: first.welcome.token }));
        done.secondTabs++;
      }
      await oneVisit(first);
      if (siteId === SITE && tokens.length < 200) tokens.push(first.welcome.token);
    } catch (err) {
      fail(String((err as Error).message).replace(/\d+/g, "N").slice(0, 60));
    } finally {
      await Promise.all(tabs.map((tab) => within(tab.close(), 3000, () => tab.ws.terminate())));
      done.visitors++;
    }
  }
}

/** Browsing only, a chat ended by the agent, or a chat left open for the bridge's timers to end. */
async function oneVisit(visitor: VisitorClient): Promise<void> {
  const roll = Math.random();
  visitor.send({ type: "page", url: `https://soak.example/p${Math.floor(roll * 20)}`, title: "Soak page" });
  if (roll < 0.3) {
    visitor.send({ type: "typing", state: "composing" });
    visitor.send({ type: "typing", state: "paused" });
    visitor.send({ type: "ping" });
    await visitor.next("pong", undefined, 5000);
    done.browseOnly++;
    return;
  }
  if (Math.random() < 0.3) visitor.send({ type: "identify", name: `Soak ${done.visitors}`, email: `soak${done.visitors}@example.com` });
  const fromAgent = (f: Extract<ServerFrame, { type: "message" }>) => f.from === "agent";
  await visitor.say("hello, anyone there?");
  if (!visitor.welcome.agentsOnline) return; // offline mode: stored, nobody answers now
  await visitor.next("message", fromAgent, ANSWER_WAIT_MS);
  if (roll < 0.45) {
    done.chatsLeftOpen++;
    return; // gone mid-chat: the visitor-left and chat-idle timers end it
  }
  if (roll < 0.6) {
    await visitor.say("transfer me please");
    await visitor.next("agent", (f) => f.state === "joined", ANSWER_WAIT_MS).catch(() => undefined); // nobody to transfer to: stays
    done.transfers++;
  }
  await visitor.say("one more question");
  await visitor.next("message", fromAgent, ANSWER_WAIT_MS);
  await visitor.say("bye");
  await visitor.next("ended", undefined, ANSWER_WAIT_MS);
  done.chatsEnded++;
}

// ---------------------------------------------------------------- the churn of agents and sites

async function agentChurn(agents: SoakAgent[], running: () => boolean): Promise<void> {
  while (running()) {
    await sleep(3000 + Math.random() * 3000);
    if (!running()) return;
    const agent = pick(agents);
    await agent.goOffline(Math.random() < 0.5 ? "logout" : "drop");
    done.agentOutages++;
    // Past the agent grace period half of the time: their chats move to another agent.
    await sleep(Math.random() < 0.5 ? AGENT_GRACE_MS + 1500 : 1000);
    await agent.goOnline();
  }
}

async function siteChurn(api: (method: string, path: string, body?: unknown) => Promise<void>, tempSites: string[], running: () => boolean): Promise<void> {
  let n = 0;
  while (running()) {
    const siteId = `soak-tmp-${++n}`;
    await api("PUT", `/api/sites/${siteId}`, { name: `Temp ${n}`, maxChatsPerAgent: 5, welcome: "Hello from a short-lived site" });
    for (let a = 1; a <= 3; a++) await api("PUT", `/api/sites/${siteId}/agents/${encodeURIComponent(`agent${a}@localhost`)}`, { name: `Agent ${a}` });
    done.sitesCreated++;
    tempSites.push(siteId);
    await sleep(12_000);
    tempSites.splice(tempSites.indexOf(siteId), 1);
    await api("DELETE", `/api/sites/${siteId}`);
    done.sitesDeleted++;
    await sleep(3000);
  }
}

async function restartEjabberd(ejabberd: PrivateEjabberd): Promise<void> {
  log("restarting ejabberd");
  await ejabberd.stop();
  await ejabberd.start();
  done.ejabberdRestarts++;
  log("ejabberd back");
}

// ---------------------------------------------------------------- sampling

interface Sample {
  t: number;
  phase: "warm-up" | "churn" | "settled";
  visitors: number;
  chatsEnded: number;
  heapUsed: number;
  external: number;
  rss: number;
  activeResources: number;
  resourcesByType: Record<string, number>;
  redisUsedMemory: number;
  redisKeys: number;
}

async function sample(bridge: BridgeChild, redis: Redis, startedAt: number, phase: Sample["phase"]): Promise<Sample> {
  await bridge.request("gc");
  const stats = (await bridge.request("stats")) as { mem: { heapUsed: number; external: number }; activeResources: Record<string, number> };
  const memory = await redis.info("memory");
  const usedMemory = Number(/^used_memory:(\d+)/m.exec(memory)?.[1] ?? NaN);
  return {
    t: Math.round((Date.now() - startedAt) / 1000),
    phase,
    visitors: done.visitors,
    chatsEnded: done.chatsEnded,
    heapUsed: stats.mem.heapUsed,
    external: stats.mem.external,
    rss: rssBytes(bridge.pid),
    activeResources: Object.values(stats.activeResources).reduce((a, b) => a + b, 0),
    resourcesByType: stats.activeResources,
    redisUsedMemory: usedMemory,
    redisKeys: await redis.dbsize(),
  };
}

/** Least-squares slope of y over x. */
function slope(points: { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((s, p) => s + p.x, 0) / n;
  const my = points.reduce((s, p) => s + p.y, 0) / n;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  return sxx === 0 ? NaN : points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0) / sxx;
}

const signed = (n: number) => (n >= 0 ? `+${n}` : String(n));
const mb = (bytes: number) => (bytes / 2 ** 20).toFixed(2);

function printTable(samples: Sample[]): void {
  const lines = [
    "| t (s) | phase | visitors churned | chats ended | heap used (MB) | RSS (MB) | active resources | Redis used_memory (MB) | Redis keys |",
    "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ...samples.map((s) => `| ${s.t} | ${s.phase} | ${s.visitors} | ${s.chatsEnded} | ${mb(s.heapUsed)} | ${mb(s.rss)} | ${s.activeResources} | ${mb(s.redisUsedMemory)} | ${s.redisKeys} |`),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}

// ---------------------------------------------------------------- the run

async function main(): Promise<void> {
  const startedAtIso = new Date().toISOString();
  const toStop: (() => Promise<unknown>)[] = [];
  const keepAlive = setInterval(() => {}, 1000);
  const stopAll = async () => {
    for (const stop of toStop.splice(0).reverse()) await within(stop().catch(() => {}), 15_000, () => undefined);
    clearInterval(keepAlive);
  };
  process.once("SIGINT", () => void stopAll().then(() => process.exit(130)));
  process.once("SIGTERM", () => void stopAll().then(() => process.exit(143)));
  const samples: Sample[] = [];
  try {
    log(`${MINUTES} min of churn, ${CONCURRENCY} concurrent visitors, a GC'd sample every ${INTERVAL_S} s; starting private ejabberd and Redis`);
    const ejabberd = await startEjabberd({ resumeTimeoutSeconds: 1 });
    toStop.push(() => ejabberd.destroy());
    const redisServer = await startRedis({ appendonly: false });
    toStop.push(() => redisServer.destroy());
    const redis = new Redis(redisServer.url);
    toStop.push(() => redis.quit());
    for (let a = 1; a <= AGENTS; a++) await ejabberd.register(`agent${a}`, PASSWORD);

    const dir = await mkdtemp(join(tmpdir(), "parley-soak-"));
    toStop.push(() => rm(dir, { recursive: true, force: true }));
    const sitesFile = join(dir, "sites.yml");
    const agentLines = Array.from({ length: AGENTS }, (_, i) => `      - agent${i + 1}@localhost`).join("\n");
    await writeFile(sitesFile, `sites:\n  - id: ${SITE}\n    name: Soak\n    maxChatsPerAgent: 5\n    answerTimeoutSeconds: 30\n    agents:\n${agentLines}\n`);
    await mkdir(join(ROOT, "bench", "results"), { recursive: true });
    const logFd = openSync(join(ROOT, "bench", "results", "soak-bridge.log"), "w");
    toStop.push(async () => closeSync(logFd));
    const bridge = await BridgeChild.start(
      {
        PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${ejabberd.componentPort}`,
        PARLEY_XMPP_DOMAIN: ejabberd.componentDomain,
        PARLEY_XMPP_SECRET: ejabberd.secret,
        PARLEY_REDIS_URL: redisServer.url,
        PARLEY_HTTP_HOST: "127.0.0.1",
        PARLEY_HTTP_PORT: "0",
        PARLEY_ADMIN_TOKEN: ADMIN_TOKEN,
        PARLEY_EJABBERD_API_URL: ejabberd.apiUrl,
        PARLEY_SITES_FILE: sitesFile,
        PARLEY_VISITOR_GRACE_MS: String(VISITOR_GRACE_MS),
        PARLEY_AGENT_GRACE_MS: String(AGENT_GRACE_MS),
        PARLEY_CHAT_IDLE_MS: String(CHAT_IDLE_MS),
        PARLEY_HEARTBEAT_MS: String(HEARTBEAT_MS),
        PARLEY_UPGRADE_RATE: "100000/s burst 100000", // every soak visitor comes from loopback
        PARLEY_SOCKETS_PER_ADDRESS: "1000000",
        PARLEY_LOG_LEVEL: process.env.BENCH_BRIDGE_LOG_LEVEL ?? "warn",
      },
      { maxOldSpaceMb: 1024, logFd },
    );
    toStop.push(() => bridge.stop());
    const api = async (method: string, path: string, body?: unknown) => {
      const response = await fetch(new URL(path, bridge.httpUrl), {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body ? { "content-type": "application/json" } : {}) },
        ...(body ? { body: JSON.stringify(body) } : {}),
      });
      if (!response.ok) throw new Error(`${method} ${path}: ${response.status} ${await response.text()}`);
    };

    const agents: SoakAgent[] = [];
    for (let a = 1; a <= AGENTS; a++) agents.push(new SoakAgent(`agent${a}`, ejabberd.c2sPort, () => agents));
    await Promise.all(agents.map((agent) => agent.goOnline()));
    toStop.push(() => Promise.all(agents.map((agent) => agent.goOffline("logout"))));

    const startedAt = Date.now();
    const endAt = startedAt + MINUTES * 60_000;
    const running = () => Date.now() < endAt;
    const tempSites: string[] = [];
    const sites = () => (tempSites.length > 0 && Math.random() < 0.2 ? tempSites : [SITE]);
    samples.push(await sample(bridge, redis, startedAt, "warm-up"));
    log(`bridge ${bridge.httpUrl} (pid ${bridge.pid}); churning`);

    const supervisor = setInterval(() => void Promise.all(agents.map((agent) => agent.ensureOnline())), 1000);
    const churn = [
      ...Array.from({ length: CONCURRENCY }, () => visitorLoop(bridge.httpUrl, sites, running)),
      agentChurn(agents, running),
      siteChurn(api, tempSites, running).catch((err: unknown) => log(`site churn stopped: ${(err as Error).message}`)),
      EJABBERD_RESTART && MINUTES >= 2 ? sleep(MINUTES * 30_000).then(() => restartEjabberd(ejabberd)).catch((err: unknown) => log(`ejabberd restart failed: ${(err as Error).message}`)) : Promise.resolve(),
    ];
    const stamp = startedAtIso.replace(/[:.]/g, "-");
    let redisAfterWarmUp: RedisBreakdown = new Map();
    const snapshotFiles = [join(ROOT, "bench", "results", `soak-${stamp}-after-warm-up.heapsnapshot`), join(ROOT, "bench", "results", `soak-${stamp}-settled.heapsnapshot`)] as const;
    while (running()) {
      await sleep(Math.min(INTERVAL_S * 1000, Math.max(0, endAt - Date.now())));
      const s = await sample(bridge, redis, startedAt, Date.now() - startedAt < WARMUP_S * 1000 ? "warm-up" : "churn");
      if (s.phase === "churn" && samples.every((earlier) => earlier.phase === "warm-up")) {
        redisAfterWarmUp = await redisBreakdown(redis);
        if (HEAP_SNAPSHOTS) await bridge.request("snapshot", snapshotFiles[0]);
      }
      samples.push(s);
      log(`t=${s.t}s visitors=${s.visitors} heap=${mb(s.heapUsed)} MB rss=${mb(s.rss)} MB resources=${s.activeResources} redis=${mb(s.redisUsedMemory)} MB keys=${s.redisKeys}`);
    }
    await Promise.all(churn);
    clearInterval(supervisor);
    await Promise.all(agents.map((agent) => agent.goOnline()));
    log(`churn over; letting the bridge's timers settle (${SETTLE_MS / 1000} s)`);
    await sleep(SETTLE_MS);
    samples.push(await sample(bridge, redis, startedAt, "settled"));
    const redisGrown = grownPatterns(redisAfterWarmUp, await redisBreakdown(redis));
    let heapGrown: ReturnType<typeof grownMost> = [];
    let heapTotals: { before: ReturnType<typeof totalBytes>; after: ReturnType<typeof totalBytes> } | null = null;
    if (HEAP_SNAPSHOTS) {
      await bridge.request("snapshot", snapshotFiles[1]);
      const [before, after] = [await countHeapObjects(snapshotFiles[0]), await countHeapObjects(snapshotFiles[1])];
      heapGrown = grownMost(before, after);
      heapTotals = { before: totalBytes(before), after: totalBytes(after) };
    }

    const churned = samples.filter((s) => s.phase !== "warm-up");
    const per = (y: (s: Sample) => number) => round(slope(churned.map((s) => ({ x: s.visitors, y: y(s) }))), 1);
    const settled = samples.at(-1)!;
    const firstAfterWarmUp = churned[0]!;
    const summary = {
      slopeBytesPerVisitor: { heapUsed: per((s) => s.heapUsed), rss: per((s) => s.rss), activeResources: per((s) => s.activeResources), redisUsedMemory: per((s) => s.redisUsedMemory), redisKeys: per((s) => s.redisKeys) },
      settledMinusFirstAfterWarmUp: {
        visitors: settled.visitors - firstAfterWarmUp.visitors,
        heapUsedBytes: settled.heapUsed - firstAfterWarmUp.heapUsed,
        activeResources: settled.activeResources - firstAfterWarmUp.activeResources,
      },
    };
    printTable(samples);
    process.stdout.write(
      `\nafter warm-up (${churned.length} samples, ${firstAfterWarmUp.visitors}→${settled.visitors} visitors): heap ${summary.slopeBytesPerVisitor.heapUsed} B/visitor, RSS ${summary.slopeBytesPerVisitor.rss} B/visitor, ` +
        `active resources ${summary.slopeBytesPerVisitor.activeResources}/visitor, Redis used_memory ${summary.slopeBytesPerVisitor.redisUsedMemory} B/visitor, Redis keys ${summary.slopeBytesPerVisitor.redisKeys}/visitor\n` +
        `churn: ${JSON.stringify(done)}\nvisitor loops cut short: ${JSON.stringify(failures)}\n` +
        `Redis, from the first sample after warm-up to the settled one (key pattern: keys, members):\n` +
        redisGrown.map((g) => `  ${g.pattern}: ${signed(g.keys)} keys, ${signed(g.members)} members`).join("\n") +
        "\n" +
        (HEAP_SNAPSHOTS
          ? `bridge heap, same interval: compiled code ${signed(heapTotals!.after.code - heapTotals!.before.code)} B, everything else ${signed(heapTotals!.after.other - heapTotals!.before.other)} B; ` +
            `grown most (kind: count, bytes):\n${heapGrown.map((g) => `  ${g.kind}: ${signed(g.count)}, ${signed(g.bytes)} B`).join("\n")}\n`
          : ""),
    );
    const file = join(ROOT, "bench", "results", `soak-${stamp}.json`);
    await writeFile(
      file,
      JSON.stringify(
        { startedAt: startedAtIso, machine: { nproc: cpus().length, node: process.version }, settings: { minutes: MINUTES, intervalSeconds: INTERVAL_S, concurrency: CONCURRENCY, warmUpSeconds: WARMUP_S, ejabberdRestart: EJABBERD_RESTART, heapSnapshots: HEAP_SNAPSHOTS }, churn: done, failures, summary, redisGrown, heapGrown, heapTotals, samples },
        null,
        2,
      ),
    );
    log(`written ${file}`);
  } finally {
    await stopAll();
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`soak failed: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
