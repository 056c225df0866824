import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// PARLEY_VISITOR_RETENTION_DAYS, here 2 s: a visitor who never chats is forgotten that long
// after their last visit (their token then starts a new visitor); one who chatted is kept.

const RETENTION_DAYS = String(2 / 86_400);

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ env: { PARLEY_VISITOR_RETENTION_DAYS: RETENTION_DAYS } });
  expect((await stack.api("PUT", "/api/sites/acme", { name: "Acme Inc" })).status).toBe(201);
});
afterAll(async () => {
  await stack?.stop();
});

/** Whether the visitor's token still resumes them (a forgotten token starts a new visitor). */
async function resumes(token: string): Promise<boolean> {
  const tab = await stack.visitor("acme", { token });
  await tab.close();
  return tab.welcome.resumed;
}

describe("visitor retention", () => {
  it("forgets a visitor who never chatted after the retention, and keeps one who chatted", async () => {
    const chatter = await stack.visitor("acme");
    await chatter.say("is anyone there?");
    await chatter.close();
    const browser = await stack.visitor("acme");
    await browser.close();
    expect(await resumes(browser.welcome.token)).toBe(true); // back in time: kept for 2 s more

    // Resuming is a visit, which keeps a visitor: wait instead until one of these, seen
    // after the browser's last visit, is forgotten; each is tried once.
    const laterVisitors: string[] = [];
    for (let i = 0; i < 60; i++) {
      const later = await stack.visitor("acme");
      await later.close();
      laterVisitors.push(later.welcome.token);
    }
    const nextLater = () => {
      const token = laterVisitors.shift();
      if (!token) throw new Error("no visitor was forgotten in time");
      return token;
    };
    await expect.poll(() => resumes(nextLater()), { timeout: 15_000, interval: 200 }).toBe(false);
    expect(await resumes(browser.welcome.token)).toBe(false);
    const back = await stack.visitor("acme", { token: chatter.welcome.token });
    expect(back.welcome).toMatchObject({ resumed: true, visitorId: chatter.welcome.visitorId, history: expect.arrayContaining([expect.objectContaining({ text: "is anyone there?" })]) });
    await back.close();
  });
});
