import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { connect } from "node:net";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { AgentClient } from "../support/agent-client.js";
import { trackLeftover } from "../support/leftovers.js";
import { freePorts } from "../support/ports.js";
import { VisitorClient } from "../support/visitor-client.js";
import { isAlive } from "../support/wait.js";

// `npm run demo` (scripts/demo.sh) as a user runs it: it prints the demo page and the
// agents' logins, an agent logs in with them and gets a visitor's message, and Ctrl-C
// (SIGINT) stops the bridge and ejabberd and exits 0.

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

let demo: ChildProcess | undefined;
let output = "";
const clients: { stop(): Promise<unknown> }[] = [];

afterAll(async () => {
  await Promise.allSettled(clients.map((c) => c.stop()));
  if (demo && demo.exitCode === null && demo.signalCode === null) {
    demo.kill("SIGTERM");
    await once(demo, "exit");
  }
});

/** Resolves with the first match of `pattern` in the script's combined output. */
function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
  return new Promise((resolve, reject) => {
    const check = () => {
      const match = pattern.exec(output);
      if (!match) return false;
      cleanup();
      resolve(match);
      return true;
    };
    const onExit = (code: number | null) => {
      cleanup();
      reject(new Error(`demo.sh exited (${code}) before printing ${pattern}:\n${output}`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`demo.sh did not print ${pattern} within ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout!.off("data", check);
      child.stderr!.off("data", check);
      child.off("exit", onExit);
    };
    child.stdout!.on("data", check);
    child.stderr!.on("data", check);
    child.on("exit", onExit);
    check();
  });
}

function portAccepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host: "127.0.0.1", port });
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
}

describe("npm run demo", () => {
  it("prints the demo page and agent logins that work, and stops everything on Ctrl-C with status 0", { timeout: 180_000 }, async () => {
    const [httpPort, c2sPort] = (await freePorts(2)) as [number, number];
    const env: NodeJS.ProcessEnv = { ...process.env, DEMO_HTTP_PORT: String(httpPort), DEMO_C2S_PORT: String(c2sPort) };
    for (const name of Object.keys(env)) if (name.startsWith("PARLEY_")) delete env[name];
    const child = spawn("bash", ["scripts/demo.sh"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
    demo = child;
    child.stdout!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    child.stderr!.setEncoding("utf8").on("data", (chunk: string) => (output += chunk));
    // Safety net should the test fail before Ctrl-C: ejabberd is a daemon, not our child.
    let ejabberdPid = 0;
    let bridgePid = 0;
    const untrack = trackLeftover({ pids: () => [child.pid!, bridgePid, ejabberdPid].filter((p) => p > 0), dirs: [] });

    // A first run may build dist/ (tsc + esbuild) before starting anything.
    const [, demoUrl] = (await waitForOutput(child, /^\s+(http:\/\/127\.0\.0\.1:\d+\/demo\?site=demo)$/m, 150_000)) as unknown as [string, string];
    expect(demoUrl).toBe(`http://127.0.0.1:${httpPort}/demo?site=demo`);
    ejabberdPid = Number(/ejabberd is ready \(pid (\d+), files in (\S+)\)/.exec(output)![1]);
    const demoDir = /files in (\S+)\)/.exec(output)![1]!;
    bridgePid = Number(/bridge pid (\d+)/.exec(output)![1]);
    const login = /^\s+agent1@localhost\s+password: (\S+)/m.exec(output);
    expect(login).not.toBeNull();
    expect(output).toContain(`/connect agent1@localhost server 127.0.0.1 port ${c2sPort} tls disable`);

    const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
    expect(health.status).toBe(200);
    const page = await fetch(demoUrl);
    expect(page.status).toBe(200);
    expect(await page.text()).toContain('data-site="demo"');

    // agent logs in with the printed password → visitor sends → agent expects it
    const agent = await AgentClient.connect({ port: c2sPort, username: "agent1", password: login![1]! });
    clients.push(agent);
    const visitor = await VisitorClient.connect(`http://127.0.0.1:${httpPort}`, "demo");
    clients.push(visitor);
    if (!visitor.welcome.agentsOnline) await visitor.next("availability", (f) => f.agentsOnline);
    await visitor.say("Do you ship to Canada?");
    const received = await agent.nextBody(`demo.${visitor.welcome.visitorId}@chat.localhost`);
    expect(received.getChildText("body")).toBe("Do you ship to Canada?");
    await agent.stop();
    await visitor.stop();

    // Ctrl-C → the script stops the bridge and ejabberd and exits 0
    const exited = once(child, "exit") as Promise<[number | null, NodeJS.Signals | null]>;
    child.kill("SIGINT");
    const [code, signal] = await exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(output).toContain("demo: stopped");
    expect(isAlive(bridgePid)).toBe(false);
    expect(isAlive(ejabberdPid)).toBe(false);
    expect(existsSync(demoDir)).toBe(false);
    expect(await portAccepts(c2sPort)).toBe(false);
    expect(await portAccepts(httpPort)).toBe(false);
    untrack();
  });
});
