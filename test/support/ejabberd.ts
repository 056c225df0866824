import { execFile } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { trackLeftover } from "./leftovers.js";
import { freePorts, retryIfPortTaken } from "./ports.js";

/**
 * A private ejabberd for one test file, run by
 * ejabberd-config/private-ejabberd.sh on free ports in its own temp dir.
 *
 *   const xmpp = await startEjabberd();          // beforeAll
 *   await xmpp.register("agent1", "pw");
 *   ...
 *   await xmpp.destroy();                        // afterAll
 *
 * Every process is stopped even when a test fails: call destroy() (or stop())
 * in afterAll; if a file never gets there, ./leftovers.ts kills the server
 * and removes its dir after the file's last hook.
 */
export interface PrivateEjabberd {
  /** The XMPP host users live on: "localhost". */
  host: string;
  /** The XEP-0114 component's domain, e.g. "chat.localhost". */
  componentDomain: string;
  /** The component's password. */
  secret: string;
  c2sPort: number;
  componentPort: number;
  httpPort: number;
  /** mod_http_api base, open to loopback: http://127.0.0.1:<httpPort>/api */
  apiUrl: string;
  dir: string;
  /** The beam process while running, else null. */
  pid: number | null;
  /** POST /api/register (≈ 0.1 s). Fails if the user exists. */
  register(user: string, password: string): Promise<void>;
  /** POST /api/<command> with a JSON body; resolves to the parsed JSON answer. */
  api(command: string, args: Record<string, unknown>): Promise<unknown>;
  /** How many messages mod_offline holds for the user (get_offline_count). */
  offlineCount(user: string): Promise<number>;
  /** Graceful stop (SIGTERM, ≈ 2-3 s): data stays, start() brings it all back. */
  stop(): Promise<void>;
  /** Starts again after stop()/kill(): same ports, secret and data. */
  start(): Promise<void>;
  /** SIGKILL, like a crash (instant): writes of the last moments may be lost. */
  kill(): Promise<void>;
  /** Kills the server if running and removes its dir. Idempotent. */
  destroy(): Promise<void>;
}

export interface EjabberdOptions {
  componentDomain?: string;
  secret?: string;
  /**
   * mod_stream_mgmt resume_timeout: how long a dropped client's session (and
   * its "available" presence) outlives the TCP connection. Default 2.
   */
  resumeTimeoutSeconds?: number;
}

const SCRIPT = fileURLToPath(new URL("../../ejabberd-config/private-ejabberd.sh", import.meta.url));
const execFileAsync = promisify(execFile);

export function startEjabberd(opts: EjabberdOptions = {}): Promise<PrivateEjabberd> {
  return retryIfPortTaken(() => startOnFreePorts(opts));
}

async function startOnFreePorts(opts: EjabberdOptions): Promise<PrivateEjabberd> {
  const dir = await mkdtemp(join(tmpdir(), "parley-ejabberd-"));
  const [c2sPort, componentPort, httpPort] = (await freePorts(3)) as [number, number, number];
  const server = new EjabberdProcess({
    dir,
    host: "localhost",
    componentDomain: opts.componentDomain ?? "chat.localhost",
    secret: opts.secret ?? randomBytes(12).toString("hex"),
    resumeTimeoutSeconds: opts.resumeTimeoutSeconds ?? 2,
    c2sPort,
    componentPort,
    httpPort,
  });
  try {
    await server.start();
  } catch (err) {
    await server.destroy();
    throw err;
  }
  return server;
}

interface Settings {
  dir: string;
  host: string;
  componentDomain: string;
  secret: string;
  resumeTimeoutSeconds: number;
  c2sPort: number;
  componentPort: number;
  httpPort: number;
}

class EjabberdProcess implements PrivateEjabberd {
  readonly host: string;
  readonly componentDomain: string;
  readonly secret: string;
  readonly c2sPort: number;
  readonly componentPort: number;
  readonly httpPort: number;
  readonly apiUrl: string;
  readonly dir: string;
  pid: number | null = null;
  private readonly resumeTimeoutSeconds: number;
  private readonly untrack: () => void;

  constructor(settings: Settings) {
    this.host = settings.host;
    this.componentDomain = settings.componentDomain;
    this.secret = settings.secret;
    this.c2sPort = settings.c2sPort;
    this.componentPort = settings.componentPort;
    this.httpPort = settings.httpPort;
    this.apiUrl = `http://127.0.0.1:${settings.httpPort}/api`;
    this.dir = settings.dir;
    this.resumeTimeoutSeconds = settings.resumeTimeoutSeconds;
    this.untrack = trackLeftover({ pids: () => (this.pid === null ? [] : [this.pid]), dirs: [this.dir] });
  }

  async start(): Promise<void> {
    // Ports are always passed explicitly, so a restart binds the same ones.
    const output = await runScript([
      "start",
      ...["--dir", this.dir],
      ...["--host", this.host],
      ...["--component-domain", this.componentDomain],
      ...["--secret", this.secret],
      ...["--resume-timeout", String(this.resumeTimeoutSeconds)],
      ...["--c2s-port", String(this.c2sPort)],
      ...["--component-port", String(this.componentPort)],
      ...["--http-port", String(this.httpPort)],
    ]);
    this.pid = Number(parseKeyValues(output).get("PID"));
  }

  async stop(): Promise<void> {
    await runScript(["stop", "--dir", this.dir]);
    this.pid = null;
  }

  async kill(): Promise<void> {
    await runScript(["kill", "--dir", this.dir]);
    this.pid = null;
  }

  async destroy(): Promise<void> {
    await this.kill();
    await rm(this.dir, { recursive: true, force: true });
    this.untrack();
  }

  async register(user: string, password: string): Promise<void> {
    await this.api("register", { user, host: this.host, password });
  }

  async offlineCount(user: string): Promise<number> {
    const answer = (await this.api("get_offline_count", { user, host: this.host })) as { value?: number } | number | null;
    return typeof answer === "number" ? answer : Number(answer?.value ?? 0);
  }

  async api(command: string, args: Record<string, unknown>): Promise<unknown> {
    const response = await fetch(`${this.apiUrl}/${command}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(args),
    });
    const text = await response.text();
    if (!response.ok) throw new Error(`ejabberd ${command} answered ${response.status}: ${text}`);
    return text === "" ? null : (JSON.parse(text) as unknown);
  }
}

async function runScript(args: string[]): Promise<string> {
  try {
    // The script bounds its own waits (60 s to start, 30 s to stop).
    const { stdout } = await execFileAsync("bash", [SCRIPT, ...args], { timeout: 120_000 });
    return stdout;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim() ?? "";
    throw new Error(`private-ejabberd.sh ${args[0]} failed: ${stderr}`, { cause: err });
  }
}

/** Reads the script's `KEY=value` lines. */
function parseKeyValues(output: string): Map<string, string> {
  const values = new Map<string, string>();
  for (const line of output.split("\n")) {
    const match = /^([A-Z0-9_]+)=(.*)$/.exec(line);
    if (match) values.set(match[1]!, match[2]!);
  }
  return values;
}
