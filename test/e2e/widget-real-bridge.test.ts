import { execFileSync } from "node:child_process";
import { xml } from "@xmpp/client";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { AgentClient } from "../support/agent-client.js";
import { launchBrowser } from "../support/browser.js";
import { startStack, type Stack } from "../support/stack.js";
import { widgetOn, HOSTILE_HOST_CSS } from "../support/widget-page.js";

// The built widget in real headless Chromium against the real stack: a private
// ejabberd 23.01, the bridge, and agents on a real XMPP client. What a visitor sees on
// the page and what the agent's Jabber client gets, both ways.

const ROOT = new URL("../../", import.meta.url);
const SCREENSHOT = new URL("docs/widget-screenshot.png", ROOT).pathname;
const CHATSTATES = "http://jabber.org/protocol/chatstates";
const DOMAIN = "chat.localhost";

let stack: Stack;
let browser: Browser;
let alice: AgentClient;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  // Build from source so the test never runs a stale bundle.
  execFileSync(process.execPath, ["widget/build.mjs"], { cwd: ROOT });
  [stack, browser] = await Promise.all([startStack(), launchBrowser()]);
  // `northwind` has Alice online; nobody of `roastery` is online until the offline test logs agent2 in.
  expect((await stack.api("PUT", "/api/sites/northwind", { name: "Northwind Coffee", maxChatsPerAgent: 20 })).status).toBe(201);
  expect((await stack.api("PUT", "/api/sites/northwind/agents/agent1@localhost", { name: "Alice Martin" })).status).toBe(201);
  expect((await stack.api("PUT", "/api/sites/roastery", { name: "Roastery Wholesale" })).status).toBe(201);
  expect((await stack.api("PUT", "/api/sites/roastery/agents/agent2@localhost", { name: "Bob Chen" })).status).toBe(201);
  alice = await stack.agent("agent1");
  await stack.waitForPresence("northwind", "agent1@localhost", "available");
});

afterAll(async () => {
  await browser?.close();
  await stack?.stop();
});

beforeEach(async () => {
  context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  page = await context.newPage();
});

afterEach(async () => {
  await context?.close();
});

const demo = (site: string) => page.goto(`${stack.bridge.httpUrl}/demo?site=${site}`);

/** The visitor id from the resume token the widget stored (`parley:<site>` in localStorage). */
async function storedVisitorId(site: string): Promise<string> {
  const read = () =>
    page.evaluate((key) => {
      const raw = localStorage.getItem(key);
      return raw ? String((JSON.parse(raw) as { token?: unknown }).token ?? "") : "";
    }, `parley:${site}`);
  await expect.poll(read).not.toBe("");
  return (await read()).split(".")[0]!;
}

/** The next message with exactly this body that `agent`'s Jabber client receives. */
function agentReceives(agent: AgentClient, body: string, timeoutMs?: number) {
  return agent.messages.next((m) => m.attrs.type !== "error" && m.getChildText("body") === body, `"${body}" at ${agent.jid}`, timeoutMs);
}

const bare = (jid: string | undefined) => (jid ?? "").split("/")[0]!;

