import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// An admin types the agent's JID as the person spells it; ejabberd prepares it (nodeprep:
// "Straße" → "strasse") and writes the prepared form in every stanza. Parley must see the
// two as the same agent: presence, routing and the agent's replies.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["Straße"] });
});
afterAll(async () => {
  await stack?.stop();
});

it("routes to and accepts replies from an agent whose JID the admin typed unprepared", async () => {
  await stack.api("PUT", "/api/sites/unicode", { name: "Unicode" });
  expect((await stack.api("PUT", "/api/sites/unicode/agents/Stra%C3%9Fe@LocalHost", {})).status).toBe(201);
  expect((await stack.api("GET", "/api/sites/unicode/agents")).body).toMatchObject([{ jid: "strasse@localhost" }]);
  const agent = await stack.agent("strasse"); // the account, as ejabberd prepared it at registration
  expect(agent.jid).toBe("strasse@localhost");
  await stack.waitForPresence("unicode", "strasse@localhost", "available");

  const visitor = await stack.visitor("unicode");
  const visitorJid = `unicode.${visitor.welcome.visitorId}@chat.localhost`;
  await visitor.say("Grüß Gott");
  await agent.nextBody(visitorJid, (b) => b === "Grüß Gott");
  await agent.sendMessage(visitorJid, "Servus!");
  await visitor.next("message", (m) => m.from === "agent" && m.text === "Servus!");
});
