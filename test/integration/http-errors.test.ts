import type { AddressInfo } from "node:net";
import { pino } from "pino";
import { afterEach, expect, it } from "vitest";
import { createHttpServer, type HttpDeps } from "../../bridge/http-server.js";
import { HttpError } from "../../bridge/http-util.js";

// A handler that fails with an HttpError gave every such answer as 500 "internal" (e.g.
// `/widget.js` before `npm run build`, which is a 404 "not_built").

let close: (() => void) | undefined;
afterEach(() => close?.());

async function serve(failure: Error): Promise<string> {
  const deps = { logger: pino({ level: "silent" }), health: () => Promise.reject(failure) } as unknown as HttpDeps;
  const server = createHttpServer(deps);
  server.listen(0, "127.0.0.1");
  await new Promise((resolve) => server.once("listening", resolve));
  close = () => server.close();
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

it("answers a handler's HttpError with its own status and code, anything else with 500", async () => {
  const refused = await fetch(`${await serve(new HttpError(404, "not_built", "dist/widget.js is missing: run npm run build"))}/healthz`);
  expect(refused.status).toBe(404);
  expect(await refused.json()).toEqual({ error: { code: "not_built", message: "dist/widget.js is missing: run npm run build" } });
  close!();
  const broken = await fetch(`${await serve(new Error("boom"))}/healthz`);
  expect(broken.status).toBe(500);
  expect(await broken.json()).toEqual({ error: { code: "internal", message: "internal error" } });
});
