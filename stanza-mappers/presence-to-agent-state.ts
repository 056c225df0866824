import type { Element } from "@xmpp/xml";

// An agent's presence as Parley routes on it (CONTRACT §5): only `available` with no
// <show/> or `chat` takes new chats; away/dnd/xa keep their chats but get no new ones.
// A resource with a negative priority counts as gone: the server never delivers a message
// to the bare JID there (RFC 6121 §8.5.2.1), and Parley writes to the bare JID.

export type AgentShow = "available" | "away" | "dnd" | "xa";
export type AgentPresence = AgentShow | "offline";

export type PresenceEvent =
  | { kind: "resource"; show: AgentShow }
  | { kind: "resource-gone" }
  | { kind: "probe" }
  | { kind: "subscribe" }
  | { kind: "subscribed" }
  | { kind: "unsubscribe" }
  /** They stopped sharing their presence (removed the contact, or revoked it). */
  | { kind: "unsubscribed" }
  | { kind: "ignore"; reason: string };

export function stanzaToPresenceEvent(stanza: Element): PresenceEvent {
  switch (stanza.attrs.type) {
    case undefined:
      if (Number(stanza.getChildText("priority")) < 0) return { kind: "resource-gone" };
      return { kind: "resource", show: showOf(stanza.getChildText("show")) };
    case "unavailable":
      return { kind: "resource-gone" };
    case "probe":
      return { kind: "probe" };
    case "subscribe":
      return { kind: "subscribe" };
    case "subscribed":
      return { kind: "subscribed" };
    case "unsubscribe":
      return { kind: "unsubscribe" };
    case "unsubscribed":
      return { kind: "unsubscribed" };
    case "error":
      return { kind: "ignore", reason: "presence error" };
    default:
      return { kind: "ignore", reason: `presence type ${stanza.attrs.type}` };
  }
}

function showOf(show: string | null): AgentShow {
  switch (show?.trim()) {
    case "away":
      return "away";
    case "dnd":
      return "dnd";
    case "xa":
      return "xa";
    default:
      return "available"; // none, "chat" or anything unknown (RFC 6121 §4.7.2.1)
  }
}

const RANK: Record<AgentPresence, number> = { available: 4, away: 2, xa: 1, dnd: 3, offline: 0 };

/** One agent, several resources: the most available one counts. */
export function aggregatePresence(resources: Iterable<AgentShow>): AgentPresence {
  let best: AgentPresence = "offline";
  for (const show of resources) if (RANK[show] > RANK[best]) best = show;
  return best;
}
