import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// The admin HTTP API (CONTRACT §3).

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1", "agent2"] });
});
afterAll(async () => {
  await stack?.stop();
});

describe("admin API", () => {
  it("creates, reads, updates, lists and deletes sites", async () => {
    const created = await stack.api("PUT", "/api/sites/acme", { name: "Acme", origins: ["https://acme.test"], welcome: "Hello!", webhookSecret: "s".repeat(20) });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ id: "acme", name: "Acme", origins: ["https://acme.test"], maxChatsPerAgent: 3, welcome: "Hello!", webhookSecret: "[set]" });
    const updated = await stack.api("PUT", "/api/sites/acme", { name: "Acme Corp", maxChatsPerAgent: 5 });
    expect(updated.status).toBe(200);
    expect(updated.body).toMatchObject({ name: "Acme Corp", maxChatsPerAgent: 5, createdAt: created.body.createdAt });
    expect((await stack.api("GET", "/api/sites/acme")).body.name).toBe("Acme Corp");
    expect((await stack.api("GET", "/api/sites")).body.map((s: { id: string }) => s.id)).toContain("acme");
    expect((await stack.api("DELETE", "/api/sites/acme")).status).toBe(204);
    expect((await stack.api("GET", "/api/sites/acme")).status).toBe(404);
  });

  it("takes a site back as GET shows it: the secret kept, null removing it, the id checked", async () => {
    const secret = "k".repeat(24);
    await stack.api("PUT", "/api/sites/trip", { name: "Trip", webhookUrl: "https://hooks.trip.test/parley", webhookSecret: secret });
    const shown = (await stack.api("GET", "/api/sites/trip")).body;
    const back = await stack.api("PUT", "/api/sites/trip", { ...shown, name: "Round Trip" });
    expect(back.status).toBe(200);
    expect(back.body).toMatchObject({ name: "Round Trip", webhookSecret: "[set]", createdAt: shown.createdAt });
    expect((await stack.bridge.store.getSite("trip"))?.webhookSecret).toBe(secret);
    expect((await stack.api("PUT", "/api/sites/trip", { ...shown, id: "other" })).body.error.message).toMatch(/^id: /);
    expect((await stack.api("PUT", "/api/sites/trip", { ...shown, webhookSecret: null })).body.webhookSecret).toBeNull();
    expect((await stack.bridge.store.getSite("trip"))?.webhookSecret).toBeUndefined();
  });

  it("manages agents and reports their presence and active chats", async () => {
    await stack.api("PUT", "/api/sites/desk", { name: "Desk" });
    expect((await stack.api("PUT", "/api/sites/desk/agents/Agent1@LocalHost", { name: "Ann" })).status).toBe(201);
    expect((await stack.api("PUT", "/api/sites/desk/agents/agent1@localhost", { name: "Ann B." })).status).toBe(200);
    const agent = await stack.agent("agent1");
    await expect.poll(async () => (await stack.api("GET", "/api/sites/desk/agents")).body, { timeout: 15_000 }).toEqual([
      { jid: "agent1@localhost", name: "Ann B.", presence: "available", activeChats: 0 },
    ]);
    const visitor = await stack.visitor("desk");
    visitor.send({ type: "page", url: "https://desk.test/pricing", title: "Pricing" });
    await visitor.say("hi");
    await agent.nextBody(`desk.${visitor.welcome.visitorId}@chat.localhost`);
    expect((await stack.api("GET", "/api/sites/desk/agents")).body[0].activeChats).toBe(1);
    const visitors = (await stack.api("GET", "/api/sites/desk/visitors")).body;
    expect(visitors).toEqual([
      expect.objectContaining({ id: visitor.welcome.visitorId, jid: `desk.${visitor.welcome.visitorId}@chat.localhost`, page: { url: "https://desk.test/pricing", title: "Pricing" } }),
    ]);
    const chats = (await stack.api("GET", "/api/sites/desk/chats?state=active")).body;
    expect(chats).toHaveLength(1);
    expect(chats[0]).toMatchObject({ siteId: "desk", state: "active", visitor: { id: visitor.welcome.visitorId }, agent: { jid: "agent1@localhost" } });
    // Each entry is the transcript object of GET /api/chats/{id}, messages included (CONTRACT §3).
    expect(chats[0]).toEqual((await stack.api("GET", `/api/chats/${chats[0].id}`)).body);
    expect(chats[0].messages).toEqual([expect.objectContaining({ from: "visitor", text: "hi" })]);
    const [light] = (await stack.api("GET", "/api/sites/desk/chats?state=active&messages=false")).body;
    expect(light).toEqual(Object.fromEntries(Object.entries(chats[0]).filter(([key]) => key !== "messages")));
    expect((await stack.api("GET", "/api/sites/desk/chats?state=active&messages=no")).status).toBe(400);
    expect((await stack.api("DELETE", "/api/sites/desk/agents/agent1@localhost")).status).toBe(204);
    expect((await stack.api("DELETE", "/api/sites/desk/agents/agent1@localhost")).status).toBe(404);
  });

  it("ends a deleted site's open chats, clears its contacts from the agents' rosters and refuses its visitors", async () => {
    await stack.api("PUT", "/api/sites/gone", { name: "Gone", maxChatsPerAgent: 1 });
    await stack.api("PUT", "/api/sites/gone/agents/agent2@localhost", {});
    const agent = await stack.availableAgent("gone", "agent2");
    const [chatting, waiting, browsing] = [await stack.visitor("gone"), await stack.visitor("gone"), await stack.visitor("gone")];
    await chatting.say("hello");
    await chatting.next("agent", (f) => f.state === "joined");
    await waiting.say("anyone?");
    await waiting.next("queue");
    const chattingJid = `gone.${chatting.welcome.visitorId}@chat.localhost`;
    await agent.nextBody(chattingJid, (b) => b === "hello");
    const rosterJids = async () => (await agent.roster()).map((item) => item.attrs.jid);
    expect(await rosterJids()).toEqual(expect.arrayContaining([chattingJid, "gone@chat.localhost"]));
    const [chat] = (await stack.api("GET", "/api/sites/gone/chats?state=active")).body;

    expect((await stack.api("DELETE", "/api/sites/gone")).status).toBe(204);
    await chatting.next("ended");
    await waiting.next("ended");
    await expect.poll(rosterJids, { timeout: 10_000 }).not.toEqual(expect.arrayContaining([chattingJid]));
    expect(await rosterJids()).not.toContain("gone@chat.localhost");
    expect((await stack.api("GET", `/api/chats/${chat.id}`)).body).toMatchObject({ state: "ended", messages: [expect.objectContaining({ text: "hello" })] });

    // A socket opened before the deletion is closed at its next frame, without starting a chat.
    browsing.send({ type: "message", id: "after", text: "still there?" });
    expect(await browsing.next("error")).toMatchObject({ code: "invalid", id: "after" });
    expect(await browsing.closed).toMatchObject({ code: 4404, reason: "site deleted" });
    await expect(stack.visitor("gone")).rejects.toMatchObject({ status: 404 });
    await agent.stop();
  });

  it("moves a removed agent's chats to another agent", async () => {
    await stack.api("PUT", "/api/sites/staff", { name: "Staff" });
    await stack.api("PUT", "/api/sites/staff/agents/agent1@localhost", { name: "Leaving" });
    const leaving = await stack.availableAgent("staff", "agent1", { resource: "staff" });
    const visitor = await stack.visitor("staff");
    const visitorJid = `staff.${visitor.welcome.visitorId}@chat.localhost`;
    await visitor.say("question");
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Leaving");
    await leaving.nextBody(visitorJid, (b) => b === "question");
    await stack.api("PUT", "/api/sites/staff/agents/agent2@localhost", { name: "Staying" });
    const staying = await stack.availableAgent("staff", "agent2", { resource: "staff" });

    expect((await stack.api("DELETE", "/api/sites/staff/agents/agent1@localhost")).status).toBe(204);
    const why = await leaving.nextBody(visitorJid, (b) => b.startsWith("[parley] You are no longer an agent of Staff."));
    expect(why.getChildText("body")).toContain("moved to Staying");
    await visitor.next("agent", (f) => f.state === "left" && f.name === "Leaving");
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Staying");
    await staying.nextBody(visitorJid, (b) => b.endsWith("question"));
    await expect.poll(async () => (await leaving.roster()).map((item) => item.attrs.jid), { timeout: 10_000 }).not.toContain(visitorJid);
    await leaving.stop();
    await staying.stop();
  });

  it("routes a visitor who connected before a site change by the site's current settings", async () => {
    await stack.api("PUT", "/api/sites/renamed", { name: "Before" });
    await stack.api("PUT", "/api/sites/renamed/agents/agent2@localhost", {});
    const agent = await stack.availableAgent("renamed", "agent2", { resource: "renamed" });
    const visitor = await stack.visitor("renamed");
    await stack.api("PUT", "/api/sites/renamed", { name: "After" });
    await visitor.say("hi");
    const visitorJid = `renamed.${visitor.welcome.visitorId}@chat.localhost`;
    await agent.nextBody(visitorJid, (b) => b === "hi");
    const item = (await agent.roster()).find((i) => i.attrs.jid === visitorJid);
    expect(item?.getChildText("group")).toBe("After");
    await agent.stop();
  });

  it("names the invalid field with 400, and answers 404 for unknown things", async () => {
    const bad = await stack.api("PUT", "/api/sites/acme", { name: "", origins: ["not a url"] });
    expect(bad.status).toBe(400);
    expect(bad.body.error.code).toBe("invalid");
    expect(bad.body.error.message).toMatch(/^name/);
    expect((await stack.api("PUT", "/api/sites/acme", { name: "A", origins: ["https://a.test/path"] })).body.error.message).toMatch(/^origins\.0/);
    expect((await stack.api("PUT", "/api/sites/acme", { name: "A", surprise: 1 })).status).toBe(400);
    expect((await stack.api("PUT", "/api/sites/Bad_Id", { name: "A" })).body.error.message).toMatch(/^siteId/);
    await stack.api("PUT", "/api/sites/acme", { name: "A" });
    expect((await stack.api("PUT", "/api/sites/acme/agents/not-a-jid", {})).body.error.message).toMatch(/^jid/);
    expect((await stack.api("GET", "/api/sites/acme/chats?state=weird")).status).toBe(400);
    expect((await stack.api("GET", "/api/chats/nope")).status).toBe(404);
    expect((await stack.api("GET", "/api/sites/nope/agents")).status).toBe(404);
    const raw = await fetch(new URL("/api/sites/x", stack.bridge.httpUrl), {
      method: "PUT",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/json" },
      body: "{not json",
    });
    expect(raw.status).toBe(400);
    // JSON is JSON, whatever Content-Type a client sends (curl -d sends a form type)
    const form = await fetch(new URL("/api/sites/formish", stack.bridge.httpUrl), {
      method: "PUT",
      headers: { authorization: `Bearer ${stack.adminToken}`, "content-type": "application/x-www-form-urlencoded" },
      body: '{"name":"Formish"}',
    });
    expect(form.status).toBe(201);
  });

  it("refuses admin text XML cannot carry with 400 naming the field, and the component stream stays up", async () => {
    const badName = await stack.api("PUT", "/api/sites/xmlbad", { name: "Bad\u0001Name" });
    expect(badName.status).toBe(400);
    expect(badName.body.error).toMatchObject({ code: "invalid", message: expect.stringMatching(/^name: /) });
    expect((await stack.api("PUT", "/api/sites/xmlbad", { name: "Fine", welcome: "Hi\uFFFE" })).body.error.message).toMatch(/^welcome: /);
    expect((await stack.api("PUT", "/api/sites/xmlbad", { name: "Fine", offlineMessage: "Away\uD800" })).body.error.message).toMatch(/^offlineMessage: /);
    expect((await stack.api("GET", "/api/sites/xmlbad")).status).toBe(404);
    await stack.api("PUT", "/api/sites/xmlbad", { name: "Fine" });
    const badAgent = await stack.api("PUT", "/api/sites/xmlbad/agents/agent1@localhost", { name: "Ann\u001bB" });
    expect(badAgent.status).toBe(400);
    expect(badAgent.body.error.message).toMatch(/^name: /);
    expect((await stack.api("PUT", "/api/sites/xmlbad/agents/ag%01ent@localhost", {})).body.error.message).toMatch(/^jid: /);
    expect((await stack.api("GET", "/api/sites/xmlbad/agents")).body).toEqual([]);
    expect(stack.bridge.link.online).toBe(true);
    expect((await stack.api("DELETE", "/api/sites/xmlbad")).status).toBe(204);
  });

  it("answers 400 with the error shape for a path with a malformed percent-escape", async () => {
    for (const [method, path] of [
      ["GET", "/api/sites/%E0%A4%A"],
      ["PUT", "/api/sites/acme/agents/ann%ZZ@localhost"],
      ["DELETE", "/api/sites/acme/agents/%ED%A0%80@localhost"],
      ["GET", "/api/chats/%"],
    ] as const) {
      const response = await stack.api(method, path, method === "PUT" ? {} : undefined);
      expect(response.status, path).toBe(400);
      expect(response.body, path).toEqual({ error: { code: "invalid", message: expect.stringMatching(/^path: .*percent-encoding/) } });
    }
  });

  it("answers 401 without the right token, and 503 when no token is configured", async () => {
    expect((await fetch(new URL("/api/sites", stack.bridge.httpUrl))).status).toBe(401);
    const wrong = await fetch(new URL("/api/sites", stack.bridge.httpUrl), { headers: { authorization: "Bearer wrong-token-wrong-token" } });
    expect(wrong.status).toBe(401);
    expect(await wrong.json()).toEqual({ error: { code: "unauthorized", message: expect.any(String) } });
    const closed = await stack.startBridge({ PARLEY_ADMIN_TOKEN: "" });
    expect((await fetch(new URL("/api/sites", closed.httpUrl), { headers: { authorization: `Bearer ${stack.adminToken}` } })).status).toBe(503);
  });

  it("describes itself as OpenAPI 3.1 at /api/openapi.json, without a token", async () => {
    const response = await fetch(new URL("/api/openapi.json", stack.bridge.httpUrl));
    expect(response.status).toBe(200);
    const doc = await response.json();
    expect(doc.openapi).toBe("3.1.0");
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining(["/api/sites", "/api/sites/{siteId}", "/api/sites/{siteId}/agents/{jid}", "/api/sites/{siteId}/chats", "/api/chats/{chatId}"]),
    );
    expect(doc.components.schemas.SiteBody.properties.name).toBeDefined();
  });

  it("serves the widget and the demo page", async () => {
    const widget = await fetch(new URL("/widget.js", stack.bridge.httpUrl));
    expect(widget.status).toBe(200);
    expect(widget.headers.get("content-type")).toMatch(/javascript/);
    const demo = await fetch(new URL("/demo?site=acme", stack.bridge.httpUrl));
    expect(await demo.text()).toContain('data-site="acme"');
    expect((await fetch(new URL("/demo?site=%3Cscript%3E", stack.bridge.httpUrl))).status).toBe(400);
  });
});
