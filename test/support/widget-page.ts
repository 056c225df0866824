import type { Page } from "playwright-core";

// Locators for the widget inside a page. Playwright's CSS engine pierces open shadow
// roots, so these reach into <parley-widget>'s shadow DOM directly.
export function widgetOn(page: Page) {
  const root = page.locator("parley-widget");
  const launcher = root.locator(".launcher");
  const panel = root.locator(".panel");
  const input = root.locator(".composer textarea");
  return {
    host: root,
    launcher,
    panel,
    input,
    badge: root.locator(".badge"),
    heading: root.locator("h2"),
    log: root.locator(".log"),
    /** Chat bubbles after the greeting, in order. */
    messages: root.locator(".log .msg:not(:first-child) .bubble"),
    visitorMessages: root.locator(".log .msg.visitor"),
    notices: root.locator(".log .notice"),
    typing: root.locator(".typing"),
    queue: root.locator(".banner:not(.link)"),
    /** The connection banner: lost, or unavailable. */
    linkBanner: root.locator(".banner.link"),
    /** The line under the heading: availability, "Connecting…", "Chat unavailable". */
    status: root.locator("header .status"),
    offlineForm: root.locator("form.offline"),

    async open(): Promise<void> {
      if ((await launcher.getAttribute("aria-expanded")) !== "true") await launcher.click();
      await panel.waitFor({ state: "visible" });
    },

    /** Types into the composer and presses Enter, like a visitor. */
    async send(text: string): Promise<void> {
      await input.fill(text);
      await input.press("Enter");
    },
  };
}

/**
 * A host page that hides every element it can (everything below <html>/<body>; hiding
 * <html> itself would blank the whole page) and pushes our custom element around.
 */
export const HOSTILE_HOST_CSS = `* { display: none !important; visibility: hidden !important; opacity: 0 !important; font-size: 2px !important }
html, body { display: block !important; visibility: visible !important; opacity: 1 !important }
parley-widget { position: static !important; left: 0 !important; transform: scale(0) !important }`;
