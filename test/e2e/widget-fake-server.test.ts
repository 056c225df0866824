import { execFileSync } from "node:child_process";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { launchBrowser } from "../support/browser.js";
import { FakeBridge, readWidgetAssets } from "../support/fake-visitor-bridge.js";
import { announced, recordAnnouncements } from "../support/screen-reader.js";
import { widgetOn, HOSTILE_HOST_CSS } from "../support/widget-page.js";

// The built widget in real headless Chromium against a fake of the visitor protocol:
// what a visitor sees and does, and which frames reach the server.

const ROOT = new URL("../../", import.meta.url);

let browser: Browser;
let bridge: FakeBridge;
let context: BrowserContext;
let page: Page;

beforeAll(async () => {
  // Build from source so the test never runs a stale bundle.
  execFileSync(process.execPath, ["widget/build.mjs"], { cwd: ROOT });
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
});

beforeEach(async () => {
  bridge = await FakeBridge.start({ ...readWidgetAssets(ROOT), sites: { acme: { agentsOnline: true }, closed: { agentsOnline: false }, greeted: { agentsOnline: true, welcome: "Welcome to Greeted! Ask us anything." } }, pages: { "/two-sites-one-corner": TWO_SITES_ONE_CORNER, "/two-sites-two-corners": TWO_SITES_TWO_CORNERS, "/strict-shop": STRICT_SHOP, "/rtl-shop": RTL_SHOP, "/greeted-shop": { html: '<!doctype html><html><body><script src="/widget.js" data-site="greeted" async></script></body></html>' }, "/greeted-own-words": { html: '<!doctype html><html><body><script src="/widget.js" data-site="greeted" data-greeting="Our own words." async></script></body></html>' } } });
  context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  page = await context.newPage();
});

afterEach(async () => {
  await context?.close();
  await bridge?.close();
});

const demo = (site = "acme") => page.goto(`${bridge.origin}/demo?site=${site}`);

/** Widgets of two sites embedded in one page: in the same corner, and in opposite corners. */
const TWO_SITES_ONE_CORNER = { html: '<!doctype html><html><body><script src="/widget.js" data-site="acme" async></script><script src="/widget.js" data-site="closed" async></script></body></html>' };
const TWO_SITES_TWO_CORNERS = { html: '<!doctype html><html><body><script src="/widget.js" data-site="acme" async></script><script src="/widget.js" data-site="closed" data-position="left" async></script></body></html>' };

/** A right-to-left page (Hebrew). */
const RTL_SHOP = { html: '<!doctype html><html dir="rtl" lang="he"><head><title>חנות</title></head><body><p>חנות</p><script src="/widget.js" data-site="acme" async></script></body></html>' };

/** A shop page that allows scripts and styles from its own origin only: no inline styles. */
const STRICT_SHOP = {
  html: '<!doctype html><html><head><title>Shop</title></head><body><p>Shop</p><script src="/widget.js" data-site="acme" async></script></body></html>',
  headers: { "content-security-policy": "default-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self' ws:" },
};

/**
 * Counts the page's WebSocket attempts and their closes, so a test can tell how often the
 * widget tried to connect. Installed before the page's scripts run.
 */
async function countSockets(on: Page): Promise<void> {
  await on.addInitScript(() => {
    const Native = window.WebSocket;
    const counts = { opened: 0, closed: 0 };
    (window as unknown as { __sockets: typeof counts }).__sockets = counts;
    window.WebSocket = class extends Native {
      constructor(url: string | URL, protocols?: string | string[]) {
        super(url, protocols);
        counts.opened++;
        this.addEventListener("close", () => counts.closed++);
      }
    };
  });
}

const sockets = (on: Page) => on.evaluate(() => ({ ...(window as unknown as { __sockets: { opened: number; closed: number } }).__sockets }));

