// The widget's DOM, built once inside the shadow root and patched from SessionState.
// Every piece of text from the server or the visitor goes in through text nodes
// (createTextNode / textContent), never innerHTML: messages are shown, not interpreted.

import { MAX_TEXT_CHARS } from "./protocol.js";
import { showsOfflineForm, type Line, type SessionState } from "./session.js";
import { CSS } from "./styles.js";

/** Announcements kept in the live region; older ones have been spoken and are dropped. */
const MAX_ANNOUNCED = 5;

/** The first bubble, unless the page's `data-greeting` or the site's `welcome` says otherwise. */
const DEFAULT_GREETING = "Hi there! How can we help you today?";

export interface ViewConfig {
  title: string;
  /** `data-greeting` on the script tag: the page's own word wins over the site's. */
  greeting: string | null;
  position: "left" | "right";
  color: string | null;
}

export interface ViewActions {
  toggle(expanded: boolean): void;
  send(text: string): void;
  leaveMessage(name: string, email: string, text: string): void;
  typing(): void;
  retry(id: string): void;
}

type Child = Node | string | null;

function h<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string>, ...children: Child[]): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const name in attrs) el.setAttribute(name, attrs[name] as string);
  for (const c of children) if (c !== null) el.append(c);
  return el;
}

// Feather-style icons (24×24, stroked): our own constant path data, built as DOM nodes.
const ICONS = {
  chat: "M21 11.5a8.4 8.4 0 0 1-.9 3.8 8.5 8.5 0 0 1-7.6 4.7 8.4 8.4 0 0 1-3.8-.9L3 21l1.9-5.7a8.4 8.4 0 0 1-.9-3.8 8.5 8.5 0 0 1 4.7-7.6 8.4 8.4 0 0 1 3.8-.9h.5a8.5 8.5 0 0 1 8 8v.5z",
  down: "M6 9l6 6 6-6",
  send: "M22 2L11 13M22 2l-7 20-4-9-9-4 20-7z",
  check: "M20 6L9 17l-5-5",
  clock: "M12 21a9 9 0 1 0 0-18 9 9 0 0 0 0 18zM12 7v5l3 2",
};

function icon(name: keyof typeof ICONS, className = ""): SVGSVGElement {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  const path = document.createElementNS(ns, "path");
  const attrs: Record<string, string> = {
    viewBox: "0 0 24 24",
    fill: "none",
    stroke: "currentColor",
    "stroke-width": "2",
    "stroke-linecap": "round",
    "stroke-linejoin": "round",
    "aria-hidden": "true",
    focusable: "false",
    class: className,
  };
  for (const a in attrs) svg.setAttribute(a, attrs[a] as string);
  path.setAttribute("d", ICONS[name]);
  svg.append(path);
  return svg;
}

// Agents often paste links; making http(s) URLs clickable still builds only text nodes
// and anchors whose href is the matched http(s) URL itself.
const URL_RE = /\bhttps?:\/\/[^\s<>"']*[^\s<>"'.,;:!?)\]]/g;

function textWithLinks(text: string): DocumentFragment {
  const frag = document.createDocumentFragment();
  let last = 0;
  let m: RegExpExecArray | null;
  URL_RE.lastIndex = 0;
  while ((m = URL_RE.exec(text))) {
    frag.append(text.slice(last, m.index), h("a", { href: m[0], target: "_blank", rel: "noopener noreferrer nofollow" }, m[0]));
    last = m.index + m[0].length;
  }
  frag.append(text.slice(last));
  return frag;
}

const time = (ts: number) => new Date(ts).toLocaleTimeString([], { hour: "numeric", minute: "2-digit" });

const initials = (name: string) =>
  name
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w.charAt(0).toUpperCase())
    .join("");

/** Text colour that stays readable on the site's brand colour (YIQ brightness). */
function readableOn(color: string, probe: HTMLElement): string {
  probe.style.color = color;
  const [r = 0, g = 0, b = 0] = (getComputedStyle(probe).color.match(/[\d.]+/g) || []).map(Number);
  probe.style.color = "";
  return (r * 299 + g * 587 + b * 114) / 1000 > 160 ? "#1d2433" : "#fff";
}

