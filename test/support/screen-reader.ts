import type { Page } from "playwright-core";

// What a screen reader would say about the widget, as far as a test can tell in Chromium.

/**
 * Records what a screen reader would announce: the text of every node added inside a live
 * region (an `aria-live` other than "off", or a role that implies one) of the widget's
 * shadow root, which it observes from the moment it is attached.
 */
export async function recordAnnouncements(on: Page): Promise<void> {
  await on.addInitScript(() => {
    const announced: string[] = [];
    (window as unknown as { __announced: string[] }).__announced = announced;
    const IMPLICIT: Record<string, string> = { log: "polite", status: "polite", alert: "assertive" };
    const liveness = (start: Node | null): string => {
      for (let n = start; n && !(n instanceof ShadowRoot); n = n.parentNode) {
        if (!(n instanceof Element)) continue;
        const live = n.getAttribute("aria-live") ?? IMPLICIT[n.getAttribute("role") ?? ""];
        if (live) return live;
      }
      return "off";
    };
    const attachShadow = Element.prototype.attachShadow;
    Element.prototype.attachShadow = function (init) {
      const root = attachShadow.call(this, init);
      new MutationObserver((records) => {
        for (const r of records) {
          for (const node of r.addedNodes) {
            const text = (node.textContent ?? "").trim();
            if (text && liveness(node instanceof Element ? node : node.parentNode) !== "off") announced.push(text);
          }
        }
      }).observe(root, { childList: true, subtree: true });
      return root;
    };
  });
}

export const announced = (on: Page) => on.evaluate(() => [...(window as unknown as { __announced: string[] }).__announced]);