describe("widget against the real bridge and ejabberd", () => {
  it("carries a visitor's message to the agent's Jabber client and the reply back into the widget, and a reload restores it", async () => {
    const w = widgetOn(page);
    await demo("northwind");
    await w.open();

    // visitor sends → the agent's client gets it from the visitor's JID
    const question = "A V60 mostly. Which beans would you pick for pour-over?";
    await w.send(question);
    const received = await agentReceives(alice, question);
    const visitorId = await storedVisitorId("northwind");
    const visitorJid = `northwind.${visitorId}@${DOMAIN}`;
    expect(bare(received.attrs.from)).toBe(visitorJid);
    const online = (await stack.api("GET", "/api/sites/northwind/visitors")).body as { id: string; jid: string }[];
    expect(online.find((v) => v.id === visitorId)?.jid).toBe(visitorJid);
    await expect.poll(() => w.visitorMessages.locator(".meta.delivered").count()).toBe(1);

    // agent replies → the widget shows it under the agent's name
    const answer = "The Yirgacheffe shines in a V60: jasmine, bergamot, lemon. Try 15 g to 250 g water.";
    await alice.sendMessage(visitorJid, answer, [xml("active", { xmlns: CHATSTATES })]);
    await expect.poll(() => w.messages.allTextContents()).toEqual([question, answer]);
    expect(await w.heading.textContent()).toBe("Alice Martin");

    // a little more conversation, for the picture in docs/widget.md
    const link = "Details: https://northwind.example/shop/yirgacheffe";
    await alice.sendMessage(visitorJid, link);
    const thanks = "Perfect, thanks! Is it in stock?";
    await w.send(thanks);
    await agentReceives(alice, thanks);
    await expect.poll(() => w.visitorMessages.locator(".meta.delivered").count()).toBe(2);
    await alice.sendMessage(visitorJid, null, [xml("composing", { xmlns: CHATSTATES })]);
    await expect.poll(() => w.typing.textContent()).toContain("Alice Martin is typing");
    await page.mouse.move(0, 0);
    await page.screenshot({ path: SCREENSHOT });

    // reload → the same conversation comes back from the bridge
    const history = [question, answer, link, thanks];
    await page.reload();
    await w.panel.waitFor({ state: "visible" });
    await expect.poll(() => w.messages.allTextContents()).toEqual(history);
    expect(await storedVisitorId("northwind")).toBe(visitorId);
    expect(await w.visitorMessages.locator(".meta.delivered").count()).toBe(2);
  });

  it("shows markup from an agent as literal text and runs none of it", async () => {
    const w = widgetOn(page);
    await demo("northwind");
    await w.open();
    await w.send("Can you show me a picture of the roaster?");
    const received = await agentReceives(alice, "Can you show me a picture of the roaster?");

    const hostile = `<img src=x onerror=window.__xss=1> and <script>window.__xss=2</script>`;
    await alice.sendMessage(bare(received.attrs.from), hostile);
    await expect.poll(() => w.messages.last().textContent()).toBe(hostile);
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(await w.host.locator(".log :is(img, script)").count()).toBe(0);
    expect(await page.locator("img, script:not([src])").evaluateAll((els) => els.filter((e) => e.textContent?.includes("__xss")).length)).toBe(0);
  });

  it("offers the offline form when no agent is online, and an agent who logs in later gets the message from ejabberd's offline storage", async () => {
    const w = widgetOn(page);
    await demo("roastery");
    await w.open();
    await w.offlineForm.waitFor({ state: "visible" });
    expect(await w.input.isVisible()).toBe(false);

    const text = "Please call me about a wholesale order for our café.";
    await w.offlineForm.locator("input[name=name]").fill("Ann Lee");
    await w.offlineForm.locator("input[name=email]").fill("ann@example.com");
    await w.offlineForm.locator("textarea").fill(text);
    await w.offlineForm.locator("button[type=submit]").click();
    await w.offlineForm.waitFor({ state: "hidden" });
    await expect.poll(() => w.visitorMessages.locator(".meta.delivered").count()).toBe(1);
    const visitorJid = `roastery.${await storedVisitorId("roastery")}@${DOMAIN}`;

    // The bridge sent it to agent2's bare JID while agent2 was offline; ejabberd keeps it.
    await expect.poll(() => stack.ejabberd.offlineCount("agent2")).toBeGreaterThan(0);
    const bob = await stack.agent("agent2");
    const delivered = await agentReceives(bob, text);
    expect(bare(delivered.attrs.from)).toBe(visitorJid);
    expect(delivered.getChild("delay", "urn:xmpp:delay")).toBeDefined();
  });

  it("tells the visitor chat is unavailable once the site is deleted", async () => {
    expect((await stack.api("PUT", "/api/sites/closing", { name: "Closing Soon" })).status).toBe(201);
    const w = widgetOn(page);
    await demo("closing");
    await w.open();
    await w.offlineForm.waitFor({ state: "visible" });
    expect((await stack.api("DELETE", "/api/sites/closing")).status).toBe(204);

    // The bridge refuses the socket at its next frame and closes it with 4404: the widget
    // stops there (that it never reconnects is shown against the fake bridge).
    await w.offlineForm.locator("input[name=email]").fill("ann@example.com");
    await w.offlineForm.locator("textarea").fill("Are you still there?");
    await w.offlineForm.locator("button[type=submit]").click();
    await expect.poll(() => w.status.textContent()).toBe("Chat unavailable");
    expect(await w.linkBanner.textContent()).toBe("Chat is unavailable right now.");
  });

  it("stays visible and usable when the host page hides every element", async () => {
    const w = widgetOn(page);
    await demo("northwind");
    // Hiding <html> itself would blank the whole page; everything below it is fair game.
    await page.addStyleTag({ content: HOSTILE_HOST_CSS });
    await w.launcher.waitFor({ state: "visible" });
    expect(await w.launcher.boundingBox()).toEqual({ x: 1120, y: 720, width: 60, height: 60 });
    await w.open();
    await w.send("Still here despite the page's CSS");
    const received = await agentReceives(alice, "Still here despite the page's CSS");
    await alice.sendMessage(bare(received.attrs.from), "And we can read you fine.");
    await expect.poll(() => w.messages.last().textContent()).toBe("And we can read you fine.");
    expect(await w.messages.last().isVisible()).toBe(true);
  });
});
