import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// PARLEY_VISITOR_RETENTION_DAYS, here 2 s: a visitor who never chats is forgotten that long
// after their last visit (their token then starts a new visitor); one who chatted is kept
// while they have a transcript (PARLEY_TRANSCRIPT_RETENTION_DAYS, here 2 s too).

const RETENTION_DAYS = String(2 / 86_400);

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], env: { PARLEY_VISITOR_RETENTION_DAYS: RETENTION_DAYS, PARLEY_TRANSCRIPT_RETENTION_DAYS: RETENTION_DAYS } });
  expect((await stack.api("PUT", "/api/sites/acme", { name: "Acme Inc" })).status).toBe(201);
});
afterAll(async () => {
  await stack?.stop();
});

/** Whether the visitor's token still resumes them (a forgotten token starts a new visitor). */
async function resumes(token: string, siteId = "acme"): Promise<boolean> {
  const tab = await stack.visitor(siteId, { token });
  await tab.close();
  return tab.welcome.resumed;
}

describe("visitor retention", () => {
  it("forgets a visitor who never chatted after the retention, and keeps one who chatted", async () => {
    const chatter = await stack.visitor("acme");
    await chatter.say("is anyone there?");
    await chatter.close();
    const stillOpen = await stack.visitor("acme"); // an open socket is not a visit after the first
    const browser = await stack.visitor("acme");
    await browser.close();
    expect(await resumes(browser.welcome.token)).toBe(true); // back in time: kept for 2 s more

    await untilForgotten();
    expect(await resumes(browser.welcome.token)).toBe(false);
    const back = await stack.visitor("acme", { token: chatter.welcome.token });
    expect(back.welcome).toMatchObject({ resumed: true, visitorId: chatter.welcome.visitorId, history: expect.arrayContaining([expect.objectContaining({ text: "is anyone there?" })]) });
    await back.close();

    // A socket whose visitor was forgotten is asked to reconnect: it comes back as a new
    // visitor, and the message it could not store goes again.
    stillOpen.send({ type: "message", id: "late", text: "hello?" });
    expect((await stillOpen.closed).code).toBe(1012);
    const renewed = await stack.visitor("acme", { token: stillOpen.welcome.token });
    expect(renewed.welcome.resumed).toBe(false);
    expect(await renewed.say("hello?", "late")).toMatchObject({ type: "ack", id: "late" });
    await renewed.close();
  });

  it("forgets a visitor once their last transcript is purged", async () => {
    const { agent, visitor, visitorJid, chatId } = await stack.openChat("help", "agent1", "question");
    await agent.sendMessage(visitorJid, "!end");
    await visitor.next("ended");
    await visitor.close();

    await expect.poll(async () => (await stack.api("GET", `/api/chats/${chatId}`)).status, { timeout: 15_000, interval: 200 }).toBe(404);
    await untilForgotten();
    expect(await resumes(visitor.welcome.token, "help")).toBe(false);
  });
});

/**
 * Resuming is a visit, which keeps a visitor: waits instead until one of many visitors seen
 * from now on is forgotten (each tried once), so that everyone seen before is too.
 */
async function untilForgotten(): Promise<void> {
  const later: string[] = [];
  for (let i = 0; i < 60; i++) {
    const visitor = await stack.visitor("acme");
    await visitor.close();
    later.push(visitor.welcome.token);
  }
  const next = () => {
    const token = later.shift();
    if (!token) throw new Error("no visitor was forgotten in time");
    return token;
  };
  await expect.poll(() => resumes(next()), { timeout: 15_000, interval: 200 }).toBe(false);
}