export function createView(shadow: ShadowRoot, cfg: ViewConfig, actions: ViewActions): (s: SessionState) => void {
  const badge = h("span", { class: "badge", "aria-hidden": "true", hidden: "" });
  // Both icons stay in the DOM and CSS shows one (.open), so a render never replaces the
  // children of the focused button.
  const launcher = h(
    "button",
    { class: "launcher", type: "button", "aria-controls": "parley-panel", "aria-expanded": "false" },
    icon("chat", "ic-chat"),
    icon("down", "ic-down"),
    badge,
  );

  const avatar = h("div", { class: "avatar", "aria-hidden": "true" });
  const heading = h("h2", { id: "parley-heading" });
  const dot = h("span", { class: "dot" });
  const statusText = h("span", {});
  const close = h("button", { class: "close", type: "button", "aria-label": "Minimize chat" }, icon("down"));

  const greetingText = h("div", { class: "bubble", dir: "auto" }, cfg.greeting ?? DEFAULT_GREETING);
  const greeting = h("div", { class: "msg agent" }, greetingText);
  // The log is not a live region itself: a conversation restored on a reload (its history)
  // lands in it in one go, and a screen reader would read all of it out. New messages from
  // others are spoken through `announcer` instead, once the history is on screen.
  const log = h("div", { class: "log", role: "log", "aria-live": "off", tabindex: "0", "aria-label": "Messages" }, greeting);
  const announcer = h("div", { class: "sr", "aria-live": "polite", "aria-relevant": "additions" });
  const typingName = h("span", {});
  const typing = h("div", { class: "typing", hidden: "" }, h("span", { class: "dots", "aria-hidden": "true" }, h("i", {}), h("i", {}), h("i", {})), typingName);
  const queue = h("div", { class: "banner", role: "status" });
  const linkBanner = h("div", { class: "banner link", role: "status" });

  const input = h("textarea", { rows: "1", dir: "auto", maxlength: String(MAX_TEXT_CHARS), placeholder: "Write a message…", "aria-label": "Message", enterkeyhint: "send" });
  const composer = h("form", { class: "composer" }, input, h("button", { class: "send", type: "submit", "aria-label": "Send" }, icon("send")));

  const offName = h("input", { name: "name", dir: "auto", autocomplete: "name", maxlength: "128" });
  // 254: the longest address the bridge takes (a longer one made every identify frame fail).
  const offEmail = h("input", { name: "email", type: "email", autocomplete: "email", required: "", maxlength: "254" });
  const offText = h("textarea", { name: "message", dir: "auto", required: "", maxlength: String(MAX_TEXT_CHARS), rows: "3" });
  const offline = h(
    "form",
    { class: "offline", hidden: "", "aria-label": "Leave a message" },
    h("p", {}, "We're away right now. Leave a message and we'll reply by email."),
    h("label", {}, "Name", offName),
    h("label", {}, "Email", offEmail),
    h("label", {}, "Message", offText),
    h("button", { class: "submit", type: "submit" }, "Send message"),
  );

  const panel = h(
    "section",
    { class: "panel", id: "parley-panel", role: "dialog", "aria-labelledby": "parley-heading", hidden: "" },
    h("header", {}, avatar, h("div", { class: "heading" }, heading, h("p", { class: "status" }, dot, statusText)), close),
    log,
    typing,
    queue,
    linkBanner,
    offline,
    composer,
    announcer,
  );
  const root = h("div", { class: "root " + cfg.position }, panel, launcher);
  adoptStyles(shadow, CSS);
  shadow.append(root);

  if (cfg.color) {
    root.style.setProperty("--accent", cfg.color);
    root.style.setProperty("--on-accent", readableOn(cfg.color, root));
  }

  let expanded = false;
  let historyShown = false;
  const focusFirst = () => (offline.hidden ? input : offName).focus();
  launcher.onclick = () => {
    actions.toggle(!expanded);
    if (expanded) focusFirst();
  };
  close.onclick = () => {
    actions.toggle(false);
    launcher.focus();
  };
  panel.onkeydown = (e) => {
    if (e.key === "Escape") close.click();
  };

  const fit = () => {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight + 2 /* borders */, 128) + "px";
  };
  const submit = () => {
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    fit();
    actions.send(text);
  };
  input.onkeydown = (e) => {
    // Enter sends, Shift+Enter adds a line; never while an IME is composing a word.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      submit();
    }
  };
  input.oninput = () => {
    fit();
    if (input.value) actions.typing();
  };
  composer.onsubmit = (e) => {
    e.preventDefault();
    submit();
    input.focus();
  };
  offline.onsubmit = (e) => {
    e.preventDefault();
    const text = offText.value.trim();
    if (!text) return;
    offText.value = "";
    actions.leaveMessage(offName.value, offEmail.value, text);
    input.focus();
  };

  const rendered = new Map<string, { el: HTMLElement; meta: HTMLElement | null; line: Line }>();

  function meta(line: Line, el: HTMLElement): void {
    el.className = "meta " + (line.delivery || "");
    el.textContent = "";
    if (line.delivery === "pending") el.append(icon("clock"), "Sending…");
    else if (line.delivery === "failed") {
      const retry = h("button", { class: "retry", type: "button" }, "Retry");
      retry.onclick = () => actions.retry(line.id as string);
      el.append("Not sent · ", retry);
    } else {
      el.append(time(line.ts));
      if (line.delivery === "delivered") el.append(icon("check"), h("span", { class: "sr" }, "Delivered"));
    }
  }

  function lineEl(line: Line, showName: boolean): { el: HTMLElement; meta: HTMLElement | null } {
    // dir="auto": each text runs in its own direction (Hebrew, Arabic), whatever the page's.
    if (line.kind === "notice") return { el: h("div", { class: "notice", dir: "auto" }, line.text), meta: null };
    const m = h("div", {});
    meta(line, m);
    const who = line.from === "visitor" ? h("span", { class: "sr" }, "You:") : showName ? h("div", { class: "who", dir: "auto" }, line.name) : null;
    return { el: h("div", { class: "msg " + line.from }, who, h("div", { class: "bubble", dir: "auto" }, textWithLinks(line.text)), m), meta: m };
  }

  /** Speaks a new message of an agent or a notice; the visitor's own words are not read back. */
  function announce(line: Line): void {
    if (line.from === "visitor") return;
    announcer.append(h("p", {}, line.kind === "message" && line.name ? `${line.name}: ${line.text}` : line.text));
    // Only additions are spoken: old ones can go, so the region does not grow for ever.
    while (announcer.childElementCount > MAX_ANNOUNCED) announcer.firstElementChild?.remove();
  }

  /** `live`: lines new to the screen are announced (false until the first history is shown). */
  function renderLines(lines: Line[], live: boolean): void {
    const keys = new Set(lines.map((l) => l.key));
    rendered.forEach((r, key) => {
      if (!keys.has(key)) {
        r.el.remove();
        rendered.delete(key);
      }
    });
    const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
    let prev: Node = greeting;
    let ownAdded = false;
    lines.forEach((line, i) => {
      let r = rendered.get(line.key);
      if (!r) {
        const before = lines[i - 1];
        const showName = !before || before.kind !== "message" || before.from !== line.from || before.name !== line.name;
        r = { ...lineEl(line, showName), line };
        rendered.set(line.key, r);
        if (line.from === "visitor") ownAdded = true;
        if (live) announce(line);
      } else if (r.line !== line) {
        if (r.meta) meta(line, r.meta);
        r.line = line;
      }
      if (prev.nextSibling !== r.el) log.insertBefore(r.el, prev.nextSibling);
      prev = r.el;
    });
    // Follow the conversation unless the visitor scrolled up to read older messages.
    if (atBottom || ownAdded) log.scrollTop = log.scrollHeight;
  }

  return function render(s: SessionState): void {
    // A hidden log cannot scroll, so whatever arrived while collapsed is scrolled to on opening.
    const opening = s.expanded && !expanded;
    expanded = s.expanded;
    root.classList.toggle("open", s.expanded);
    panel.hidden = !s.expanded;
    launcher.setAttribute("aria-expanded", String(s.expanded));
    const unread = s.expanded ? 0 : s.unread;
    badge.hidden = unread === 0;
    setText(badge, unread > 9 ? "9+" : String(unread));
    launcher.setAttribute(
      "aria-label",
      s.expanded ? "Minimize chat" : unread ? `Open chat, ${unread} unread message${unread > 1 ? "s" : ""}` : "Open chat",
    );

    if (heading.textContent !== (s.agent || cfg.title) || !avatar.firstChild) {
      heading.textContent = s.agent || cfg.title;
      avatar.textContent = "";
      avatar.append(s.agent ? initials(s.agent) : icon("chat"));
    }
    const unavailable = s.link === "unavailable";
    const available = !unavailable && (s.agent !== null || s.agentsOnline === true);
    dot.classList.toggle("off", !available);
    setText(statusText, statusLine(s, cfg.title));

    setText(greetingText, cfg.greeting ?? s.siteWelcome ?? DEFAULT_GREETING);
    typing.hidden = s.agentTyping === null;
    setText(typingName, s.agentTyping ? s.agentTyping + " is typing…" : "");
    queue.hidden = s.queuePosition === null;
    setText(queue, s.queuePosition === null ? "" : `You're number ${s.queuePosition} in line. Someone will be with you shortly.`);
    // Before the first welcome the header already says "Connecting…".
    const lost = s.link === "reconnecting" && s.agentsOnline !== null;
    linkBanner.hidden = !lost && !unavailable;
    setText(linkBanner, unavailable ? "Chat is unavailable right now." : lost ? "Connection lost. Reconnecting…" : "");
    // Nothing typed now could be sent: the composer (or the offline form) waits, hidden, with its text.
    root.classList.toggle("unavailable", unavailable);

    const offlineMode = showsOfflineForm(s);
    if (offline.hidden === offlineMode) {
      // The form and the composer swap (an agent came online, or all left): the visitor's
      // words follow them to the other one, and so does the focus.
      if (offlineMode && s.identity) {
        offName.value = s.identity.name;
        offEmail.value = s.identity.email;
      }
      const [from, to] = offlineMode ? [input, offText] : [offText, input];
      if (from.value && !to.value) [to.value, from.value] = [from.value, ""];
      const hadFocus = shadow.activeElement !== null && (offlineMode ? composer : offline).contains(shadow.activeElement);
      offline.hidden = !offlineMode;
      composer.hidden = offlineMode;
      if (hadFocus) to.focus();
    }

    renderLines(s.lines, historyShown);
    // The first welcome brings the history: what is on screen after it was already there.
    if (s.link === "online") historyShown = true;
    if (opening) log.scrollTop = log.scrollHeight;
  };
}

/**
 * Writes text only when it changed: assigning textContent replaces the text node even when
 * the text is the same, and inside a live region (the queue and connection banners) a
 * screen reader would repeat it at every render — every keystroke, every message.
 */
function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

/** The line under the heading: who can answer, or why nobody can. */
function statusLine(s: SessionState, title: string): string {
  if (s.link === "unavailable") return "Chat unavailable";
  if (s.agentsOnline === null) return "Connecting…";
  if (s.agent) return title;
  return s.agentsOnline ? "We typically reply in a few minutes" : "We're away right now";
}

/**
 * A constructed stylesheet: a page whose Content-Security-Policy has no 'unsafe-inline'
 * for styles refuses a <style> element, even inside a shadow root, but not this. Browsers
 * without constructed stylesheets (Safari before 16.4) get the <style> element.
 */
function adoptStyles(shadow: ShadowRoot, css: string): void {
  if ("adoptedStyleSheets" in shadow && typeof CSSStyleSheet.prototype.replaceSync === "function") {
    const sheet = new CSSStyleSheet();
    sheet.replaceSync(css);
    shadow.adoptedStyleSheets = [sheet];
  } else {
    (shadow as ShadowRoot).append(h("style", {}, css));
  }
}
