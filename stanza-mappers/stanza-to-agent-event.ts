import type { Element } from "@xmpp/xml";
import { atMostCharacters } from "./characters.js";
import { NS } from "./namespaces.js";
import type { ChatState } from "./visitor-protocol.js";

/**
 * What an agent's `<message/>` to a visitor (or desk) JID means for Parley. Pure.
 *
 * Real clients wrap a body in many extensions; each is either mapped or dropped here
 * with a reason that the handler logs at debug:
 * - XEP-0085 chat states → `chat-state` (composing/paused; active/inactive/gone → paused)
 * - XEP-0184 request → `receiptRequested`; an agent's own `<received/>` → dropped
 * - XEP-0333 markers, XEP-0359 ids, XEP-0334 hints → ignored alongside the body
 * - XEP-0071 XHTML-IM → the plain `<body/>` is used; markup never reaches the visitor
 * - XEP-0308 correction → sent on as a new message (the widget has no edit) whose text
 *   starts with CORRECTION_PREFIX, so that the visitor reads it as a correction, not a repeat
 * - XEP-0280 carbons → dropped: a component never needs its own copies
 * - OMEMO / OpenPGP / OTR → `encrypted`: the body is not the message, the agent is told
 * - a body over MAX_AGENT_CHARS characters, or whose text would take more than
 *   MAX_AGENT_TEXT_BYTES of the visitor's frame → `too-long`: refused whole (a cut message
 *   would reach the visitor as if complete), the agent gets an error
 */
export type AgentMessageEvent =
  | { kind: "text"; text: string; receiptRequested: boolean; correction: boolean }
  | { kind: "command"; name: string; args: string; receiptRequested: boolean }
  | { kind: "chat-state"; state: ChatState }
  | { kind: "encrypted" }
  | { kind: "too-long"; maxChars: number; maxBytes: number }
  | { kind: "drop"; reason: string };

/** What a corrected message (XEP-0308) starts with for the visitor. */
export const CORRECTION_PREFIX = "Correction: ";

/** The longest agent message a visitor gets, in characters. */
export const MAX_AGENT_CHARS = 10_000;
/**
 * And in bytes of its text in the visitor's `message` frame (JSON, UTF-8): the frame stays
 * within the protocol's 16 KiB (CONTRACT §4) with room for its other fields (ids, the
 * agent's name of up to 100 characters). 10,000 Latin letters fit; about 5,000 Chinese
 * characters or 3,750 emoji do.
 */
export const MAX_AGENT_TEXT_BYTES = 15_000;

export function stanzaToAgentEvent(stanza: Element): AgentMessageEvent {
  const type = stanza.attrs.type ?? "normal";
  if (type === "error") return { kind: "drop", reason: "error stanza" };
  if (type === "groupchat" || type === "headline") return { kind: "drop", reason: `message type ${type}` };
  if (stanza.getChild("sent", NS.carbons) || stanza.getChild("received", NS.carbons)) {
    return { kind: "drop", reason: "carbon copy" };
  }
  if (isEncrypted(stanza)) return { kind: "encrypted" };

  const body = stanza.getChildText("body");
  const receiptRequested = Boolean(stanza.getChild("request", NS.receipts)) && Boolean(stanza.attrs.id);
  if (body !== null && body.trim() !== "") {
    const tooLong = { kind: "too-long", maxChars: MAX_AGENT_CHARS, maxBytes: MAX_AGENT_TEXT_BYTES } as const;
    if (!atMostCharacters(body, MAX_AGENT_CHARS)) return tooLong;
    const command = parseCommand(body);
    if (command) return { kind: "command", ...command, receiptRequested };
    const correction = Boolean(stanza.getChild("replace", NS.correction));
    const text = correction ? `${CORRECTION_PREFIX}${body}` : body;
    if (Buffer.byteLength(JSON.stringify(text)) > MAX_AGENT_TEXT_BYTES) return tooLong;
    return { kind: "text", text, receiptRequested, correction };
  }

  const state = chatStateOf(stanza);
  if (state) return { kind: "chat-state", state };
  if (stanza.getChild("received", NS.receipts)) return { kind: "drop", reason: "delivery receipt" };
  if (stanza.getChild("displayed", NS.chatMarkers) || stanza.getChild("received", NS.chatMarkers)) {
    return { kind: "drop", reason: "chat marker" };
  }
  return { kind: "drop", reason: body === null ? "no body" : "empty body" };
}

/**
 * A body whose first non-whitespace character is `!` is a command, whatever follows
 * (CONTRACT §5: never shown to the visitor); a name that matches no command gets the help.
 * - `!transfer bob@x` → `{ name: "transfer", args: "bob@x" }`
 * - `!end.` → `{ name: "end.", args: "" }`, `!!` → `{ name: "!", args: "" }` (unknown)
 * - `! end` → `{ name: "", args: "end" }` (no name at all)
 * - `hi !end` → null: text for the visitor
 */
export function parseCommand(text: string): { name: string; args: string } | null {
  const match = /^!(\S*)([\s\S]*)$/.exec(text.trim());
  if (!match) return null;
  return { name: match[1]!.toLowerCase(), args: match[2]!.trim() };
}

function chatStateOf(stanza: Element): ChatState | null {
  if (stanza.getChild("composing", NS.chatStates)) return "composing";
  for (const name of ["paused", "active", "inactive", "gone"]) {
    if (stanza.getChild(name, NS.chatStates)) return "paused";
  }
  return null;
}

function isEncrypted(stanza: Element): boolean {
  return Boolean(
    stanza.getChild("encrypted", NS.omemo) ||
      stanza.getChild("encrypted", NS.omemo2) ||
      stanza.getChild("openpgp", NS.openpgp) ||
      stanza.getChild("x", NS.legacyPgp) ||
      // OTR (Pidgin's and Psi's plugins) lives in the body: a query or encrypted data.
      stanza.getChildText("body")?.startsWith("?OTR"),
  );
}
