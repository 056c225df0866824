import { afterAll, beforeAll, describe, expect, it } from "vitest";
import WebSocket from "ws";
import { startStack, type Stack } from "../support/stack.js";
import type { VisitorClient } from "../support/visitor-client.js";

// The visitor heartbeat (PARLEY_HEARTBEAT_MS, here 1 s): every socket is pinged at each
// beat, a few hundred per turn of the event loop; one that missed a pong is closed at the
// next beat; the others stay open and online, their online marks (2 beats + grace) renewed.

const VISITORS = 300; // more than one slice of the heartbeat

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { PARLEY_HEARTBEAT_MS: "1000" } });
  expect((await stack.api("PUT", "/api/sites/acme", { name: "Acme Inc" })).status).toBe(201);
});
afterAll(async () => {
  await stack?.stop();
});

describe("visitor heartbeat", () => {
  it("pings every socket at every beat, closes one that does not answer, and keeps the others online", async () => {
    const visitors: VisitorClient[] = [];
    for (let i = 0; i < VISITORS; i++) visitors.push(await stack.visitor("acme"));
    const pings = visitors.map(() => 0);
    visitors.forEach((v, i) => v.ws.on("ping", () => (pings[i]! += 1)));

    const url = new URL("/visitor?site=acme", stack.bridge.httpUrl.replace(/^http/, "ws"));
    const silent = new WebSocket(url, { autoPong: false });
    const silentClosed = new Promise<number>((resolve) => silent.once("close", (code) => resolve(code)));
    await new Promise((resolve) => silent.once("open", resolve));

    await silentClosed; // a missed pong: closed at the next beat
    // Three beats after every visitor connected: their first marks (2 s + grace) are past.
    await expect.poll(() => Math.min(...pings)).toBeGreaterThanOrEqual(3);
    expect(visitors.every((v) => v.ws.readyState === WebSocket.OPEN)).toBe(true);
    const online = async () => ((await stack.api("GET", "/api/sites/acme/visitors")).body as { id: string }[]).map((v) => v.id).sort();
    const expected = visitors.map((v) => v.welcome.visitorId).sort();
    await expect.poll(online).toEqual(expected); // the silent one's grace (300 ms) passes too
  });

  it("closes an idle socket of a deleted site (4404) within two beats, though it sends nothing", async () => {
    expect((await stack.api("PUT", "/api/sites/closing", { name: "Closing" })).status).toBe(201);
    const idle = await stack.visitor("closing");
    const other = await stack.visitor("acme");
    expect((await stack.api("DELETE", "/api/sites/closing")).status).toBe(204);
    expect(await idle.next("error")).toMatchObject({ code: "invalid", message: "this site no longer exists" });
    expect(await idle.closed).toMatchObject({ code: 4404, reason: "site deleted" });
    expect(other.ws.readyState).toBe(WebSocket.OPEN);
  });
});
