import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:net";

/**
 * Free TCP ports on 127.0.0.1, all different, for services a test starts (Redis, ejabberd,
 * a bridge). They come from below the kernel's ephemeral range, as in
 * ejabberd-config/private-ejabberd.sh: tests stop such services and start them again on
 * the same port, and a port of the ephemeral range may meanwhile have become the source
 * port of any outgoing connection on the machine, failing the restart with EADDRINUSE
 * (seen in CI: Redis restarted by admin-api-store-down). Each candidate is bound to check
 * that it is free; no port is handed out twice by one process, so a service stopped for a
 * while keeps its port. They are released before returning: bind them soon.
 */
export async function freePorts(count: number): Promise<number[]> {
  const ports: number[] = [];
  for (let attempt = 0; ports.length < count; attempt++) {
    if (attempt >= MAX_ATTEMPTS) throw new Error(`no free port found in ${RANGE.low}-${RANGE.high} after ${MAX_ATTEMPTS} tries`);
    const candidate = RANGE.low + Math.floor(Math.random() * (RANGE.high - RANGE.low + 1));
    if (handedOut.has(candidate) || !(await isFree(candidate))) continue;
    handedOut.add(candidate);
    ports.push(candidate);
  }
  return ports;
}

/**
 * Starts a service on ports it picks, and once more on new ports when a port was taken
 * between the pick and the bind: `freePorts` keeps one process from handing a port out
 * twice, not two test processes from picking the same one at once (seen in CI: ejabberd's
 * listener failing with eaddrinuse).
 */
export async function retryIfPortTaken<T>(start: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await start();
    } catch (err) {
      if (attempt >= attempts || !/eaddrinuse|address already in use/i.test(String((err as Error | undefined)?.message))) throw err;
    }
  }
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

const MAX_ATTEMPTS = 1000;
const handedOut = new Set<number>();
const RANGE = portsBelowEphemeralRange();

function portsBelowEphemeralRange(): { low: number; high: number } {
  const low = 20_000;
  let ephemeralStart = 32_768;
  try {
    ephemeralStart = Number(readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/)[0]) || ephemeralStart;
  } catch {
    // not Linux: the IANA default range starts at 49152, so 32768 is below it too
  }
  // A machine whose ephemeral range starts too low for a useful span: fall back to a fixed one.
  return ephemeralStart - 1 - low >= 1000 ? { low, high: ephemeralStart - 1 } : { low, high: 30_000 };
}

async function isFree(port: number): Promise<boolean> {
  let server: Server | undefined;
  try {
    server = await listen(port);
    return true;
  } catch {
    return false;
  } finally {
    if (server) await new Promise<void>((resolve) => server!.close(() => resolve()));
  }
}

function listen(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen({ host: "127.0.0.1", port, exclusive: true }, () => resolve(server));
  });
}