describe("widget in a browser", () => {
  it("greets the visitor, sends with Enter, adds a line with Shift+Enter, and ticks once acknowledged", async () => {
    const w = widgetOn(page);
    await demo();
    await w.open();
    await expect.poll(() => w.log.textContent()).toContain("Hi there! How can we help you today?");
    await expect.poll(() => w.input.evaluate((el) => el === (el.getRootNode() as ShadowRoot).activeElement)).toBe(true);

    bridge.holdAcks = true;
    await w.input.pressSequentially("Do you ship");
    await w.input.press("Shift+Enter");
    await w.input.pressSequentially("to Canada?");
    await w.input.press("Enter");

    const sent = await bridge.waitFor("message");
    expect(sent.text).toBe("Do you ship\nto Canada?");
    expect(await w.input.inputValue()).toBe("");
    const mine = w.visitorMessages.last();
    await expect.poll(() => mine.locator(".meta").getAttribute("class")).toContain("pending");
    bridge.releaseAcks();
    await expect.poll(() => mine.locator(".meta").getAttribute("class")).toContain("delivered");
    expect(await mine.locator(".bubble").textContent()).toBe("Do you ship\nto Canada?");
  });

  it("reports the page on load and on single-page-app navigation", async () => {
    await demo();
    await bridge.waitFor("page", (f) => f.title === "Northwind Coffee Roasters — Home");
    await page.click("nav a[data-route=shop]");
    const shop = await bridge.waitFor("page", (f) => f.url.endsWith("#/shop"));
    expect(shop.title).toBe("Northwind Coffee Roasters — Shop");
    await page.goBack();
    await expect.poll(() => bridge.framesOf("page").length).toBe(3);
    expect(bridge.framesOf("page").at(-1)?.title).toBe("Northwind Coffee Roasters — Home");
  });

  it("shows markup from an agent as literal text and runs none of it", async () => {
    const w = widgetOn(page);
    await demo();
    await w.open();
    await bridge.waitFor("page");
    const hostile = `<img src=x onerror="window.__xss=1"><script>window.__xss=2</script><b>bold</b>`;
    bridge.toVisitors({ type: "agent", state: "joined", name: "<i>Eve</i>" });
    bridge.agentSays("<i>Eve</i>", hostile);

    await expect.poll(() => w.messages.last().textContent()).toBe(hostile);
    await expect.poll(() => w.heading.textContent()).toBe("<i>Eve</i>");
    expect(await page.evaluate(() => (window as { __xss?: number }).__xss)).toBeUndefined();
    expect(await w.host.locator(".log :is(img, script, b, i), header i").count()).toBe(0);
  });

  it("shows the agent's name, typing, queue position and an unread badge while collapsed", async () => {
    const w = widgetOn(page);
    await demo();
    await bridge.waitFor("page");
    bridge.toVisitors({ type: "queue", position: 2 });
    bridge.agentSays("Parley", "You are in the queue.");
    bridge.agentSays("Parley", "Thanks for waiting.");
    await expect.poll(() => w.badge.textContent()).toBe("2");
    expect(await w.launcher.getAttribute("aria-label")).toBe("Open chat, 2 unread messages");

    await w.open();
    expect(await w.badge.isVisible()).toBe(false);
    expect(await w.queue.textContent()).toContain("number 2 in line");
    bridge.toVisitors({ type: "agent", state: "joined", name: "Alice Martin" });
    bridge.toVisitors({ type: "typing", state: "composing", name: "Alice Martin" });
    await expect.poll(() => w.typing.textContent()).toContain("Alice Martin is typing");
    expect(await w.heading.textContent()).toBe("Alice Martin");
    expect(await w.queue.isVisible()).toBe(false);
  });

  it("offers the offline form when no agent is online and sends identify, then the message", async () => {
    const w = widgetOn(page);
    await demo("closed");
    await w.open();
    await w.offlineForm.waitFor({ state: "visible" });
    expect(await w.input.isVisible()).toBe(false);

    await w.offlineForm.locator("input[name=name]").fill("Ann Lee");
    await w.offlineForm.locator("input[name=email]").fill("ann@example.com");
    await w.offlineForm.locator("textarea").fill("Please call me about a wholesale order.");
    await w.offlineForm.locator("button[type=submit]").click();

    await bridge.waitFor("message");
    const order = bridge.received.map((f) => f.type).filter((t) => t === "identify" || t === "message");
    expect(order).toEqual(["identify", "message"]);
    expect(bridge.framesOf("identify")[0]).toEqual({ type: "identify", name: "Ann Lee", email: "ann@example.com" });
    await w.offlineForm.waitFor({ state: "hidden" });
    await expect.poll(() => w.visitorMessages.last().locator(".meta").getAttribute("class")).toContain("delivered");
  });

  it("keeps what the visitor was typing, and the focus, when an agent comes online mid-form", async () => {
    const w = widgetOn(page);
    await demo("closed");
    await w.open();
    await w.offlineForm.locator("textarea").fill("Do you ship to Norway?");
    bridge.toVisitors({ type: "availability", agentsOnline: true });
    await w.input.waitFor({ state: "visible" });
    expect(await w.input.inputValue()).toBe("Do you ship to Norway?");
    expect(await w.input.evaluate((input) => (input.getRootNode() as ShadowRoot).activeElement === input)).toBe(true);
  });

  it("stays visible and usable when the host page hides every element", async () => {
    const w = widgetOn(page);
    await demo();
    // Hiding <html> itself would blank the whole page; everything below it is fair game.
    await page.addStyleTag({ content: HOSTILE_HOST_CSS });
    await w.launcher.waitFor({ state: "visible" });
    // Still 60 px and still in the bottom-right corner of the 1200×800 viewport.
    expect(await w.launcher.boundingBox()).toEqual({ x: 1120, y: 720, width: 60, height: 60 });
    await w.open();
    await w.send("still here");
    await bridge.waitFor("message", (f) => f.text === "still here");
  });

  it("keeps its place and looks under a strict Content-Security-Policy (no inline styles)", async () => {
    const violations: string[] = [];
    page.on("console", (message) => {
      if (message.type() === "error" && /Content Security Policy/i.test(message.text())) violations.push(message.text());
    });
    await page.goto(`${bridge.origin}/strict-shop`);
    const w = widgetOn(page);
    await w.launcher.waitFor({ state: "visible" });
    expect(await w.host.evaluate((host) => getComputedStyle(host).position)).toBe("fixed");
    expect(await w.launcher.boundingBox()).toEqual({ x: 1120, y: 720, width: 60, height: 60 });
    await w.open();
    expect(violations).toEqual([]);
    await w.send("hello from a strict page");
    await bridge.waitFor("message", (f) => f.text === "hello from a strict page");
  });

  it("keeps its corner on a right-to-left page, writes each text in its own direction, and wraps long names", async () => {
    await page.goto(`${bridge.origin}/rtl-shop`);
    const w = widgetOn(page);
    await w.launcher.waitFor({ state: "visible" });
    expect(await w.launcher.boundingBox()).toEqual({ x: 1120, y: 720, width: 60, height: 60 });
    await w.open();
    await bridge.waitFor("page");
    const longName = "Maximilian".repeat(8);
    bridge.toVisitors({ type: "agent", state: "joined", name: longName });
    bridge.agentSays(longName, "תודה רבה!");
    await expect.poll(() => w.messages.last().textContent()).toBe("תודה רבה!");
    expect(await w.messages.last().getAttribute("dir")).toBe("auto");
    expect(await w.input.getAttribute("dir")).toBe("auto");
    expect(await w.log.evaluate((log) => log.scrollWidth <= log.clientWidth)).toBe(true);
  });

  it("greets with the site's welcome text unless the page sets data-greeting", async () => {
    const w = widgetOn(page);
    await page.goto(`${bridge.origin}/greeted-shop`);
    await w.open();
    await expect.poll(() => w.log.locator(".msg:first-child .bubble").textContent()).toBe("Welcome to Greeted! Ask us anything.");
    await demo("greeted"); // the demo page shows each site's own welcome: an admin tries theirs there
    await w.open();
    await expect.poll(() => w.log.locator(".msg:first-child .bubble").textContent()).toBe("Welcome to Greeted! Ask us anything.");
    await page.goto(`${bridge.origin}/greeted-own-words`);
    await w.open();
    await expect.poll(() => w.log.locator(".msg:first-child .bubble").textContent()).toBe("Our own words.");
  });

  it.each([
    ["the Web Locks API", false],
    ["a claim in localStorage where Web Locks are missing", true],
  ])("makes one visitor of two tabs opened at the same instant on a first visit, serialised with %s", async (_, withoutLocks) => {
    if (withoutLocks) await context.addInitScript(() => Object.defineProperty(navigator, "locks", { value: undefined }));
    bridge.holdWelcomes = true;
    const [first, second] = [page, await context.newPage()];
    await Promise.all([first, second].map((p) => p.goto(`${bridge.origin}/demo?site=acme`)));
    // Both widgets run, and at least one has connected, before the bridge answers anyone.
    await Promise.all([first, second].map((p) => widgetOn(p).host.waitFor({ state: "attached" })));
    await expect.poll(() => bridge.connectTokens.length).toBeGreaterThan(0);
    bridge.releaseWelcomes();

    for (const p of [first, second]) await expect.poll(() => widgetOn(p).status.textContent()).toBe("We typically reply in a few minutes");
    expect(bridge.connectTokens).toEqual(["", expect.stringMatching(/^tok-/)]);
    expect(bridge.visitorCount).toBe(1);
  });

  it("restores the conversation after a reload using the stored token", async () => {
    const w = widgetOn(page);
    await demo();
    await w.open();
    await w.send("Is the Huila in stock?");
    await expect.poll(() => w.visitorMessages.last().locator(".meta").getAttribute("class")).toContain("delivered");
    bridge.agentSays("Alice", "Yes, roasted yesterday.");
    await expect.poll(() => w.messages.count()).toBe(2);

    await page.reload();
    await expect.poll(() => bridge.connectTokens.length).toBe(2);
    expect(bridge.connectTokens[1]).toMatch(/^tok-/);
    // It was open before the reload, so it opens again with the history.
    await w.panel.waitFor({ state: "visible" });
    await expect.poll(() => w.messages.allTextContents()).toEqual(["Is the Huila in stock?", "Yes, roasted yesterday."]);
    expect(await w.visitorMessages.locator(".meta.delivered").count()).toBe(1);
  });

  it("announces to screen readers only what others write after the history is shown, never the history restored on a reload", async () => {
    await recordAnnouncements(page);
    const w = widgetOn(page);
    await demo();
    await w.open();
    await w.send("Is the Huila in stock?");
    await expect.poll(() => w.visitorMessages.last().locator(".meta").getAttribute("class")).toContain("delivered");
    bridge.agentSays("Alice", "Yes, roasted yesterday.");
    await expect.poll(() => announced(page)).toEqual(["Alice: Yes, roasted yesterday."]);

    // Reloaded with the box left open: the history comes back silently.
    await page.reload();
    await w.panel.waitFor({ state: "visible" });
    await expect.poll(() => w.messages.allTextContents()).toEqual(["Is the Huila in stock?", "Yes, roasted yesterday."]);
    // A status is spoken once, not again at every render that follows while it shows.
    bridge.toVisitors({ type: "queue", position: 2 });
    bridge.agentSays("Parley", "All our agents are busy.");
    bridge.toVisitors({ type: "agent", state: "joined", name: "Alice" });
    bridge.agentSays("Alice", "Anything else?");
    await expect
      .poll(() => announced(page))
      .toEqual(["You're number 2 in line. Someone will be with you shortly.", "Parley: All our agents are busy.", "Alice joined the chat", "Alice: Anything else?"]);
    expect(await w.log.getAttribute("aria-live")).toBe("off");
  });

  it("reconnects promptly after a 1012 restart and resends the unacknowledged message with the same id", async () => {
    const w = widgetOn(page);
    await demo();
    await w.open();
    bridge.holdAcks = true;
    await w.send("sent during a restart");
    const first = await bridge.waitFor("message");

    // The restart comes before the message was stored and acknowledged.
    const closedAt = Date.now();
    bridge.closeAll(1012);
    await expect.poll(() => bridge.framesOf("message").length, { timeout: 5000 }).toBe(2);
    expect(Date.now() - closedAt).toBeLessThan(2500);
    expect(bridge.framesOf("message")[1]?.id).toBe(first.id);

    // Both copies now reach storage: one message, acknowledged twice.
    bridge.holdAcks = false;
    bridge.releaseAcks();

    await expect.poll(() => w.visitorMessages.locator(".meta.delivered").count()).toBe(1);
    expect(await w.visitorMessages.count()).toBe(1);
  });

  it("stops reconnecting and tells the visitor chat is unavailable when the bridge closes for a deleted site (4404)", async () => {
    await page.clock.install();
    await countSockets(page);
    const w = widgetOn(page);
    await demo();
    await w.open();
    await bridge.waitFor("page");
    bridge.closeAll(4404, "site deleted");

    await expect.poll(() => w.status.textContent()).toBe("Chat unavailable");
    expect(await w.linkBanner.textContent()).toBe("Chat is unavailable right now.");
    expect(await w.input.isVisible()).toBe(false);
    // Neither the network coming back, nor the visitor returning to the tab, nor an hour brings it back.
    await page.evaluate(() => {
      window.dispatchEvent(new Event("online"));
      document.dispatchEvent(new Event("visibilitychange"));
    });
    await page.clock.runFor(60 * 60_000);
    expect(await sockets(page)).toEqual({ opened: 1, closed: 1 });
  });

  it("rests after six refused connects in a row, trying again every few minutes and when the page is visible again", async () => {
    await page.clock.install();
    await countSockets(page);
    const w = widgetOn(page);
    // An unknown site: the upgrade gets 404, which the browser reports only as a failed connection.
    await demo("ghost");
    const settled = async () => {
      const { opened, closed } = await sockets(page);
      return opened > 0 && opened === closed;
    };
    for (;;) {
      await expect.poll(settled).toBe(true);
      if ((await sockets(page)).closed >= 6) break;
      expect(await w.status.textContent()).toBe("Connecting…");
      await page.clock.runFor(30_000); // the longest step of the normal backoff
    }
    await expect.poll(() => w.status.textContent()).toBe("Chat unavailable");
    await page.clock.runFor(3 * 60_000); // shorter than the shortest rest (4 min)
    expect(await sockets(page)).toEqual({ opened: 6, closed: 6 });

    await page.evaluate(() => document.dispatchEvent(new Event("visibilitychange")));
    await expect.poll(() => sockets(page)).toEqual({ opened: 7, closed: 7 });
    await page.clock.runFor(5 * 60_000);
    await expect.poll(() => sockets(page)).toEqual({ opened: 8, closed: 8 });
    expect(await w.status.textContent()).toBe("Chat unavailable");
  });

  it("fills a phone screen when opened", async () => {
    await page.setViewportSize({ width: 375, height: 667 });
    const w = widgetOn(page);
    await demo();
    await w.open();
    expect(await w.panel.boundingBox()).toMatchObject({ x: 0, y: 0, width: 375, height: 667 });
    await w.send("hello from my phone");
    await bridge.waitFor("message", (f) => f.text === "hello from my phone");
    await w.host.locator(".close").click();
    await w.launcher.waitFor({ state: "visible" });
  });

  it("shows one widget per corner: another site's widget for a taken corner stays out and says why in the console", async () => {
    const warnings: string[] = [];
    page.on("console", (m) => void (m.type() === "warning" && warnings.push(m.text())));
    await page.goto(`${bridge.origin}/two-sites-one-corner`);
    // Async scripts run in the order they arrive: either site may be first.
    await expect.poll(() => warnings.length).toBe(1);
    const hosts = page.locator("parley-widget");
    expect(await hosts.count()).toBe(1);
    const shown = (await hosts.getAttribute("data-site")) as string;
    const refused = shown === "acme" ? "closed" : "acme";
    expect(warnings[0]).toContain(`the widget of site "${refused}" is not shown: the widget of site "${shown}" already sits in the bottom-right corner`);

    await page.goto(`${bridge.origin}/two-sites-two-corners`);
    await expect.poll(() => hosts.count()).toBe(2);
    const launcher = (site: string) => page.locator(`parley-widget[data-site="${site}"] .launcher`);
    expect(await launcher("acme").boundingBox()).toEqual({ x: 1120, y: 720, width: 60, height: 60 });
    expect(await launcher("closed").boundingBox()).toEqual({ x: 20, y: 720, width: 60, height: 60 });
    expect(warnings).toHaveLength(1);

    // On a phone an open box fills the screen: it covers the other corner's launcher, even
    // that of a widget which comes later in the page (and so would paint on top).
    await page.setViewportSize({ width: 375, height: 667 });
    const [earlier, later] = await page.evaluate(() => [...document.querySelectorAll("parley-widget")].map((el) => el.getAttribute("data-site") as string));
    await launcher(earlier!).click();
    const covered = (await launcher(later!).boundingBox())!;
    const center = { x: covered.x + covered.width / 2, y: covered.y + covered.height / 2 };
    expect(await page.evaluate(({ x, y }) => document.elementFromPoint(x, y)?.getAttribute("data-site"), center)).toBe(earlier);
  });
});
