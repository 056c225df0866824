// Entry point of /widget.js: reads the embedding <script> tag and starts the widget.
//   <script src="https://chat.example.com/widget.js" data-site="acme" async></script>

import { startWidget } from "./widget.js";

const SITE_ID = /^[a-z0-9][a-z0-9-]{0,31}$/;

function boot(script: HTMLScriptElement): void {
  const data = script.dataset;
  const siteId = data.site || "";
  if (!SITE_ID.test(siteId)) {
    console.warn("[parley] data-site is missing or invalid on the widget <script> tag");
    return;
  }
  // Loaded twice (e.g. by a tag manager and by hand): keep the first instance.
  if (document.querySelector(`parley-widget[data-site="${siteId}"]`)) return;
  // Two sites' widgets in one corner would cover each other (same place, same z-index),
  // and two launchers stacked there would leave the visitor guessing which desk is which:
  // the first one keeps the corner, and the page's developer is told why.
  const position = data.position === "left" ? "left" : "right";
  const occupant = document.querySelector(`parley-widget[data-position="${position}"]`);
  if (occupant) {
    console.warn(
      `[parley] the widget of site "${siteId}" is not shown: the widget of site "${occupant.getAttribute("data-site")}" already sits in the bottom-${position} corner of this page. ` +
        `Give one of them data-position="${position === "left" ? "right" : "left"}".`,
    );
    return;
  }

  // The socket lives next to widget.js, so a bridge behind a path prefix
  // (…/parley/widget.js → …/parley/visitor) works without configuration.
  const socket = new URL("visitor", script.src);
  socket.protocol = socket.protocol === "https:" ? "wss:" : "ws:";
  socket.search = "?site=" + siteId;

  const color = data.color && CSS.supports("color", data.color) ? data.color : null;
  startWidget({
    siteId,
    socketUrl: socket.href,
    title: data.title || "Chat with us",
    greeting: data.greeting || null,
    position,
    color,
  });
}

// currentScript is set while a classic script runs, async included; the query is the
// fallback for loaders that inject the code some other way.
const script = (document.currentScript as HTMLScriptElement | null) || document.querySelector<HTMLScriptElement>("script[data-site]");
if (script) {
  if (document.body) boot(script);
  // An async script in <head> can run before <body> exists.
  else document.addEventListener("DOMContentLoaded", () => boot(script));
}
