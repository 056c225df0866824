import type { IncomingMessage } from "node:http";
import { PassThrough } from "node:stream";
import { pino } from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { clientKey } from "../../bridge/client-address.js";
import { createMetrics } from "../../bridge/metrics.js";
import { MemoryStore } from "../../bridge/store/memory-store.js";
import { VisitorGateway } from "../../bridge/visitor-gateway.js";
import type { VisitorService } from "../../bridge/visitors.js";

// PARLEY_UPGRADE_RATE counts per client. An IPv6 client owns a whole /64: counted per
// address, it could open every connection from a fresh one and never be limited.

describe("clientKey", () => {
  it.each([
    ["192.0.2.7", "192.0.2.7"],
    ["::ffff:192.0.2.7", "192.0.2.7"],
    ["2001:db8:1:2::7", "2001:db8:1:2::/64"],
    ["2001:DB8:0001:0002:aaaa:bbbb:cccc:dddd", "2001:db8:1:2::/64"],
    ["2001:db8::1", "2001:db8:0:0::/64"],
    ["fe80::1%eth0", "fe80:0:0:0::/64"],
    ["::1", "0:0:0:0::/64"],
    ["64:ff9b::192.0.2.7", "64:ff9b:0:0::/64"],
    ["unknown", "unknown"],
    ["1:2:3", "1:2:3"],
  ])("keys %s as %s", (address, key) => {
    expect(clientKey(address)).toBe(key);
  });
});

describe("the upgrade limit", () => {
  const gateway = new VisitorGateway({
    store: new MemoryStore(),
    // Never reached: every upgrade here is for a site that does not exist.
    visitors: {} as unknown as VisitorService,
    logger: pino({ level: "silent" }),
    metrics: createMetrics(async () => ({})),
    now: () => 0,
    visitorRate: { perSecond: 5, burst: 20 },
    upgradeRate: { perSecond: 0.001, burst: 1 },
    socketRate: { perSecond: 30, burst: 200 },
    socketsPerAddress: 1000,
    processId: "p1",
  });
  afterAll(() => gateway.close());

  async function upgradeFrom(remoteAddress: string): Promise<string> {
    const socket = new PassThrough();
    const req = { headers: {}, socket: { remoteAddress } } as unknown as IncomingMessage;
    await gateway.handleUpgrade(req, socket, Buffer.alloc(0), new URL("http://parley.test/visitor?site=nowhere"));
    return String(socket.read()).split("\r\n")[0]!;
  }

  it("counts the addresses of one IPv6 /64 as one client, and IPv4 ones each as their own", async () => {
    expect(await upgradeFrom("2001:db8:1:2::1")).toBe("HTTP/1.1 404 Not Found");
    expect(await upgradeFrom("2001:db8:1:2:dead:beef:0:1")).toBe("HTTP/1.1 429 Too Many Requests");
    expect(await upgradeFrom("2001:db8:1:3::1")).toBe("HTTP/1.1 404 Not Found");
    expect(await upgradeFrom("192.0.2.1")).toBe("HTTP/1.1 404 Not Found");
    expect(await upgradeFrom("::ffff:192.0.2.1")).toBe("HTTP/1.1 429 Too Many Requests");
    expect(await upgradeFrom("192.0.2.2")).toBe("HTTP/1.1 404 Not Found");
  });

  it("does not count 127.0.0.1 and ::1 (a reverse proxy on the same host), and counts other loopback addresses", async () => {
    for (const local of ["127.0.0.1", "::1", "::ffff:127.0.0.1"]) {
      for (let i = 0; i < 3; i++) expect(await upgradeFrom(local), local).toBe("HTTP/1.1 404 Not Found");
    }
    expect(await upgradeFrom("127.0.0.2")).toBe("HTTP/1.1 404 Not Found");
    expect(await upgradeFrom("127.0.0.2")).toBe("HTTP/1.1 429 Too Many Requests");
  });
});
