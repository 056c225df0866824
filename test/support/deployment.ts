import { AGENT_PASSWORD } from "./stack.js";
import { AgentClient } from "./agent-client.js";
import { bundleBridge, startBridgeProcess, type BridgeProcess } from "./bridge-process.js";
import { startEjabberd, type PrivateEjabberd } from "./ejabberd.js";
import { startRedisCluster, type PrivateRedisCluster } from "./redis-cluster.js";
import { startRedis, type PrivateRedis } from "./redis.js";
import { waitUntil } from "./wait.js";

/**
 * A multi-process deployment for one test file: one private ejabberd, one Redis (or a
 * Redis Cluster of 3 masters), N bridge processes on the same component domain, one site
 * and `agents` agents online (named "Agent 1"…).
 */
export interface Deployment {
  ejabberd: PrivateEjabberd;
  redis: PrivateRedis | null;
  cluster: PrivateRedisCluster | null;
  bridges: BridgeProcess[];
  /** Agents by display name. */
  agents: Map<string, AgentClient>;
  siteId: string;
  env: Record<string, string>;
  entry: string;
  /** URLs of the bridges still running. */
  bridgeUrls(): string[];
  api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }>;
  startBridge(): Promise<BridgeProcess>;
  stop(): Promise<void>;
}

const ADMIN_TOKEN = "scale-admin-token-0123456789";

export async function startDeployment(options: {
  store: "redis" | "cluster";
  bridges: number;
  agents: number;
  /** More bridge configuration (e.g. a short PARLEY_AGENT_GRACE_MS), over the defaults here. */
  env?: Record<string, string>;
}): Promise<Deployment> {
  // One after the other: free ports are only free until bound, so parallel starts could pick the same ones.
  const bundled = bundleBridge();
  const ejabberd = await startEjabberd({ resumeTimeoutSeconds: 1 });
  let redis: PrivateRedis | null = null;
  let cluster: PrivateRedisCluster | null = null;
  let entry: string;
  try {
    redis = options.store === "redis" ? await startRedis() : null;
    cluster = options.store === "cluster" ? await startRedisCluster({ masters: 3 }) : null;
    entry = await bundled;
  } catch (err) {
    await Promise.allSettled([ejabberd.destroy(), redis?.destroy(), cluster?.stop()]);
    throw err;
  }
  const bridges: BridgeProcess[] = [];
  const agents = new Map<string, AgentClient>();
  const stop = async () => {
    await Promise.allSettled([...agents.values()].map((a) => a.stop()));
    for (const bridge of bridges) bridge.kill();
    await Promise.allSettled(bridges.map((b) => b.exited));
    await Promise.allSettled([ejabberd.destroy(), redis?.destroy(), cluster?.stop()]);
  };
  try {
    const env: Record<string, string> = {
      PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${ejabberd.componentPort}`,
      PARLEY_XMPP_DOMAIN: ejabberd.componentDomain,
      PARLEY_XMPP_SECRET: ejabberd.secret,
      PARLEY_ADMIN_TOKEN: ADMIN_TOKEN,
      PARLEY_EJABBERD_API_URL: ejabberd.apiUrl,
      PARLEY_VISITOR_RATE: "50/s burst 100",
      PARLEY_LOG_LEVEL: process.env.PARLEY_TEST_LOG_LEVEL ?? "warn",
      ...(redis ? { PARLEY_REDIS_URL: redis.url } : {}),
      ...(cluster ? { PARLEY_REDIS_CLUSTER: cluster.nodes.join(",") } : {}),
      ...options.env,
    };
    const startBridge = async () => {
      const bridge = await startBridgeProcess(entry, env);
      bridges.push(bridge);
      return bridge;
    };
    await Promise.all(Array.from({ length: options.bridges }, () => startBridge()));
    const alive = new Set(bridges);
    for (const b of bridges) void b.exited.then(() => alive.delete(b));

    const siteId = "multi";
    const api = async (method: string, path: string, body?: unknown) => {
      const url = [...alive][0]?.httpUrl ?? bridges[0]!.httpUrl;
      const response = await fetch(new URL(path, url), {
        method,
        headers: { authorization: `Bearer ${ADMIN_TOKEN}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      });
      const text = await response.text();
      return { status: response.status, body: text ? JSON.parse(text) : null };
    };
    await api("PUT", `/api/sites/${siteId}`, { name: "Multi", maxChatsPerAgent: 100, answerTimeoutSeconds: 600 });
    for (let n = 1; n <= options.agents; n++) {
      await ejabberd.register(`agent${n}`, AGENT_PASSWORD);
      await api("PUT", `/api/sites/${siteId}/agents/agent${n}@localhost`, { name: `Agent ${n}` });
    }
    for (let n = 1; n <= options.agents; n++) {
      agents.set(`Agent ${n}`, await AgentClient.connect({ port: ejabberd.c2sPort, username: `agent${n}`, password: AGENT_PASSWORD }));
    }
    await waitUntil("every agent to be available", async () => {
      const list = (await api("GET", `/api/sites/${siteId}/agents`)).body as { presence: string }[];
      return list.length === options.agents && list.every((a) => a.presence === "available");
    });
    return {
      ejabberd,
      redis,
      cluster,
      bridges,
      agents,
      siteId,
      env,
      entry,
      bridgeUrls: () => bridges.filter((b) => alive.has(b)).map((b) => b.httpUrl),
      api,
      startBridge: async () => {
        const bridge = await startBridge();
        alive.add(bridge);
        void bridge.exited.then(() => alive.delete(bridge));
        return bridge;
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
