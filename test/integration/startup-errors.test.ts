import { spawn } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleBridge } from "../support/bridge-process.js";
import { freePort } from "../support/ports.js";

// Bad configuration fails at start with one clear line naming the variable (CONTRACT §2),
// as an operator sees it: the real `parley` entry point, its stderr and its exit code.
// No ejabberd is needed: each error comes before the bridge would need one.

let entry: string;
let dir: string;
let closedPort: number;

beforeAll(async () => {
  entry = await bundleBridge();
  dir = await mkdtemp(join(tmpdir(), "parley-startup-"));
  closedPort = await freePort();
});
afterAll(async () => {
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Runs the bridge until it exits (it must, within 15 s) and returns its exit code and stderr. */
function runBridge(env: Record<string, string>): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [entry], {
    env: { PATH: process.env.PATH ?? "", PARLEY_XMPP_SECRET: "secret", PARLEY_XMPP_SERVICE: `xmpp://127.0.0.1:${closedPort}`, PARLEY_HTTP_PORT: "0", ...env },
    stdio: ["ignore", "ignore", "pipe"],
  });
  let stderr = "";
  child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the bridge did not exit; stderr: ${stderr}`));
    }, 15_000);
    child.once("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, stderr });
    });
  });
}

async function expectOneLine(env: Record<string, string>, pattern: RegExp): Promise<void> {
  const { code, stderr } = await runBridge(env);
  expect(stderr.trimEnd().split("\n"), stderr).toHaveLength(1);
  expect(stderr).toMatch(pattern);
  expect(code).not.toBe(0);
}

describe("configuration errors at start", () => {
  it("names PARLEY_SITES_FILE when the file does not exist", async () => {
    await expectOneLine({ PARLEY_SITES_FILE: join(dir, "missing.yaml") }, /^parley: invalid configuration: PARLEY_SITES_FILE .*missing\.yaml.* does not exist/);
  });

  it("names PARLEY_SITES_FILE, in one line, when the file is not valid YAML", async () => {
    const file = join(dir, "broken.yaml");
    await writeFile(file, "sites:\n  - id: acme\n    name: a: b\n    webhookSecret: do-not-print-this-line\n");
    await expectOneLine({ PARLEY_SITES_FILE: file }, /^parley: invalid configuration: PARLEY_SITES_FILE .*broken\.yaml is not valid YAML: .*line 3, column 11/);
    expect((await runBridge({ PARLEY_SITES_FILE: file })).stderr).not.toContain("do-not-print-this-line");
  });

  it("names PARLEY_SITES_FILE and the field when a site in it is invalid", async () => {
    const file = join(dir, "invalid.yaml");
    await writeFile(file, "sites:\n  - id: acme\n    name: ''\n");
    await expectOneLine({ PARLEY_SITES_FILE: file }, /^parley: invalid configuration: PARLEY_SITES_FILE .*invalid\.yaml: sites\.0\.name: /);
  });

  it("names PARLEY_HTTP_PORT when the port is in use", async () => {
    const holder: Server = createServer();
    await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
    const port = (holder.address() as { port: number }).port;
    try {
      await expectOneLine({ PARLEY_HTTP_HOST: "127.0.0.1", PARLEY_HTTP_PORT: String(port) }, new RegExp(`^parley: invalid configuration: PARLEY_HTTP_PORT ${port} is already in use`));
    } finally {
      await new Promise((resolve) => holder.close(resolve));
    }
  });

  it("names PARLEY_HTTP_HOST when the address is not this machine's", async () => {
    // 203.0.113.0/24 is TEST-NET-3 (RFC 5737): never an address of this machine.
    await expectOneLine({ PARLEY_HTTP_HOST: "203.0.113.7" }, /^parley: invalid configuration: PARLEY_HTTP_HOST 203\.0\.113\.7 /);
  });

  it("names a missing PARLEY_XMPP_SECRET", async () => {
    await expectOneLine({ PARLEY_XMPP_SECRET: "" }, /^parley: invalid configuration: PARLEY_XMPP_SECRET is required/);
  });
});
