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

/** The defined conditions of RFC 6120 §8.3.3. */
const DEFINED_CONDITIONS = new Set([
  "bad-request",
  "conflict",
  "feature-not-implemented",
  "forbidden",
  "gone",
  "internal-server-error",
  "item-not-found",
  "jid-malformed",
  "not-acceptable",
  "not-allowed",
  "not-authorized",
  "policy-violation",
  "recipient-unavailable",
  "redirect",
  "registration-required",
  "remote-server-not-found",
  "remote-server-timeout",
  "resource-constraint",
  "service-unavailable",
  "subscription-required",
  "undefined-condition",
  "unexpected-request",
]);

/**
 * The condition of an error stanza (RFC 6120 §8.3.2), read as the element of the stanzas
 * namespace other than `<text/>`. Anything else (none, unknown names, other namespaces)
 * is `undefined-condition`, so that the result can label a metric: a sender chooses it.
 */
export function stanzaErrorCondition(stanza: Element): string {
  const condition = stanza
    .getChild("error")
    ?.getChildElements()
    .find((child) => child.attrs.xmlns === NS.stanzas && child.name !== "text")?.name;
  return condition && DEFINED_CONDITIONS.has(condition) ? condition : "undefined-condition";
}
