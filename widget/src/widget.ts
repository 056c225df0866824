// Wires one widget instance: session state ⇄ connection ⇄ view ⇄ storage. The only
// place that owns mutable state, timers, the clock and the random source.

import { Connection } from "./connection.js";
import { connectOneTabAtATime } from "./first-visit.js";
import { watchNavigation } from "./navigation.js";
import { cleanText } from "./protocol.js";
import { initialState, persisted, step, TYPING_STALE_MS, withOtherTabs, type SessionEvent } from "./session.js";
import { siteStore } from "./storage.js";
import { hostLayer, hostStyle } from "./styles.js";
import { createView, type ViewConfig } from "./view.js";

export interface WidgetConfig extends ViewConfig {
  siteId: string;
  /** ws(s)://…/visitor?site=… without the token, which is added per attempt. */
  socketUrl: string;
}

// XEP-0085 suggests "paused" after a few seconds without typing.
const PAUSED_AFTER_MS = 5000;

export function startWidget(cfg: WidgetConfig): void {
  const storage = localStorageOrNull();
  const store = siteStore(storage, cfg.siteId);
  let state = initialState(store.load());

  // A custom element name: it can host a shadow root, and no page stylesheet targets it.
  const host = document.createElement("parley-widget");
  host.setAttribute("data-site", cfg.siteId);
  host.setAttribute("data-position", cfg.position);
  // Through the CSSOM, not a style attribute: a page whose Content-Security-Policy has no
  // 'unsafe-inline' for styles refuses the attribute, and the box would lose its place.
  host.style.cssText = hostStyle(cfg.position);
  const shadow = host.attachShadow({ mode: "open" });
  document.body.append(host);

  const connection = new Connection({
    url: () => {
      // Before its first welcome, a tab resumes the visitor another tab of the site started.
      const token = state.token ?? store.load()?.token;
      return cfg.socketUrl + (token ? "&token=" + encodeURIComponent(token) : "");
    },
    onFrame: (frame) => dispatch({ type: "frame", frame }),
    onDown: (outlook) => dispatch({ type: outlook === "reconnecting" ? "disconnected" : "unavailable" }),
    random: Math.random,
  });

  let composing = false;
  let pauseTimer: ReturnType<typeof setTimeout> | undefined;
  const stopTyping = () => {
    clearTimeout(pauseTimer);
    composing = false;
  };
  const send = (text: string) => {
    const clean = cleanText(text).trim();
    // A message implies the visitor stopped typing (XEP-0085 "active"): no paused frame.
    stopTyping();
    if (clean) dispatch({ type: "send", id: clientId(), text: clean, ts: Date.now() });
  };

  const render = createView(shadow, cfg, {
    toggle: (expanded) => dispatch({ type: "toggle", expanded }),
    send,
    leaveMessage(name, email, text) {
      // identify first, so the stored offline message carries the visitor's address.
      dispatch({ type: "identify", name, email });
      send(text);
    },
    typing() {
      if (!composing) {
        composing = true;
        dispatch({ type: "typing", state: "composing" });
      }
      clearTimeout(pauseTimer);
      pauseTimer = setTimeout(() => {
        composing = false;
        dispatch({ type: "typing", state: "paused" });
      }, PAUSED_AFTER_MS);
    },
    retry: (id) => dispatch({ type: "retry", id }),
  });

  const draw = () => {
    render(state);
    host.style.setProperty("z-index", hostLayer(state.expanded), "important");
  };
  // Called once this tab's first welcome is stored, when it made the site's first connection.
  let firstConnectionMade = () => {};
  // "… is typing" expires without news: an agent whose client drops never sends "paused".
  let typingStale: ReturnType<typeof setTimeout> | undefined;
  function dispatch(event: SessionEvent): void {
    const next = step(state, event);
    if (event.type === "frame" && event.frame.type === "typing") {
      clearTimeout(typingStale);
      if (next.state.agentTyping !== null) typingStale = setTimeout(() => dispatch({ type: "typing-stale" }), TYPING_STALE_MS);
    }
    state = next.state;
    // A frame that fails to go out is still pending in the state and resent after the
    // next welcome, so the return value needs no handling here.
    for (const frame of next.out) connection.send(frame);
    store.save(withOtherTabs(persisted(state), store.load(), state));
    draw();
    // The token is stored: a tab waiting to make its first connection may go and resume it.
    if (event.type === "frame" && event.frame.type === "welcome") firstConnectionMade();
  }

  draw();
  watchNavigation(window, (page) => dispatch({ type: "page", url: page.url, title: page.title }));
  window.addEventListener("online", () => connection.retryNow());
  // A visitor coming back to the tab gets a fresh attempt instead of the rest of a long wait.
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") connection.retryNow();
  });
  if (state.token === null && storage) {
    const env = { locks: (navigator as { locks?: LockManager }).locks, storage, win: window, tabId: clientId(), hasToken: () => Boolean(store.load()?.token) };
    firstConnectionMade = connectOneTabAtATime(cfg.siteId, env, () => connection.start());
  } else {
    connection.start();
  }
}

function localStorageOrNull(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    // Accessing localStorage throws when the browser blocks storage for this page.
    return null;
  }
}

/** 128 random bits; getRandomValues exists on plain http pages, randomUUID does not. */
function clientId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  let id = "";
  for (let i = 0; i < bytes.length; i++) id += ((bytes[i] as number) + 256).toString(16).slice(1);
  return id;
}
