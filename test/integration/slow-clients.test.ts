import { once } from "node:events";
import type { AddressInfo } from "node:net";
import { connect } from "node:net";
import { pino } from "pino";
import { afterAll, expect, it } from "vitest";
import { createHttpServer, type HttpDeps } from "../../bridge/http-server.js";

// A slowloris client sends its request headers a line at a time and never finishes: no
// limit of Parley's (origin, upgrade rate) applies before the headers are complete, so only
// the header timeout (10 s) stops it from holding sockets, and it must hold.

const server = createHttpServer({ logger: pino({ level: "silent" }) } as unknown as HttpDeps);
afterAll(() => server.close());

it("closes a client that trickles its headers once the 10 s header timeout has passed", async () => {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const started = Date.now();
  const socket = connect((server.address() as AddressInfo).port, "127.0.0.1");
  const closed = new Promise((resolve) => socket.on("close", resolve));
  socket.on("error", () => {}); // the server may reset it mid-trickle (EPIPE): it closes all the same
  socket.write("GET /visitor?site=acme HTTP/1.1\r\nHost: parley.test\r\n");
  const trickle = setInterval(() => socket.writable && socket.write("X-Slow: 1\r\n"), 500);
  await closed;
  clearInterval(trickle);
  const heldMs = Date.now() - started;
  console.log(`slowloris socket held ${heldMs} ms`);
  expect(heldMs).toBeGreaterThanOrEqual(9_000);
  expect(heldMs).toBeLessThan(13_000);
});
