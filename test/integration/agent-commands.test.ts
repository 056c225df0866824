import { xml } from "@xmpp/client";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentClient } from "../support/agent-client.js";
import { startStack, type Stack } from "../support/stack.js";
import type { VisitorClient } from "../support/visitor-client.js";

// Agents run the chat from their IM client (issue 3): commands in the visitor's window
// and to the desk, transfer, and XEP-0050 ad-hoc commands.

let stack: Stack;
let ann: AgentClient;
let ben: AgentClient;

beforeAll(async () => {
  stack = await startStack({ agents: ["ann", "ben"] });
  await stack.api("PUT", "/api/sites/help", { name: "Help Desk", maxChatsPerAgent: 5 });
  await stack.api("PUT", "/api/sites/help/agents/ann@localhost", { name: "Ann" });
  await stack.api("PUT", "/api/sites/help/agents/ben@localhost", { name: "Ben" });
  ann = await stack.availableAgent("help", "ann");
});
afterAll(async () => {
  await stack?.stop();
});

const jidOf = (visitor: VisitorClient) => `help.${visitor.welcome.visitorId}@chat.localhost`;

/** A visitor whose chat is with Ann (Ben is busy while it is assigned). */
async function visitorWithAnn(text = "hello"): Promise<VisitorClient> {
  const visitor = await stack.visitor("help");
  visitor.send({ type: "page", url: "https://help.test/faq", title: "FAQ" });
  await visitor.say(text);
  await ann.nextBody(jidOf(visitor), (b) => b === text);
  return visitor;
}

async function command(agent: AgentClient, visitor: VisitorClient, text: string): Promise<string> {
  await agent.sendMessage(jidOf(visitor), text);
  const answer = await agent.nextBody(jidOf(visitor), (b) => b.startsWith("[parley]"));
  return answer.getChildText("body")!;
}

function noCommandsLeaked(visitor: VisitorClient): void {
  const leaked = visitor.frames.all.filter((f) => f.type === "message" && (f.text.startsWith("!") || f.text.startsWith("[parley]")));
  expect(leaked).toEqual([]);
}

