import xml, { type Element } from "@xmpp/xml";
import { oneLine, PARLEY_LINE_PREFIX, visitorTextForAgent } from "./agent-facing-text.js";
import { NS } from "./namespaces.js";
import type { ChatState } from "./visitor-protocol.js";

// Visitor side → XMPP stanzas. Pure builders: everything they need comes in as arguments.

export interface VisitorMessage {
  from: string; // the visitor's JID
  to: string; // the agent's bare JID, so carbons reach every device of the agent (XEP-0280)
  messageId: string;
  text: string;
}

/**
 * A visitor's chat message (RFC 6121 §5.2.2) with XEP-0085 `active` and XEP-0359 origin-id.
 * Its text as the agent may read it: no line passes for Parley's (see agent-facing-text.ts).
 */
export function visitorMessageToStanza(m: VisitorMessage): Element {
  return xml(
    "message",
    { type: "chat", from: m.from, to: m.to, id: m.messageId },
    xml("body", {}, visitorTextForAgent(m.text)),
    xml("active", { xmlns: NS.chatStates }),
    xml("origin-id", { xmlns: NS.stanzaId, id: m.messageId }),
  );
}

/**
 * Replayed context for a new agent (XEP-0203 delay keeps the original time visible). It is
 * Parley speaking, so it starts with `[parley]`, then who wrote it, role first (a visitor
 * named "Ann (agent)" still reads as a visitor), then the text on one line: a line break
 * in it cannot start a line of its own that passes for another author's.
 * `[parley] visitor Zoë: hi ↵ anyone?`, `[parley] agent Ann: Hello`, `[parley] note by Ann: VIP`.
 */
export function contextMessageToStanza(m: VisitorMessage & { ts: number; author: { role: "visitor" | "agent" | "note"; name: string } }): Element {
  const who = m.author.role === "note" ? `note by ${m.author.name}` : `${m.author.role} ${m.author.name}`;
  return xml(
    "message",
    { type: "chat", from: m.from, to: m.to, id: `${m.messageId}-ctx` },
    xml("body", {}, `${PARLEY_LINE_PREFIX} ${oneLine(who)}: ${oneLine(m.text, " ↵ ")}`),
    xml("delay", { xmlns: NS.delay, from: m.from.split("@")[1], stamp: new Date(m.ts).toISOString() }),
  );
}

/** Typing notification (XEP-0085 §5.1); no-store so servers neither archive nor store it offline. */
export function visitorTypingToStanza(p: { from: string; to: string; state: ChatState; id: string }): Element {
  return xml(
    "message",
    { type: "chat", from: p.from, to: p.to, id: p.id },
    xml(p.state, { xmlns: NS.chatStates }),
    xml("no-store", { xmlns: NS.hints }),
  );
}

/** A plain chat message from one of our JIDs (command answers, system notices). */
export function noticeToStanza(p: { from: string; to: string; id: string; text: string }): Element {
  return xml("message", { type: "chat", from: p.from, to: p.to, id: p.id }, xml("body", {}, p.text));
}

/** Answers a XEP-0184 receipt request. */
export function receiptToStanza(p: { from: string; to: string; id: string; receiptFor: string }): Element {
  return xml("message", { from: p.from, to: p.to, id: p.id }, xml("received", { xmlns: NS.receipts, id: p.receiptFor }));
}

export interface PresenceInfo {
  from: string;
  to: string;
  /** Omitted for available presence. */
  type?: "unavailable" | "subscribe" | "subscribed" | "unsubscribe" | "unsubscribed" | "probe";
  show?: "away" | "chat" | "dnd" | "xa";
  status?: string;
  /** XEP-0172 nickname, sent with subscription requests to agents on other servers. */
  nick?: string;
}

export function presenceToStanza(p: PresenceInfo): Element {
  return xml(
    "presence",
    { from: p.from, to: p.to, type: p.type },
    p.show ? xml("show", {}, p.show) : null,
    p.status ? xml("status", {}, p.status) : null,
    p.nick ? xml("nick", { xmlns: NS.nick }, p.nick) : null,
  );
}

/** The visitor's presence status: the page they are looking at, on one line (both parts are the visitor's to choose). */
export function pageStatus(page: { url: string; title: string } | undefined): string | undefined {
  if (!page) return undefined;
  return oneLine(page.title && page.url ? `${page.title} — ${page.url}` : page.title || page.url);
}

export interface RosterItem {
  jid: string;
  name: string;
  group: string;
  subscription: "both" | "remove";
}

/** XEP-0356 §5 privileged roster push: the component sets an item in the agent's roster. */
export function privilegedRosterSetToStanza(p: { from: string; to: string; id: string; item: RosterItem }): Element {
  const { item } = p;
  return xml(
    "iq",
    { type: "set", from: p.from, to: p.to, id: p.id },
    xml(
      "query",
      { xmlns: NS.roster },
      xml("item", { jid: item.jid, name: item.name, subscription: item.subscription }, item.subscription === "remove" ? null : xml("group", {}, item.group)),
    ),
  );
}
