import { pino } from "pino";
import { loadConfig } from "../../bridge/config.js";
import { startBridge, type Bridge } from "../../bridge/main.js";
import { AgentClient } from "./agent-client.js";
import { startEjabberd, type PrivateEjabberd } from "./ejabberd.js";
import { startRedis, type PrivateRedis } from "./redis.js";
import { VisitorClient } from "./visitor-client.js";
import { waitUntil } from "./wait.js";

/**
 * A whole Parley deployment for one test file: a private ejabberd, optionally a private
 * Redis, and a bridge in this process, all on free ports. `PARLEY_TEST_STORE=redis`
 * runs the same tests against Redis (CI runs both).
 */
export interface Stack {
  ejabberd: PrivateEjabberd;
  redis: PrivateRedis | null;
  bridge: Bridge;
  adminToken: string;
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  agent(username: string, options?: { show?: string; resource?: string }): Promise<AgentClient>;
  visitor(siteId: string, options?: Parameters<typeof VisitorClient.connect>[2]): Promise<VisitorClient>;
  /** Waits until the bridge reports the agent's presence on the site (from the admin API). */
  waitForPresence(siteId: string, jid: string, presence: string): Promise<void>;
  /** Connects an agent of the site and waits until the bridge sees them available there. */
  availableAgent(siteId: string, username: string, options?: { resource?: string }): Promise<AgentClient>;
  /** A new site with one agent, available, and a visitor whose first message reached them. */
  openChat(siteId: string, username: string, text: string): Promise<{ agent: AgentClient; visitor: VisitorClient; visitorJid: string; chatId: string }>;
  /** Starts another bridge process on the same ejabberd and store. */
  startBridge(extraEnv?: Record<string, string>): Promise<Bridge>;
  stop(): Promise<void>;
}

export const AGENT_PASSWORD = "agent-password";
const ADMIN_TOKEN = "test-admin-token-0123456789";

export function storeUnderTest(): "memory" | "redis" {
  return process.env.PARLEY_TEST_STORE === "redis" ? "redis" : "memory";
}

export async function startStack(options: { agents?: string[]; store?: "memory" | "redis"; env?: Record<string, string> } = {}): Promise<Stack> {
  const store = options.store ?? storeUnderTest();
  const ejabberd = await startEjabberd({ resumeTimeoutSeconds: 1 });
  const redis = store === "redis" ? await startRedis() : null;
  const clients: { stop(): Promise<unknown> }[] = [];
  const bridges: Bridge[] = [];
  try {
    for (const user of options.agents ?? ["agent1", "agent2"]) await ejabberd.register(user, AGENT_PASSWORD);
    const env = {
      PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${ejabberd.componentPort}`,
      PARLEY_XMPP_DOMAIN: ejabberd.componentDomain,
      PARLEY_XMPP_SECRET: ejabberd.secret,
      PARLEY_HTTP_PORT: "0",
      PARLEY_ADMIN_TOKEN: ADMIN_TOKEN,
      PARLEY_EJABBERD_API_URL: ejabberd.apiUrl,
      PARLEY_VISITOR_GRACE_MS: "300",
      PARLEY_LOG_LEVEL: process.env.PARLEY_TEST_LOG_LEVEL ?? "silent",
      ...(redis ? { PARLEY_REDIS_URL: redis.url } : {}),
      ...options.env,
    };
    const launch = async (extraEnv: Record<string, string> = {}) => {
      const bridge = await startBridge(loadConfig({ ...env, ...extraEnv }), pino({ level: env.PARLEY_LOG_LEVEL }));
      bridges.push(bridge);
      await waitUntil("the bridge's component stream", () => bridge.link.online, { timeoutMs: 20_000 });
      return bridge;
    };
    const bridge = await launch();

    const stack: Stack = {
      ejabberd,
      redis,
      bridge,
      adminToken: ADMIN_TOKEN,
      async api(method, path, body) {
        const response = await fetch(new URL(path, bridge.httpUrl), {
          method,
          headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        });
        const text = await response.text();
        return { status: response.status, body: text ? JSON.parse(text) : null };
      },
      async agent(username, agentOptions = {}) {
        const agent = await AgentClient.connect({ port: ejabberd.c2sPort, username, password: AGENT_PASSWORD, ...agentOptions });
        clients.push(agent);
        return agent;
      },
      async visitor(siteId, visitorOptions = {}) {
        const visitor = await VisitorClient.connect(bridge.httpUrl, siteId, visitorOptions);
        clients.push(visitor);
        return visitor;
      },
      async waitForPresence(siteId, jid, presence) {
        await waitUntil(`${jid} to be ${presence} on ${siteId}`, async () => {
          const agents = (await stack.api("GET", `/api/sites/${siteId}/agents`)).body as { jid: string; presence: string }[];
          return agents.find((a) => a.jid === jid)?.presence === presence;
        });
      },
      async availableAgent(siteId, username, agentOptions = {}) {
        const agent = await stack.agent(username, agentOptions);
        await stack.waitForPresence(siteId, agent.jid, "available");
        return agent;
      },
      async openChat(siteId, username, text) {
        await stack.api("PUT", `/api/sites/${siteId}`, { name: siteId });
        await stack.api("PUT", `/api/sites/${siteId}/agents/${username}@localhost`, {});
        const agent = await stack.availableAgent(siteId, username);
        const visitor = await stack.visitor(siteId);
        const visitorJid = `${siteId}.${visitor.welcome.visitorId}@chat.localhost`;
        await visitor.say(text);
        await agent.nextBody(visitorJid, (b) => b === text);
        const [chat] = (await stack.api("GET", `/api/sites/${siteId}/chats?state=active`)).body as { id: string }[];
        return { agent, visitor, visitorJid, chatId: chat!.id };
      },
      startBridge: launch,
      async stop() {
        await Promise.allSettled(clients.map((c) => c.stop()));
        await Promise.allSettled(bridges.map((b) => b.stop()));
        await Promise.allSettled([ejabberd.destroy(), redis?.destroy()]);
      },
    };
    return stack;
  } catch (err) {
    await Promise.allSettled(bridges.map((b) => b.stop()));
    await Promise.allSettled([ejabberd.destroy(), redis?.destroy()]);
    throw err;
  }
}
