import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { trackLeftover } from "./leftovers.js";
import { freePorts } from "./ports.js";
import { launchRedisServer, redisCli } from "./redis-process.js";
import { signalAndWait, waitUntil } from "./wait.js";

const execFileAsync = promisify(execFile);

/**
 * A private Redis Cluster of `masters` nodes (no replicas) on free ports,
 * for PARLEY_REDIS_CLUSTER tests. Resolves once every node reports
 * cluster_state:ok, i.e. all 16384 slots are served.
 *
 *   const cluster = await startRedisCluster({ masters: 3 });
 *   new Redis.Cluster(cluster.nodes.map(hostPort)) ...
 *   await cluster.stop();   // afterAll
 */
export interface PrivateRedisCluster {
  /** "127.0.0.1:port" of each master. */
  nodes: string[];
  /** Kills every node (the data is throwaway) and removes the dir. Idempotent. */
  stop(): Promise<void>;
}

export async function startRedisCluster({ masters = 3 }: { masters?: number } = {}): Promise<PrivateRedisCluster> {
  const dir = await mkdtemp(join(tmpdir(), "parley-redis-cluster-"));
  // Two ports per node: clients', and the cluster bus (otherwise port + 10000,
  // which nobody checked was free).
  const ports = await freePorts(masters * 2);
  const pids: number[] = [];
  const untrack = trackLeftover({ pids: () => pids, dirs: [dir] });
  const stop = async (): Promise<void> => {
    await Promise.all(pids.splice(0).map((pid) => signalAndWait(pid, "SIGKILL")));
    await rm(dir, { recursive: true, force: true });
    untrack();
  };

  try {
    const clientPorts = ports.slice(0, masters);
    await Promise.all(
      clientPorts.map(async (port, i) => {
        const nodeDir = join(dir, String(port));
        await mkdir(nodeDir);
        const pid = await launchRedisServer(port, nodeDir, [
          ...["--cluster-enabled", "yes"],
          ...["--cluster-port", String(ports[masters + i])],
          ...["--cluster-config-file", "nodes.conf"],
          ...["--cluster-node-timeout", "5000"],
          ...["--appendonly", "no"],
        ]);
        pids.push(pid);
      }),
    );
    const nodes = clientPorts.map((port) => `127.0.0.1:${port}`);
    await execFileAsync("redis-cli", ["--cluster", "create", ...nodes, "--cluster-replicas", "0", "--cluster-yes"]);
    await waitUntil("every cluster node to report cluster_state:ok", async () => {
      const infos = await Promise.all(clientPorts.map((port) => redisCli(port, "CLUSTER", "INFO")));
      return infos.every((info) => info.includes("cluster_state:ok"));
    });
    return { nodes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
