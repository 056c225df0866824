import { afterAll, beforeAll, describe, expect, it, onTestFinished } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// Routing and presence (CONTRACT §5): available agents get chats, fewest first; away
// agents get none; with nobody available chats go offline and reach agents through
// ejabberd's offline storage; a dropped connection counts as offline.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1", "agent2", "late", "night"] });
  await stack.api("PUT", "/api/sites/shop", { name: "Shop", maxChatsPerAgent: 2 });
  await stack.api("PUT", "/api/sites/shop/agents/agent1@localhost", { name: "Ann" });
  await stack.api("PUT", "/api/sites/shop/agents/agent2@localhost", { name: "Ben" });
  await stack.api("PUT", "/api/sites/quiet", { name: "Quiet Site", offlineMessage: "We are away; we will write back." });
  await stack.api("PUT", "/api/sites/quiet/agents/late@localhost", { name: "Lara" });
  await stack.api("PUT", "/api/sites/evening", { name: "Evening Shop" });
  await stack.api("PUT", "/api/sites/evening/agents/night@localhost", { name: "Nina" });
});
afterAll(async () => {
  await stack?.stop();
});

async function presenceOf(siteId: string, jid: string): Promise<string> {
  const agents = (await stack.api("GET", `/api/sites/${siteId}/agents`)).body as { jid: string; presence: string }[];
  return agents.find((a) => a.jid === jid)?.presence ?? "missing";
}

describe("routing", () => {
  it("gives two visitors to two available agents, one chat each; an away agent gets none", async () => {
    const ann = await stack.agent("agent1");
    const ben = await stack.agent("agent2");
    await expect.poll(() => presenceOf("shop", "agent1@localhost"), { timeout: 15_000 }).toBe("available");
    await expect.poll(() => presenceOf("shop", "agent2@localhost"), { timeout: 15_000 }).toBe("available");

    const v1 = await stack.visitor("shop");
    const v2 = await stack.visitor("shop");
    await v1.say("first visitor");
    const first = await v1.next("agent", (f) => f.state === "joined");
    await v2.say("second visitor");
    const second = await v2.next("agent", (f) => f.state === "joined");
    expect([first.name, second.name].sort()).toEqual(["Ann", "Ben"]);
    const loads = (await stack.api("GET", "/api/sites/shop/agents")).body as { jid: string; activeChats: number }[];
    expect(loads.map((a) => a.activeChats)).toEqual([1, 1]);

    // Ben goes away: the next chats all go to Ann, until she is at the cap.
    await ben.setPresence("away");
    await expect.poll(() => presenceOf("shop", "agent2@localhost")).toBe("away");
    const v3 = await stack.visitor("shop");
    await v3.say("third visitor");
    expect((await v3.next("agent", (f) => f.state === "joined")).name).toBe("Ann");
    await ann.nextBody(`shop.${v3.welcome.visitorId}@chat.localhost`);
    expect(ben.messages.pending((m) => m.attrs.from?.startsWith(`shop.${v3.welcome.visitorId}`) === true && m.getChildText("body") !== null)).toEqual([]);

    // Ann is at her cap of 2 and Ben is away: the fourth visitor waits in the queue.
    const v4 = await stack.visitor("shop");
    await v4.say("fourth visitor");
    expect(await v4.next("queue")).toEqual({ type: "queue", position: 1 });

    // Ben comes back: the queued chat goes to him.
    await ben.setPresence();
    expect((await v4.next("agent", (f) => f.state === "joined")).name).toBe("Ben");
    await ben.nextBody(`shop.${v4.welcome.visitorId}@chat.localhost`, (b) => b === "fourth visitor");
  });

  it("with nobody available, tells the visitor, acks, and the agent gets it from ejabberd's offline storage", async () => {
    const visitor = await stack.visitor("quiet");
    expect(visitor.welcome.agentsOnline).toBe(false);
    const ack = await visitor.say("Is anyone there? ¿Hola? 🙋");
    expect(ack.messageId).toBeTruthy();
    const notice = await visitor.next("message", (f) => f.from === "system");
    expect(notice.text).toBe("We are away; we will write back.");

    // Lara logs in once ejabberd holds the message: a login racing its arrival at ejabberd
    // would test ejabberd's offline hook against its login, not Parley.
    await expect.poll(() => stack.ejabberd.offlineCount("late"), { timeout: 15_000 }).toBeGreaterThan(0);
    const lara = await stack.agent("late");
    onTestFinished(() => lara.stop());
    const visitorJid = `quiet.${visitor.welcome.visitorId}@chat.localhost`;
    const stored = await lara.nextBody(visitorJid, (b) => b === "Is anyone there? ¿Hola? 🙋");
    expect(stored.getChild("delay", "urn:xmpp:delay")).toBeDefined(); // delivered from offline storage

    // Lara's presence makes the site available again, and her answer takes the chat.
    await visitor.next("availability", (f) => f.agentsOnline);
    await lara.sendMessage(visitorJid, "Hi, I'm here now");
    expect(await visitor.next("message", (f) => f.from === "agent")).toMatchObject({ text: "Hi, I'm here now", name: "Lara" });
    await visitor.next("agent", (f) => f.state === "joined" && f.name === "Lara");
  });

  it("routes a chat in offline mode like a new one when its visitor writes again once an agent is available", async () => {
    const visitor = await stack.visitor("evening");
    await visitor.say("Anyone there?");
    await visitor.next("message", (f) => f.from === "system"); // offline mode
    await expect.poll(() => stack.ejabberd.offlineCount("night"), { timeout: 15_000 }).toBeGreaterThan(0);
    const nina = await stack.agent("night");
    onTestFinished(() => nina.stop());
    const visitorJid = `evening.${visitor.welcome.visitorId}@chat.localhost`;
    await nina.nextBody(visitorJid, (b) => b === "Anyone there?"); // from ejabberd's offline storage
    await visitor.next("availability", (f) => f.agentsOnline);

    // The visitor is still there and writes again: the chat is Nina's, as a new chat would be.
    await visitor.say("Oh, you are online now!");
    expect(await visitor.next("agent", (f) => f.state === "joined")).toMatchObject({ name: "Nina" });
    await nina.rosterPushes.next((item) => item.attrs.jid === visitorJid && item.attrs.subscription !== "remove", "the visitor in Nina's roster");
    await nina.nextBody(visitorJid, (b) => b === "Oh, you are online now!");
    const [chat] = (await stack.api("GET", "/api/sites/evening/chats?state=active")).body as { id: string; offline: boolean; agent: { jid: string } }[];
    expect(chat).toMatchObject({ offline: false, agent: { jid: "night@localhost" } });
    const agents = (await stack.api("GET", "/api/sites/evening/agents")).body as { activeChats: number }[];
    expect(agents.map((a) => a.activeChats)).toEqual([1]);
    // Nina got the first message once, from offline storage: it is not sent again as a message.
    await nina.acknowledgeAll();
    expect(nina.messages.pending((m) => m.attrs.from?.startsWith(visitorJid) === true && m.getChildText("body") === "Anyone there?").map(String)).toEqual([]);
  });

  it("sees an agent whose connection drops, without an unavailable presence, as offline", async () => {
    const lara = await stack.agent("late", { resource: "phone" });
    await expect.poll(() => presenceOf("quiet", "late@localhost"), { timeout: 15_000 }).toBe("available");
    // Every other resource of Lara leaves cleanly, so only the dropped one remains.
    lara.drop();
    await expect.poll(() => presenceOf("quiet", "late@localhost"), { timeout: 20_000 }).not.toBe("available");
  });
});