describe("agent commands", () => {
  it("answers !help, !info, !name, !email and !note without showing anything to the visitor", async () => {
    const visitor = await visitorWithAnn();
    expect(await command(ann, visitor, "!help")).toContain("!transfer <agent jid>");
    expect(await command(ann, visitor, "!name Zoë Ångström")).toBe("[parley] Saved name: Zoë Ångström");
    expect(await command(ann, visitor, "!email zoe@example.com")).toBe("[parley] Saved email: zoe@example.com");
    const info = await command(ann, visitor, "!info");
    expect(info).toContain("Zoë Ångström");
    expect(info).toContain("email: zoe@example.com");
    expect(info).toContain("https://help.test/faq");
    expect(info).toMatch(/chat: [a-z2-7]{26}-/);
    expect(await command(ann, visitor, "!note VIP customer")).toBe("[parley] Note saved to the transcript.");
    expect(await command(ann, visitor, "!frobnicate")).toContain("Unknown command !frobnicate");
    expect(await command(ann, visitor, "!transfer")).toMatch(/^\[parley\] Usage: !transfer <agent jid>\. Agents: .*ann@localhost/);
    // the roster item follows the new name
    await ann.rosterPushes.next((item) => item.attrs.jid === jidOf(visitor) && item.attrs.name === "Zoë Ångström", "renamed roster item");
    await ann.sendMessage(jidOf(visitor), "plain reply");
    await visitor.next("message", (f) => f.text === "plain reply");
    noCommandsLeaked(visitor);

    const chatId = info.match(/chat: (\S+)/)![1]!;
    const transcript = (await stack.api("GET", `/api/chats/${chatId}`)).body;
    expect(transcript.messages.map((m: { from: string; text: string }) => `${m.from}:${m.text}`)).toEqual(["visitor:hello", "note:VIP customer", "agent:plain reply"]);
    expect(transcript.visitor).toMatchObject({ name: "Zoë Ångström", email: "zoe@example.com" });
  });

  it("answers any body starting with ! as a command, unknown ones with the help, and shows the visitor none of them", async () => {
    const visitor = await visitorWithAnn("typo ahead");
    for (const body of ["!end.", "! end", "!!", "!info?"]) {
      const answer = await command(ann, visitor, body);
      expect(answer, body).toMatch(/^\[parley\] /);
      expect(answer, body).toContain("!transfer <agent jid>"); // the help text
    }
    // None of them ended the chat or reached the visitor: the next plain message is the first they get.
    await ann.sendMessage(jidOf(visitor), "sorry, typo");
    const first = await visitor.next("message", (f) => f.from === "agent");
    expect(first.text).toBe("sorry, typo");
    expect(visitor.frames.all.filter((f) => f.type === "ended")).toEqual([]);
    noCommandsLeaked(visitor);
  });

  it("transfers a chat: rosters follow, the new agent gets the context, the visitor sees left/joined", async () => {
    ben = await stack.availableAgent("help", "ben");
    const visitor = await stack.visitor("help");
    await visitor.say("I need billing help");
    const firstAgent = (await visitor.next("agent", (f) => f.state === "joined")).name;
    const [from, to] = firstAgent === "Ann" ? [ann, ben] : [ben, ann];
    await from.nextBody(jidOf(visitor), (b) => b === "I need billing help");
    await from.sendMessage(jidOf(visitor), "Let me find a colleague");
    expect(await command(from, visitor, `!transfer ${to.jid}`)).toMatch(/^\[parley\] Chat transferred to (Ann|Ben)\.$/);

    await visitor.next("agent", (f) => f.state === "left" && f.name === firstAgent);
    await visitor.next("agent", (f) => f.state === "joined" && f.name !== firstAgent);
    await to.nextBody(jidOf(visitor), (b) => b === "Visitor: I need billing help" || /: I need billing help$/.test(b));
    await to.nextBody(jidOf(visitor), (b) => /Let me find a colleague$/.test(b));
    await from.rosterPushes.next((item) => item.attrs.jid === jidOf(visitor) && item.attrs.subscription === "remove", "removal from the first roster");
    expect((await to.roster()).some((item) => item.attrs.jid === jidOf(visitor))).toBe(true);
    expect((await from.roster()).some((item) => item.attrs.jid === jidOf(visitor))).toBe(false);

    // only the new agent may write now
    const id = await from.sendMessage(jidOf(visitor), "still me?");
    await from.messages.next((m) => m.attrs.type === "error" && m.attrs.id === id, "forbidden after the transfer");
    await to.sendMessage(jidOf(visitor), "Billing here");
    await visitor.next("message", (f) => f.text === "Billing here");
    noCommandsLeaked(visitor);

    // the transcript runs across the transfer, in order, with each agent's name
    const chat = ((await stack.api("GET", "/api/sites/help/chats?state=active")).body as { id: string; visitor: { id: string } }[]).find(
      (c) => c.visitor.id === visitor.welcome.visitorId,
    )!;
    const transcript = (await stack.api("GET", `/api/chats/${chat.id}`)).body;
    expect(transcript.messages.map((m: { from: string; name: string; text: string }) => `${m.from}:${m.name}:${m.text}`)).toEqual([
      `visitor:${transcript.visitor.name}:I need billing help`,
      `agent:${firstAgent}:Let me find a colleague`,
      `agent:${firstAgent === "Ann" ? "Ben" : "Ann"}:Billing here`,
    ]);
    expect(transcript.agent.jid).toBe(to.jid);
    await ben.stop(); // the next tests expect every new chat to reach Ann
    await stack.waitForPresence("help", "ben@localhost", "offline");
  });

  it("ends a chat with !end; the next message starts a new chat with the same visitor", async () => {
    const visitor = await visitorWithAnn("end me");
    expect(await command(ann, visitor, "!end")).toBe("[parley] Chat ended.");
    await visitor.next("ended");
    await ann.rosterPushes.next((item) => item.attrs.jid === jidOf(visitor) && item.attrs.subscription === "remove", "roster item removed");
    await visitor.say("one more question");
    const agentName = (await visitor.next("agent", (f) => f.state === "joined")).name;
    expect(["Ann", "Ben"]).toContain(agentName);
    const ended = (await stack.api("GET", "/api/sites/help/chats?state=ended")).body as { visitor: { id: string } }[];
    expect(ended.some((c) => c.visitor.id === visitor.welcome.visitorId)).toBe(true);
  });

  it("blocks a visitor: the chat ends and later messages are refused", async () => {
    const visitor = await visitorWithAnn("spam spam");
    expect(await command(ann, visitor, "!block")).toContain("Visitor blocked");
    await visitor.next("ended");
    visitor.send({ type: "message", id: "after-block", text: "let me in" });
    expect(await visitor.next("error", (f) => f.id === "after-block")).toMatchObject({ code: "blocked" });
  });

  it("lists the desk commands and answers !queue, !visitors, !busy and !available", async () => {
    const desk = "help@chat.localhost";
    await ann.sendMessage(desk, "!help");
    expect((await ann.nextBody(desk)).getChildText("body")).toContain("!busy");
    await ann.sendMessage(desk, "!visitors");
    expect((await ann.nextBody(desk)).getChildText("body")).toMatch(/on the site|No visitors/);
    await ann.sendMessage(desk, "!queue");
    expect((await ann.nextBody(desk)).getChildText("body")).toBe("[parley] Nobody is waiting.");
    await ann.sendMessage(desk, "!busy");
    expect((await ann.nextBody(desk)).getChildText("body")).toContain("no new chats");
    await expect.poll(async () => (await stack.api("GET", "/api/sites/help/agents")).body.length).toBe(2);
    await ann.sendMessage(desk, "!available");
    expect((await ann.nextBody(desk)).getChildText("body")).toContain("new chats again");
  });

  it("offers !end as a XEP-0050 ad-hoc command listed by disco#items on the visitor's JID", async () => {
    const visitor = await visitorWithAnn("adhoc please");
    const items = await ann.xmpp.iqCaller.get(xml("query", { xmlns: "http://jabber.org/protocol/disco#items", node: "http://jabber.org/protocol/commands" }), jidOf(visitor));
    expect(items.getChildren("item").map((i) => i.attrs.node)).toEqual(["end", "info", "block"]);
    const result = await ann.xmpp.iqCaller.request(
      xml("iq", { type: "set", to: jidOf(visitor) }, xml("command", { xmlns: "http://jabber.org/protocol/commands", node: "end", action: "execute" })),
    );
    expect(result.getChild("command")?.attrs.status).toBe("completed");
    await visitor.next("ended");
  });
});
