import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// A site is deleted while a visitor's chat is open and their tab sends nothing. The DELETE
// ends the chat (roster item removed through ejabberd's API, then `ended` to the visitor),
// and the heartbeat closes the idle socket of the deleted site (4404). The heartbeat used
// to close it at the first beat that found the site gone, which could come before the
// chat's end: the visitor never got `ended` (a CI run of the keyspace test). Here the
// admin API's roster removal is held until that first beat has passed, which makes the
// race certain.

let stack: Stack;
let proxy: Server;
let releaseRosterRemovals: () => void = () => {};
const rosterRemovalsHeld = new Promise<void>((held) => {
  const gate = new Promise<void>((open) => (releaseRosterRemovals = open));
  proxy = createServer((req, res) => {
    void (async () => {
      const body = await readBody(req);
      if (req.url?.endsWith("/delete_rosteritem")) {
        held();
        await gate;
      }
      // Forwarded to ejabberd's mod_http_api as it came.
      const answer = await fetch(`${stack.ejabberd.apiUrl}${req.url!.replace(/^\/api/, "")}`, {
        method: req.method!,
        headers: { "content-type": req.headers["content-type"] ?? "application/json" },
        body,
      });
      res.writeHead(answer.status, { "content-type": answer.headers.get("content-type") ?? "application/json" }).end(await answer.text());
    })().catch(() => res.writeHead(502).end());
  });
});

beforeAll(async () => {
  await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  const apiUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}/api`;
  stack = await startStack({ agents: ["agent1"], env: { PARLEY_HEARTBEAT_MS: "1000", PARLEY_EJABBERD_API_URL: apiUrl } });
});
afterAll(async () => {
  releaseRosterRemovals();
  await stack?.stop();
  await new Promise((resolve) => proxy.close(resolve));
});

it("tells an idle visitor with an open chat that it ended before closing their socket for the deleted site", async () => {
  const { visitor } = await stack.openChat("doomed", "agent1", "hello");

  const deleted = stack.api("DELETE", "/api/sites/doomed");
  await rosterRemovalsHeld; // the site is gone from the store; the chat's end waits for ejabberd's API
  await new Promise((beat) => visitor.ws.once("ping", beat)); // a beat after the deletion
  // That beat found the site gone. The chat's end goes on only now.
  releaseRosterRemovals();
  expect((await deleted).status).toBe(204);

  await visitor.next("ended");
  expect(await visitor.closed).toMatchObject({ code: 4404, reason: "site deleted" });
  const types = visitor.frames.all.map((f) => f.type);
  expect(types.indexOf("ended")).toBeLessThan(types.lastIndexOf("error"));
});

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = "";
    req.setEncoding("utf8");
    req.on("data", (chunk: string) => (body += chunk));
    req.on("end", () => resolve(body));
    req.on("error", reject);
  });
}
