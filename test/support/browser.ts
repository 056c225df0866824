import { chromium, type Browser } from "playwright-core";

// Debian's chromium package, never a downloaded browser: tests run offline and on the
// same binary that `apt-get install chromium` gives a developer.
const CHROMIUM = process.env.PARLEY_CHROMIUM ?? "/usr/bin/chromium";

/** Headless Chromium for browser tests; close it in afterAll. */
export function launchBrowser(): Promise<Browser> {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      // Containers and CI runners usually lack the user namespaces the sandbox needs.
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      // No background traffic to Google services: tests must not depend on the network.
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}
