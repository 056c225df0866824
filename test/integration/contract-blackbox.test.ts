import { execFileSync, spawn } from "node:child_process";
import { createHmac } from "node:crypto";
import { mkdtemp, writeFile } from "node:fs/promises";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import type { Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { AgentClient, bare } from "../support/agent-client.js";
import { launchBrowser } from "../support/browser.js";
import { bundleBridge, startBridgeProcess, type BridgeProcess } from "../support/bridge-process.js";
import { startEjabberd, type PrivateEjabberd } from "../support/ejabberd.js";
import { startRedis, type PrivateRedis } from "../support/redis.js";
import { VisitorClient } from "../support/visitor-client.js";
import { widgetOn } from "../support/widget-page.js";
import { waitUntil } from "../support/wait.js";

// An outsider's check of CONTRACT.md: the real `parley` entry point as a separate process,
// configured only through the environment variables of §2, a private ejabberd and Redis,
// real XMPP clients as agents, raw WebSockets and Chromium as visitors, fetch for the admin
// API. Every assertion is on something the contract (or, where it is silent, the README)
// promises; nothing here reads the bridge's internals.

const TOKEN = "blackbox-admin-token-0123456789";
const PASSWORD = "agent-password";
const DOMAIN = "chat.localhost"; // PARLEY_XMPP_DOMAIN is left unset: its default
const CHATSTATES = "http://jabber.org/protocol/chatstates";
const RECEIPTS = "urn:xmpp:receipts";
const STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas";

let ejabberd: PrivateEjabberd;
let redis: PrivateRedis;
let entry: string;
let bridge: BridgeProcess;
let env: Record<string, string>;
let hooks: Server;
let hookUrl: string;
const hookCalls: { headers: IncomingHttpHeaders; body: string }[] = [];
let failNextHook = false;
const agents: AgentClient[] = [];
const visitors: VisitorClient[] = [];

beforeAll(async () => {
  const bundled = bundleBridge();
  // `npm ci` builds the widget (dist/widget.js), which the bridge serves; a checkout has to build it.
  execFileSync(process.execPath, ["widget/build.mjs"], { cwd: fileURLToPath(new URL("../..", import.meta.url)) });
  ejabberd = await startEjabberd({ resumeTimeoutSeconds: 1 });
  redis = await startRedis();
  entry = await bundled;
  for (const user of ["agent1", "agent2", "agent3", "agent4", "agent5", "agent6"]) await ejabberd.register(user, PASSWORD);
  hooks = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString("utf8")));
    req.on("end", () => {
      hookCalls.push({ headers: req.headers, body });
      const fail = failNextHook;
      failNextHook = false;
      res.writeHead(fail ? 500 : 204).end();
    });
  });
  hooks.listen(0, "127.0.0.1");
  await new Promise((resolve) => hooks.once("listening", resolve));
  hookUrl = `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`;
  env = {
    PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${ejabberd.componentPort}`,
    PARLEY_XMPP_SECRET: ejabberd.secret,
    PARLEY_REDIS_URL: redis.url,
    PARLEY_ADMIN_TOKEN: TOKEN,
    PARLEY_EJABBERD_API_URL: ejabberd.apiUrl,
    PARLEY_VISITOR_GRACE_MS: "300",
    PARLEY_AGENT_GRACE_MS: "1000",
    PARLEY_LOG_LEVEL: "warn",
  };
  bridge = await startBridgeProcess(entry, env);
}, 60_000);

afterAll(async () => {
  await Promise.allSettled([...agents, ...visitors].map((c) => c.stop()));
  await bridge?.stop();
  hooks?.close();
  await Promise.allSettled([ejabberd?.destroy(), redis?.destroy()]);
});

async function api(method: string, path: string, body?: unknown, token: string | null = TOKEN, base = bridge.httpUrl) {
  const response = await fetch(new URL(path, base), {
    method,
    headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: typeof body === "string" ? body : JSON.stringify(body) }),
  });
  const text = await response.text();
  let json: any = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = text;
  }
  return { status: response.status, body: json };
}

async function agent(username: string, show?: string): Promise<AgentClient> {
  const client = await AgentClient.connect({ port: ejabberd.c2sPort, username, password: PASSWORD, ...(show ? { show } : {}) });
  agents.push(client);
  return client;
}

async function visitor(siteId: string, options: { token?: string; origin?: string } = {}): Promise<VisitorClient> {
  const client = await VisitorClient.connect(bridge.httpUrl, siteId, options);
  visitors.push(client);
  return client;
}

async function waitForPresence(siteId: string, jid: string, presence: string) {
  await waitUntil(`${jid} to be ${presence} on ${siteId}`, async () => {
    const list = (await api("GET", `/api/sites/${siteId}/agents`)).body as { jid: string; presence: string }[];
    return list.find((a) => a.jid === jid)?.presence === presence;
  });
}

async function siteWithAgents(siteId: string, site: Record<string, unknown>, usernames: string[]) {
  expect((await api("PUT", `/api/sites/${siteId}`, site)).status).toBe(201);
  for (const u of usernames) expect((await api("PUT", `/api/sites/${siteId}/agents/${u}@localhost`, { name: u.toUpperCase() })).status).toBe(201);
}

/** The next message with this body whose sender is on the component domain. */
function bodyFromVisitor(a: AgentClient, text: string): Promise<Element> {
  return a.messages.next((m) => m.attrs.type !== "error" && bare(m.attrs.from).endsWith(`@${DOMAIN}`) && m.getChildText("body") === text, `"${text}"`);
}

function reply(a: AgentClient, from: string, match: (body: string) => boolean = () => true) {
  return a.nextBody(from, match);
}

function errorCondition(stanza: Element): string | undefined {
  return stanza.getChild("error")?.children.find((c): c is Element => typeof c !== "string" && c.attrs.xmlns === STANZAS)?.name;
}

/** Opens a raw socket and resolves with its first frame (or the refused upgrade's status). */
function rawUpgrade(path: string, headers: Record<string, string> = {}): Promise<{ status: number; ws?: WebSocket; first?: any }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(new URL(path, bridge.httpUrl.replace(/^http/, "ws")), { headers });
    ws.once("unexpected-response", (_req, res) => resolve({ status: res.statusCode ?? 0 }));
    ws.once("message", (data) => resolve({ status: 101, ws, first: JSON.parse(String(data)) }));
    ws.once("error", reject);
  });
}

describe("§2 configuration", () => {
  function runBridge(extra: Record<string, string | undefined>): Promise<{ code: number | null; stderr: string }> {
    const base: Record<string, string> = { PATH: process.env.PATH ?? "", PARLEY_XMPP_SECRET: "s", PARLEY_XMPP_SERVICE: "xmpp://127.0.0.1:1", PARLEY_HTTP_PORT: "0" };
    for (const [k, v] of Object.entries(extra)) {
      if (v === undefined) delete base[k];
      else base[k] = v;
    }
    const child = spawn(process.execPath, [entry], { env: base, stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        reject(new Error(`the bridge kept running with ${JSON.stringify(extra)}; stderr: ${stderr}`));
      }, 15_000);
      child.once("exit", (code) => {
        clearTimeout(timer);
        resolve({ code, stderr });
      });
    });
  }

  it("refuses bad configuration with one clear line naming the variable", async () => {
    const cases: [Record<string, string | undefined>, string][] = [
      [{ PARLEY_XMPP_SECRET: undefined }, "PARLEY_XMPP_SECRET"],
      [{ PARLEY_REDIS_URL: "redis://127.0.0.1:1", PARLEY_REDIS_CLUSTER: "127.0.0.1:1" }, "PARLEY_REDIS_CLUSTER"],
      [{ PARLEY_VISITOR_RATE: "lots" }, "PARLEY_VISITOR_RATE"],
      [{ PARLEY_HTTP_PORT: "eighty" }, "PARLEY_HTTP_PORT"],
      [{ PARLEY_VISITOR_GRACE_MS: "-1" }, "PARLEY_VISITOR_GRACE_MS"],
      [{ PARLEY_AGENT_GRACE_MS: "soon" }, "PARLEY_AGENT_GRACE_MS"],
      [{ PARLEY_LOG_LEVEL: "loud" }, "PARLEY_LOG_LEVEL"],
      [{ PARLEY_XMPP_SERVICE: "not a url" }, "PARLEY_XMPP_SERVICE"],
      [{ PARLEY_XMPP_DOMAIN: "not a domain!" }, "PARLEY_XMPP_DOMAIN"],
      [{ PARLEY_REDIS_URL: "http://x" }, "PARLEY_REDIS_URL"],
      [{ PARLEY_EJABBERD_API_URL: "nope" }, "PARLEY_EJABBERD_API_URL"],
      [{ PARLEY_EJABBERD_API_AUTH: "no-colon" }, "PARLEY_EJABBERD_API_AUTH"],
    ];
    const results = await Promise.all(cases.map(([extra]) => runBridge(extra)));
    results.forEach(({ code, stderr }, i) => {
      const [extra, variable] = cases[i]!;
      const context = `${JSON.stringify(extra)} → exit ${code}, stderr: ${stderr}`;
      expect(code, context).not.toBe(0);
      expect(code, context).not.toBeNull();
      expect(stderr.trimEnd().split("\n"), context).toHaveLength(1);
      expect(stderr, context).toContain(variable);
    });
  });
});

describe("§3 admin API", () => {
  it("answers 401 without or with a wrong token, in the error shape", async () => {
    for (const token of [null, "wrong-token-0123456789"]) {
      const r = await api("GET", "/api/sites", undefined, token);
      expect(r.status).toBe(401);
      expect(r.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    }
  });

  it("creates, reads, replaces and deletes sites", async () => {
    const created = await api("PUT", "/api/sites/crud-1", { name: "Crud One", origins: ["https://a.example"], welcome: "Hi", offlineMessage: "Away", webhookUrl: "https://h.example/x", webhookSecret: "0123456789abcdef0123" });
    expect(created.status).toBe(201);
    const one = await api("GET", "/api/sites/crud-1");
    expect(one.status).toBe(200);
    expect(one.body).toMatchObject({ id: "crud-1", name: "Crud One", origins: ["https://a.example"], maxChatsPerAgent: 3, welcome: "Hi", offlineMessage: "Away", webhookUrl: "https://h.example/x" });
    expect(JSON.stringify(one.body)).not.toContain("0123456789abcdef0123"); // the secret is not echoed
    expect((await api("PUT", "/api/sites/crud-1", { name: "Crud 1", maxChatsPerAgent: 5 })).status).toBe(200);
    expect((await api("GET", "/api/sites/crud-1")).body).toMatchObject({ name: "Crud 1", maxChatsPerAgent: 5 });
    const list = await api("GET", "/api/sites");
    expect(list.status).toBe(200);
    expect(JSON.stringify(list.body)).toContain('"crud-1"');
    expect((await api("DELETE", "/api/sites/crud-1")).status).toBe(204);
    const gone = await api("GET", "/api/sites/crud-1");
    expect(gone.status).toBe(404);
    expect(gone.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
  });

  it("answers 400 naming the field", async () => {
    const cases: [string, string, unknown, string][] = [
      ["PUT", "/api/sites/bad-body", {}, "name"],
      ["PUT", "/api/sites/bad-body", { name: 5 }, "name"],
      ["PUT", "/api/sites/bad-body", { name: "x", maxChatsPerAgent: "three" }, "maxChatsPerAgent"],
      ["PUT", "/api/sites/bad-body", { name: "x", maxChatsPerAgent: 1.5 }, "maxChatsPerAgent"],
      ["PUT", "/api/sites/bad-body", { name: "x", origins: "https://a.example" }, "origins"],
      ["PUT", "/api/sites/bad-body", { name: "x", welcome: 7 }, "welcome"],
      ["PUT", "/api/sites/bad-body", { name: "x", offlineMessage: [] }, "offlineMessage"],
      ["PUT", "/api/sites/bad-body", { name: "x", webhookUrl: "not a url" }, "webhookUrl"],
      ["PUT", "/api/sites/bad-body", { name: "x", webhookSecret: 12 }, "webhookSecret"],
      ["PUT", "/api/sites/Bad_Id", { name: "x" }, "siteId"],
      ["PUT", `/api/sites/${"a".repeat(33)}`, { name: "x" }, "siteId"],
    ];
    for (const [method, path, body, field] of cases) {
      const r = await api(method, path, body);
      expect(r.status, `${path} ${JSON.stringify(body)}`).toBe(400);
      expect(r.body, `${path} ${JSON.stringify(body)}`).toEqual({ error: { code: expect.any(String), message: expect.stringContaining(field) } });
    }
    const notJson = await api("PUT", "/api/sites/bad-body", "{not json");
    expect(notJson.status).toBe(400);
    expect(notJson.body.error.code).toEqual(expect.any(String));
    await api("PUT", "/api/sites/bad-state", { name: "x" });
    const state = await api("GET", "/api/sites/bad-state/chats?state=open");
    expect(state.status).toBe(400);
    expect(state.body.error.message).toContain("state");
    const agentName = await api("PUT", "/api/sites/bad-state/agents/a@localhost", { name: 5 });
    expect(agentName.status).toBe(400);
    expect(agentName.body.error.message).toContain("name");
    const badJid = await api("PUT", "/api/sites/bad-state/agents/not@a@jid", {});
    expect(badJid.status).toBe(400);
    expect(badJid.body.error.message).toContain("jid");
  });

  it("answers 404 for what is unknown", async () => {
    for (const [method, path, body] of [
      ["GET", "/api/sites/no-such-site", undefined],
      ["DELETE", "/api/sites/no-such-site", undefined],
      ["GET", "/api/sites/no-such-site/agents", undefined],
      ["GET", "/api/sites/no-such-site/visitors", undefined],
      ["GET", "/api/sites/no-such-site/chats", undefined],
      ["PUT", "/api/sites/no-such-site/agents/a@localhost", {}],
      ["GET", "/api/chats/no-such-chat", undefined],
    ] as const) {
      const r = await api(method, path, body);
      expect(r.status, `${method} ${path}`).toBe(404);
      expect(r.body, `${method} ${path}`).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
    }
    await api("PUT", "/api/sites/agentless", { name: "Agentless" });
    expect((await api("DELETE", "/api/sites/agentless/agents/nobody@localhost")).status).toBe(404);
  });

  it("adds, renames, lists and removes agents with presence and activeChats", async () => {
    await api("PUT", "/api/sites/roster-api", { name: "Roster API" });
    expect((await api("PUT", "/api/sites/roster-api/agents/agent5@localhost", { name: "Five" })).status).toBe(201);
    expect((await api("PUT", "/api/sites/roster-api/agents/agent5@localhost", { name: "Fünf" })).status).toBe(200);
    const list = await api("GET", "/api/sites/roster-api/agents");
    expect(list.status).toBe(200);
    expect(list.body).toEqual([expect.objectContaining({ jid: "agent5@localhost", name: "Fünf", presence: "offline", activeChats: 0 })]);
    expect((await api("DELETE", "/api/sites/roster-api/agents/agent5@localhost")).status).toBe(204);
    expect((await api("GET", "/api/sites/roster-api/agents")).body).toEqual([]);
  });
});

describe("§4 visitor WebSocket", () => {
  it("refuses unknown sites with 404 and foreign origins with 403", async () => {
    await api("PUT", "/api/sites/guarded", { name: "Guarded", origins: ["https://shop.example"] });
    expect((await rawUpgrade("/visitor?site=nowhere")).status).toBe(404);
    expect((await rawUpgrade("/visitor?site=guarded", { origin: "https://evil.example" })).status).toBe(403);
    expect((await rawUpgrade("/visitor?site=guarded")).status).toBe(403); // no Origin is not one of them
    const ok = await rawUpgrade("/visitor?site=guarded", { origin: "https://shop.example" });
    expect(ok.first.type).toBe("welcome");
    ok.ws!.close();
  });

  it("greets with a welcome frame first, answers ping, and refuses bad input without closing", async () => {
    await api("PUT", "/api/sites/frames", { name: "Frames" });
    const v = await visitor("frames");
    expect(v.welcome).toMatchObject({ type: "welcome", visitorId: expect.any(String), token: expect.any(String), resumed: false, agentsOnline: false, agent: null, history: [] });
    v.send({ type: "ping" });
    await v.next("pong");
    const bad: [unknown, string[], string?][] = [
      ["not json", ["bad_frame"]],
      [{ type: "dance" }, ["bad_frame", "invalid"]],
      [[1, 2], ["bad_frame", "invalid"]],
      [{ type: "message", text: "no id" }, ["invalid"]],
      [{ type: "message", id: "", text: "empty id" }, ["invalid"]],
      [{ type: "message", id: "x".repeat(65), text: "long id" }, ["invalid"]],
      [{ type: "message", id: "empty", text: "" }, ["invalid"], "empty"],
      [{ type: "message", id: "long", text: "x".repeat(4001) }, ["invalid"], "long"],
      [{ type: "typing", state: "sleeping" }, ["invalid"]],
      [{ type: "identify", name: 5 }, ["invalid"]],
      [{ type: "message", id: "extra", text: "hi", replyTo: "m1" }, ["invalid"], "extra"], // README: unknown fields are refused
    ];
    for (const [frame, codes, id] of bad) {
      v.send(frame);
      const error = await v.next("error");
      expect(codes, JSON.stringify(frame)).toContain(error.code);
      expect(error.message).toEqual(expect.any(String));
      if (id) expect(error.id, JSON.stringify(frame)).toBe(id);
    }
    v.ws.send(Buffer.from(JSON.stringify({ type: "ping" })), { binary: true }); // JSON *text* frames only
    expect((await v.next("error")).code).toBe("bad_frame");
    // Invalid UTF-8 in a text frame: an error frame, and the socket stays usable.
    v.ws.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
    expect((await v.next("error")).code).toBe("bad_frame");
    expect(await v.say("x".repeat(4000))).toMatchObject({ type: "ack", messageId: expect.any(String), ts: expect.any(Number) });
    v.send({ type: "ping" });
    await v.next("pong");
  });

  it("takes frames up to 16 KiB and closes 1009 after too_large beyond", async () => {
    await api("PUT", "/api/sites/sizes", { name: "Sizes" });
    const v = await visitor("sizes");
    // 4000 characters of 4 bytes each: within both the text limit and 16 KiB.
    const frame = JSON.stringify({ type: "message", id: "astral", text: "😀".repeat(4000) });
    expect(Buffer.byteLength(frame)).toBeLessThanOrEqual(16 * 1024);
    v.send(frame);
    const answer = await v.frames.next((f) => (f.type === "ack" || f.type === "error") && (f as { id?: string }).id === "astral", "ack or error for astral");
    expect(answer, "4000 astral characters are 4000 chars").toMatchObject({ type: "ack" });
    const exactly = JSON.stringify({ type: "page", url: "https://shop.example/", title: "" });
    const padded = exactly.replace('"title":""', `"title":"${"t".repeat(16 * 1024 - exactly.length)}"`);
    expect(Buffer.byteLength(padded)).toBe(16 * 1024);
    v.send(padded); // may be invalid (a long title) but is not too large
    v.send({ type: "ping" });
    const next = await v.frames.next((f) => f.type === "pong" || f.type === "error", "pong or error");
    if (next.type === "error") expect(next.code).not.toBe("too_large");
    const w = await visitor("sizes");
    w.send(JSON.stringify({ type: "ping", pad: "p".repeat(16 * 1024) }));
    expect((await w.next("error")).code).toBe("too_large");
    expect((await w.closed).code).toBe(1009);
    v.send({ type: "ping" });
    await v.next("pong"); // the other visitor is untouched
  });

  it("accepts a burst of 20 messages and closes a sustained flood with 1008", async () => {
    await api("PUT", "/api/sites/flood", { name: "Flood" });
    const v = await visitor("flood");
    const bystander = await visitor("flood");
    for (let i = 0; i < 20; i++) v.send({ type: "message", id: `b${i}`, text: `burst ${i}` });
    for (let i = 0; i < 20; i++) await v.next("ack", (a) => a.id === `b${i}`);
    expect(v.frames.pending((f) => f.type === "error")).toEqual([]);
    for (let i = 0; i < 400 && v.ws.readyState === WebSocket.OPEN; i++) v.send({ type: "message", id: `f${i}`, text: `flood ${i}` });
    expect((await v.next("error", (e) => e.code === "rate_limited")).code).toBe("rate_limited");
    expect((await v.closed).code).toBe(1008);
    bystander.send({ type: "ping" });
    await bystander.next("pong");
    await waitUntil("the bridge to stay healthy", async () => (await bridge.health()).status === 200);
  });

  it("resumes a visitor by token, starts a new one for unknown or foreign tokens, and acks resends once", async () => {
    await api("PUT", "/api/sites/resume", { name: "Resume" });
    await api("PUT", "/api/sites/resume-other", { name: "Other" });
    const first = await visitor("resume");
    const ack = await first.say("remember me", "same-id");
    const again = await first.say("remember me", "same-id");
    expect(again.messageId).toBe(ack.messageId);
    await first.close();
    const back = await visitor("resume", { token: first.welcome.token });
    expect(back.welcome).toMatchObject({ resumed: true, visitorId: first.welcome.visitorId });
    expect(back.welcome.history.filter((m) => m.from === "visitor").map((m) => m.text)).toEqual(["remember me"]);
    const resent = await back.say("remember me", "same-id");
    expect(resent.messageId).toBe(ack.messageId);
    const chats = (await api("GET", "/api/sites/resume/chats?state=queued")).body as { id: string }[];
    expect(chats).toHaveLength(1);
    const transcript = (await api("GET", `/api/chats/${chats[0]!.id}`)).body;
    expect(transcript.messages.filter((m: { from: string }) => m.from === "visitor")).toHaveLength(1);
    const unknown = await visitor("resume", { token: "no-such-token" });
    expect(unknown.welcome.resumed).toBe(false);
    expect(unknown.welcome.visitorId).not.toBe(first.welcome.visitorId);
    const foreign = await visitor("resume-other", { token: first.welcome.token });
    expect(foreign.welcome.resumed).toBe(false);
    expect(foreign.welcome.visitorId).not.toBe(first.welcome.visitorId);
  });
});

describe("§5 XMPP behaviour and §4 tabs", () => {
  it("routes a chat into the agent's roster with presence, chat states, receipts, commands and errors", async () => {
    await siteWithAgents("xs", { name: "XS Shop", webhookUrl: hookUrl, webhookSecret: "xs-webhook-secret-0123" }, ["agent1", "agent2"]);
    const a1 = await agent("agent1");
    await waitForPresence("xs", "agent1@localhost", "available");
    const desk = (await a1.roster()).find((i) => i.attrs.jid === `xs@${DOMAIN}`);
    expect(desk?.attrs).toMatchObject({ subscription: "both", name: "XS Shop" });

    const tab1 = await visitor("xs");
    expect(tab1.welcome.agentsOnline).toBe(true);
    const tab2 = await visitor("xs", { token: tab1.welcome.token });
    tab1.send({ type: "page", url: "https://shop.example/shoes", title: "Red shoes" });
    tab1.send({ type: "identify", name: "Zoë", email: "zoe@example.com" });
    await tab1.say("Hello there");
    const first = await bodyFromVisitor(a1, "Hello there");
    const visitorJid = bare(first.attrs.from);
    expect(visitorJid).not.toBe(`xs@${DOMAIN}`);
    expect(first.attrs.type).toBe("chat");
    expect(first.attrs.to).toBe("agent1@localhost"); // the bare JID: carbons reach every device
    const item = a1.rosterPushes.all.find((i) => i.attrs.jid === visitorJid);
    expect(item, "the roster item exists before the first message").toBeDefined();
    expect(item!.getChildText("group")).toBe("XS Shop");
    expect(item!.attrs.name).toMatch(/^(Visitor \d+|Zoë)$/);
    // every tab gets the visitor's own message, sent from another tab
    await tab2.next("message", (m) => m.from === "visitor" && m.text === "Hello there");
    await tab1.next("message", (m) => m.from === "visitor" && m.text === "Hello there");
    await a1.presences.next((p) => bare(p.attrs.from) === visitorJid && !p.attrs.type && (p.getChildText("status") ?? "").includes("Red shoes") && (p.getChildText("status") ?? "").includes("https://shop.example/shoes"), "visitor presence with page");
    await tab1.next("agent", (f) => f.state === "joined" && f.name === "AGENT1");

    tab1.send({ type: "typing", state: "composing" });
    await a1.messages.next((m) => bare(m.attrs.from) === visitorJid && m.getChild("composing", CHATSTATES) !== undefined, "composing");
    tab1.send({ type: "typing", state: "paused" });
    await a1.messages.next((m) => bare(m.attrs.from) === visitorJid && m.getChild("paused", CHATSTATES) !== undefined, "paused");

    await a1.sendMessage(visitorJid, null, [xml("composing", { xmlns: CHATSTATES })]);
    expect(await tab2.next("typing")).toMatchObject({ state: "composing", name: "AGENT1" });
    const sentId = await a1.sendMessage(visitorJid, "<b>Hi</b> Zoë", [xml("active", { xmlns: CHATSTATES }), xml("request", { xmlns: RECEIPTS })]);
    for (const tab of [tab1, tab2]) expect(await tab.next("message", (m) => m.from === "agent")).toMatchObject({ text: "<b>Hi</b> Zoë", name: "AGENT1", ts: expect.any(Number), messageId: expect.any(String) });
    await a1.messages.next((m) => bare(m.attrs.from) === visitorJid && m.getChild("received", RECEIPTS)?.attrs.id === sentId, "receipt");

    // Commands: answered from the visitor's JID with [parley], never shown to the visitor.
    await a1.sendMessage(visitorJid, "!help");
    const help = (await reply(a1, visitorJid)).getChildText("body")!;
    expect(help).toMatch(/^\[parley\]/);
    for (const command of ["!info", "!end", "!transfer", "!note"]) expect(help).toContain(command);
    await a1.sendMessage(visitorJid, "!whatever");
    expect((await reply(a1, visitorJid)).getChildText("body")).toContain(help.replace(/^\[parley\] /, ""));
    await a1.sendMessage(visitorJid, "!info");
    const info = (await reply(a1, visitorJid)).getChildText("body")!;
    expect(info).toMatch(/^\[parley\]/);
    const chatId = ((await api("GET", "/api/sites/xs/chats?state=active")).body as { id: string }[])[0]!.id;
    for (const part of ["Zoë", "zoe@example.com", "https://shop.example/shoes", chatId]) expect(info).toContain(part);
    await a1.sendMessage(visitorJid, "!note prefers size 38");

    // Errors: unknown visitor, someone else's visitor, unknown IQ.
    await a1.sendMessage(`xs.nobody@${DOMAIN}`, "anyone?");
    const unknown = await a1.messages.next((m) => m.attrs.type === "error" && bare(m.attrs.from) === `xs.nobody@${DOMAIN}`, "error from unknown visitor");
    expect(errorCondition(unknown)).toBe("item-not-found");
    const a3 = await agent("agent3");
    await a3.sendMessage(visitorJid, "let me in");
    const forbidden = await a3.messages.next((m) => m.attrs.type === "error" && bare(m.attrs.from) === visitorJid, "forbidden");
    expect(errorCondition(forbidden)).toBe("forbidden");
    const unknownIq = await a1.xmpp.iqCaller.request(xml("iq", { type: "get", to: DOMAIN, id: "u1" }, xml("query", { xmlns: "urn:example:nothing" }))).catch((err: { condition?: string }) => err);
    expect((unknownIq as { condition?: string }).condition).toBe("service-unavailable");
    const disco = await a1.xmpp.iqCaller.get(xml("query", { xmlns: "http://jabber.org/protocol/disco#info" }), DOMAIN);
    expect(disco.getChild("identity")).toBeDefined();
    const features = disco.getChildren("feature").map((f) => f.attrs.var);
    for (const feature of ["http://jabber.org/protocol/disco#info", "jabber:iq:version", "urn:xmpp:ping"]) expect(features).toContain(feature);
    const version = await a1.xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:version" }), DOMAIN);
    expect(version.getChildText("name")).toBeTruthy();
    expect(version.getChildText("version")).toBeTruthy();
    await a1.xmpp.iqCaller.request(xml("iq", { type: "get", to: DOMAIN }, xml("ping", { xmlns: "urn:xmpp:ping" })));
    // The visitor and the desk answer as entities of their own; a JID that is neither does
    // not exist, whatever is asked of it (as a message to it gets item-not-found).
    for (const to of [visitorJid, `xs@${DOMAIN}`]) {
      await a1.xmpp.iqCaller.request(xml("iq", { type: "get", to }, xml("ping", { xmlns: "urn:xmpp:ping" })));
      await a1.xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:version" }), to);
    }
    for (const to of [`xs.nobody@${DOMAIN}`, `nosuchsite@${DOMAIN}`]) {
      for (const query of [xml("ping", { xmlns: "urn:xmpp:ping" }), xml("query", { xmlns: "jabber:iq:version" }), xml("query", { xmlns: "http://jabber.org/protocol/disco#info" })]) {
        const answer = await a1.xmpp.iqCaller.request(xml("iq", { type: "get", to }, query)).then(() => "result", (err: { condition?: string }) => err.condition);
        expect(answer, `${query.attrs.xmlns} to ${to}`).toBe("item-not-found");
      }
    }

    // Desk commands.
    for (const command of ["!help", "!queue", "!visitors"]) {
      await a1.sendMessage(`xs@${DOMAIN}`, command);
      expect((await reply(a1, `xs@${DOMAIN}`)).getChildText("body"), command).toMatch(/^\[parley\]/);
    }
    await waitUntil("the desk's status", () => a1.presences.all.some((p) => bare(p.attrs.from) === `xs@${DOMAIN}` && /chatting/.test(p.getChildText("status") ?? "")));

    // A tab opened now resumes into the chat: same visitor, the agent named, the history.
    const tab3 = await visitor("xs", { token: tab1.welcome.token });
    expect(tab3.welcome).toMatchObject({ resumed: true, visitorId: tab1.welcome.visitorId, agentsOnline: true, agent: { name: "AGENT1" } });
    expect(tab3.welcome.history.map((m) => [m.from, m.text])).toEqual([["visitor", "Hello there"], ["agent", "<b>Hi</b> Zoë"]]);
    await tab3.close();

    // Transfer: the visitor leaves agent1's roster and joins agent2's, with context.
    const a2 = await agent("agent2");
    await waitForPresence("xs", "agent2@localhost", "available");
    await a2.sendMessage(visitorJid, "mine now?");
    const notYours = await a2.messages.next((m) => m.attrs.type === "error" && bare(m.attrs.from) === visitorJid, "forbidden for another agent of the site");
    expect(errorCondition(notYours)).toBe("forbidden");
    await a1.sendMessage(visitorJid, "!transfer agent2@localhost");
    await a1.rosterPushes.next((i) => i.attrs.jid === visitorJid && i.attrs.subscription === "remove", "roster removal at agent1");
    await a2.rosterPushes.next((i) => i.attrs.jid === visitorJid && i.attrs.subscription !== "remove", "roster item at agent2");
    await a2.nextBody(visitorJid, (b) => b.includes("Hello there"));
    await tab1.next("agent", (f) => f.state === "left" && f.name === "AGENT1");
    await tab1.next("agent", (f) => f.state === "joined" && f.name === "AGENT2");

    // End: roster item removed, visitor told, signed chat.ended webhook with the transcript.
    failNextHook = true;
    await a2.sendMessage(visitorJid, "!end");
    await a2.rosterPushes.next((i) => i.attrs.jid === visitorJid && i.attrs.subscription === "remove", "roster removal at agent2");
    await tab1.next("ended");
    await waitUntil("a retried chat.ended webhook", () => hookCalls.filter((c) => c.body.includes('"chat.ended"')).length >= 2, { timeoutMs: 15_000 });
    const [attempt, retry] = hookCalls.filter((c) => c.body.includes('"chat.ended"'));
    expect(retry!.body).toBe(attempt!.body);
    expect(attempt!.headers["content-type"]).toMatch(/^application\/json/);
    expect(attempt!.headers["x-parley-signature"]).toBe(`sha256=${createHmac("sha256", "xs-webhook-secret-0123").update(attempt!.body).digest("hex")}`);
    const event = JSON.parse(attempt!.body);
    expect(Object.keys(event).sort()).toEqual(["chat", "event", "id", "siteId"]);
    expect(event).toMatchObject({ event: "chat.ended", siteId: "xs", id: expect.any(String) });
    expect(event.chat).toMatchObject({ id: chatId, siteId: "xs", state: "ended", visitor: { id: tab1.welcome.visitorId, jid: visitorJid, name: "Zoë", email: "zoe@example.com" }, agent: { jid: "agent2@localhost", name: "AGENT2" }, startedAt: expect.any(Number), endedAt: expect.any(Number) });
    const froms = event.chat.messages.map((m: { from: string }) => m.from);
    expect(froms).toContain("visitor");
    expect(froms).toContain("agent");
    expect(froms).toContain("note");
    expect(JSON.stringify(tab1.frames.all)).not.toContain("prefers size 38");
    expect(JSON.stringify(tab1.frames.all)).not.toContain("!help");
    for (const m of event.chat.messages) expect(m).toMatchObject({ id: expect.any(String), name: expect.any(String), text: expect.any(String), ts: expect.any(Number) });
    expect((await api("GET", `/api/chats/${chatId}`)).body).toEqual(event.chat);
  });

  it("queues when every agent is busy, goes offline when none is available, and moves chats of a vanished agent", async () => {
    await siteWithAgents("busy", { name: "Busy", maxChatsPerAgent: 1, webhookUrl: hookUrl }, ["agent4"]);
    const a4 = await agent("agent4");
    await waitForPresence("busy", "agent4@localhost", "available");
    const v1 = await visitor("busy");
    await v1.say("first");
    await bodyFromVisitor(a4, "first");
    const v2 = await visitor("busy");
    await v2.say("second");
    expect((await v2.next("queue")).position).toBe(1);
    const agentsList = (await api("GET", "/api/sites/busy/agents")).body;
    expect(agentsList).toEqual([expect.objectContaining({ jid: "agent4@localhost", presence: "available", activeChats: 1 })]);
    const online = (await api("GET", "/api/sites/busy/visitors")).body as { id: string; jid: string; chatId: string | null; since: unknown; page: unknown }[];
    expect(online.map((o) => o.id).sort()).toEqual([v1.welcome.visitorId, v2.welcome.visitorId].sort());
    for (const o of online) expect(o).toMatchObject({ jid: expect.stringMatching(new RegExp(`@${DOMAIN}$`)), since: expect.anything() });
    expect(((await api("GET", "/api/sites/busy/chats?state=queued")).body as unknown[]).length).toBe(1);

    // An away agent gets no new chats: offline mode, messages stored and reported.
    await a4.setPresence("away");
    await waitForPresence("busy", "agent4@localhost", "away");
    await v1.next("availability", (f) => f.agentsOnline === false);
    const v3 = await visitor("busy");
    expect(v3.welcome.agentsOnline).toBe(false);
    await v3.say("anyone there?");
    await waitUntil("an offline.message webhook", () => hookCalls.some((c) => c.body.includes('"offline.message"') && c.body.includes("anyone there?")));
    await bodyFromVisitor(a4, "anyone there?"); // sent to every agent of the site

    // agent4 vanishes (no unavailable): after the grace period its chat moves to agent5.
    await api("PUT", "/api/sites/busy", { name: "Busy", maxChatsPerAgent: 5, webhookUrl: hookUrl });
    await api("PUT", "/api/sites/busy/agents/agent5@localhost", { name: "Five" });
    const a5 = await agent("agent5");
    await waitForPresence("busy", "agent5@localhost", "available");
    a4.drop();
    const left = await v1.next("agent", (f) => f.state === "left", 20_000);
    const joined = await v1.next("agent", (f) => f.state === "joined" && f.name === "Five", 20_000);
    expect(v1.frames.all.indexOf(left)).toBeLessThan(v1.frames.all.indexOf(joined));
    await a5.messages.next((m) => (m.getChildText("body") ?? "").includes("first"), "context replayed to agent5");
  });
  it("counts an agent available on any resource with no <show/> or chat, and not while every resource is away", async () => {
    await siteWithAgents("resources", { name: "Resources" }, ["agent6"]);
    const connect = async (resource: string, show?: string) => {
      const client = await AgentClient.connect({ port: ejabberd.c2sPort, username: "agent6", password: PASSWORD, resource, ...(show ? { show } : {}) });
      agents.push(client);
      return client;
    };
    await connect("phone", "away");
    await waitForPresence("resources", "agent6@localhost", "away");
    const desktop = await connect("desktop");
    await waitForPresence("resources", "agent6@localhost", "available");
    await desktop.stop();
    await waitForPresence("resources", "agent6@localhost", "away");
    await connect("chatty", "chat");
    await waitForPresence("resources", "agent6@localhost", "available");
  });
});

describe("§7 widget", () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchBrowser();
  });
  afterAll(async () => {
    await browser?.close();
  });

  it("serves widget.js and a demo page whose widget chats, renders text as text and resumes after a reload", async () => {
    const script = await fetch(`${bridge.httpUrl}/widget.js`);
    expect(script.status).toBe(200);
    expect(script.headers.get("content-type")).toMatch(/javascript/);
    expect(await script.text()).not.toMatch(/\bimport\s|require\(/);
    await siteWithAgents("widget", { name: "Widget Shop" }, ["agent3"]);
    const a3 = agents.find((a) => a.username === "agent3") ?? (await agent("agent3"));
    await waitForPresence("widget", "agent3@localhost", "available");
    const page = await browser.newPage();
    await page.goto(`${bridge.httpUrl}/demo?site=widget`);
    expect(await page.evaluate(() => document.querySelector("parley-widget")?.shadowRoot?.mode)).toBe("open");
    const widget = widgetOn(page);
    const root = widget.host;
    await widget.open();
    const input = widget.input;
    await input.fill("line one");
    await input.press("Shift+Enter");
    await input.pressSequentially("line two");
    await input.press("Enter");
    const first = await bodyFromVisitor(a3, "line one\nline two");
    const visitorJid = bare(first.attrs.from);
    await a3.sendMessage(visitorJid, '<img src=x onerror="document.title=\'pwned\'">');
    await expect.poll(() => root.locator(".log").innerText()).toContain('<img src=x onerror="document.title=\'pwned\'">');
    expect(await root.locator(".log img").count()).toBe(0);
    await expect.poll(() => page.evaluate(() => document.querySelector("parley-widget")!.shadowRoot!.textContent)).toContain("AGENT3");
    expect(await page.evaluate(() => Object.keys(localStorage).length)).toBeGreaterThan(0);
    await page.reload();
    await widget.open();
    await expect.poll(() => root.locator(".log").innerText()).toContain("line two");
    await page.close();
  });
  it("offers the offline form with no agent online, then shows queue position, typing and an unread badge", async () => {
    await siteWithAgents("widget-states", { name: "Widget States", maxChatsPerAgent: 1 }, ["agent4"]);
    const page = await browser.newPage();
    await page.goto(`${bridge.httpUrl}/demo?site=widget-states`);
    const widget = widgetOn(page);
    await widget.open();
    await expect.poll(() => widget.offlineForm.isVisible()).toBe(true);
    const a4 = await agent("agent4");
    await waitForPresence("widget-states", "agent4@localhost", "available");
    await expect.poll(() => widget.offlineForm.isVisible()).toBe(false);
    const first = await visitor("widget-states");
    await first.say("taking the only seat");
    const firstJid = bare((await bodyFromVisitor(a4, "taking the only seat")).attrs.from);
    await widget.send("me too");
    await expect.poll(() => widget.queue.innerText()).toMatch(/\b1\b/);
    await a4.sendMessage(firstJid, "!end");
    const visitorJid = bare((await bodyFromVisitor(a4, "me too")).attrs.from);
    await a4.sendMessage(visitorJid, null, [xml("composing", { xmlns: CHATSTATES })]);
    await expect.poll(() => widget.typing.isVisible()).toBe(true);
    await widget.launcher.click(); // closed: what arrives now is unread
    await a4.sendMessage(visitorJid, "are you still there?");
    await expect.poll(() => widget.badge.innerText()).toBe("1");
    await page.close();
  });
});


describe("§6 operations", () => {
  it("reports health and the named metrics", async () => {
    const health = await bridge.health();
    expect(health).toMatchObject({ status: 200, body: { status: "ok" } });
    const metrics = await fetch(`${bridge.httpUrl}/metrics`);
    expect(metrics.status).toBe(200);
    expect(metrics.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await metrics.text();
    for (const name of ["parley_visitors_connected", "parley_chats", "parley_messages_total", "parley_stanza_handling_seconds", "parley_component_reconnects_total"]) expect(text).toContain(`# TYPE ${name} `);
    expect(text).toContain("# TYPE parley_stanza_handling_seconds histogram");
  });

  it("applies PARLEY_SITES_FILE idempotently; shows through any process what another one just wrote", async () => {
    const sitesFile = join(await mkdtemp(join(tmpdir(), "parley-blackbox-")), "sites.yaml");
    await writeFile(sitesFile, "sites:\n  - id: filed\n    name: Filed Site\n    maxChatsPerAgent: 2\n    agents:\n      - jid: agent3@localhost\n        name: Three\n      - agent2@localhost\n");
    const fileEnv = { ...env, PARLEY_SITES_FILE: sitesFile };
    const agentsOf = async (base: string) => ((await api("GET", "/api/sites/filed/agents", undefined, TOKEN, base)).body as { jid: string; name: string | null }[]).map((a) => [a.jid, a.name]).sort();
    for (let start = 0; start < 2; start++) {
      const other = await startBridgeProcess(entry, fileEnv);
      try {
        expect(await agentsOf(bridge.httpUrl)).toEqual([["agent2@localhost", null], ["agent3@localhost", "Three"]]);
        expect((await api("GET", "/api/sites/filed")).body).toMatchObject({ id: "filed", name: "Filed Site", maxChatsPerAgent: 2 });
        expect(((await api("GET", "/api/sites")).body as { id: string }[]).filter((x) => x.id === "filed")).toHaveLength(1);
        // An admin behind a load balancer writes through one process and reads through another.
        expect((await api("PUT", "/api/sites/filed/agents/agent4@localhost", { name: "Four" }, TOKEN, other.httpUrl)).status).toBe(201);
        expect(await agentsOf(bridge.httpUrl)).toContainEqual(["agent4@localhost", "Four"]);
        expect((await api("PUT", "/api/sites/filed", { name: "Filed Renamed" }, TOKEN, other.httpUrl)).status).toBe(200);
        expect((await api("GET", "/api/sites/filed")).body).toMatchObject({ name: "Filed Renamed", maxChatsPerAgent: 3 });
        expect((await api("DELETE", "/api/sites/filed/agents/agent4@localhost", undefined, TOKEN, other.httpUrl)).status).toBe(204);
        expect(await agentsOf(bridge.httpUrl)).not.toContainEqual(["agent4@localhost", "Four"]);
        expect(await other.stop()).toBe(0);
      } finally {
        other.kill();
      }
    }
  });

  it("answers 503 on /api without PARLEY_ADMIN_TOKEN; on SIGTERM closes visitors with 1012 and exits 0", async () => {
    const { PARLEY_ADMIN_TOKEN: _unset, ...withoutToken } = env;
    const other = await startBridgeProcess(entry, withoutToken);
    try {
      const r = await api("GET", "/api/sites", undefined, TOKEN, other.httpUrl);
      expect(r.status).toBe(503);
      expect(r.body).toEqual({ error: { code: expect.any(String), message: expect.any(String) } });
      await api("PUT", "/api/sites/shutdown", { name: "Shutdown" });
      const here = await visitor("shutdown");
      await here.say("from the first process");
      await here.close();
      const v = await VisitorClient.connect(other.httpUrl, "shutdown", { token: here.welcome.token });
      expect(v.welcome).toMatchObject({ resumed: true, visitorId: here.welcome.visitorId }); // on any Parley process
      expect(v.welcome.history.map((m) => m.text)).toContain("from the first process");
      const code = other.stop();
      expect((await v.closed).code).toBe(1012);
      await expect(VisitorClient.connect(other.httpUrl, "shutdown")).rejects.toThrow(); // no longer accepting
      expect(await code).toBe(0);
    } finally {
      other.kill();
    }
  });

  it("logs no secret, token or message body at info", async () => {
    const chatty = await startBridgeProcess(entry, { ...env, PARLEY_LOG_LEVEL: "info" });
    try {
      const webhookSecret = "logged-webhook-secret-0123456789";
      expect((await api("PUT", "/api/sites/logs", { name: "Logs", webhookUrl: hookUrl, webhookSecret }, TOKEN, chatty.httpUrl)).status).toBe(201);
      expect((await api("PUT", "/api/sites/logs/agents/agent5@localhost", { name: "Five" }, TOKEN, chatty.httpUrl)).status).toBe(201);
      const a5 = agents.find((a) => a.username === "agent5") ?? (await agent("agent5"));
      await waitForPresence("logs", "agent5@localhost", "available");
      const v = await VisitorClient.connect(chatty.httpUrl, "logs");
      visitors.push(v);
      v.send({ type: "identify", name: "Secret Name", email: "secret-mail@example.com" });
      await v.say("visitor-body-never-logged");
      const visitorJid = bare((await bodyFromVisitor(a5, "visitor-body-never-logged")).attrs.from);
      await a5.sendMessage(visitorJid, "agent-body-never-logged");
      await v.next("message", (m) => m.text === "agent-body-never-logged");
      await a5.sendMessage(visitorJid, "!end");
      await v.next("ended");
      await v.close();
      expect(await chatty.stop()).toBe(0);
      const output = chatty.output();
      expect(output).toContain('"level":30'); // info lines were written
      for (const secret of [TOKEN, ejabberd.secret, webhookSecret, v.welcome.token, "visitor-body-never-logged", "agent-body-never-logged"]) expect(output).not.toContain(secret);
    } finally {
      chatty.kill();
    }
  });

  it("answers 503 naming the store while Redis is down", async () => {
    const health = async () => {
      const response = await fetch(`${bridge.httpUrl}/healthz`, { signal: AbortSignal.timeout(10_000) });
      return { status: response.status, body: (await response.json()) as Record<string, unknown> };
    };
    await redis.stop();
    try {
      await waitUntil("healthz 503", async () => (await health()).status === 503, { timeoutMs: 15_000 });
      expect((await health()).body).toMatchObject({ status: expect.any(String), store: "down" });
    } finally {
      await redis.start();
    }
    await waitUntil("healthz 200 again", async () => (await health()).status === 200, { timeoutMs: 15_000 });
  });
});
