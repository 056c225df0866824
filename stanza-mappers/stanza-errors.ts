import xml, { type Element } from "@xmpp/xml";
import { NS } from "./namespaces.js";

// Stanza errors (RFC 6120 §8.3): the reply swaps from/to, keeps the id and carries the condition.

export type ErrorCondition =
  | "item-not-found"
  | "forbidden"
  | "service-unavailable"
  | "bad-request"
  | "not-acceptable"
  | "feature-not-implemented"
  | "internal-server-error"
  | "policy-violation"
  | "resource-constraint";

const ERROR_TYPE: Record<ErrorCondition, "cancel" | "auth" | "modify" | "wait"> = {
  "item-not-found": "cancel",
  forbidden: "auth",
  "service-unavailable": "cancel",
  "bad-request": "modify",
  "not-acceptable": "modify",
  "feature-not-implemented": "cancel",
  "internal-server-error": "wait",
  "policy-violation": "modify",
  "resource-constraint": "wait",
};

export function stanzaErrorReply(stanza: Element, condition: ErrorCondition, text?: string): Element {
  const { from, to, id } = stanza.attrs;
  return xml(
    stanza.name,
    { type: "error", from: to, to: from, id },
    xml(
      "error",
      { type: ERROR_TYPE[condition] },
      xml(condition, { xmlns: NS.stanzas }),
      text ? xml("text", { xmlns: NS.stanzas, "xml:lang": "en" }, text) : null,
    ),
  );
}
