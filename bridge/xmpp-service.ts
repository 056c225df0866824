import xml, { type Element } from "@xmpp/xml";
import { parseAddress } from "../stanza-mappers/addressing.js";
import { NS } from "../stanza-mappers/namespaces.js";
import type { Store } from "./store/types.js";
import type { XmppLink } from "./xmpp-link.js";

// The component's own IQ answers: disco#info (XEP-0030), version (XEP-0092) and ping
// (XEP-0199), on the component domain, desk JIDs and visitor JIDs alike. A JID of the
// domain that is none of these (no such site or visitor) does not exist: every one of the
// three gets item-not-found there, as a message to it does (CONTRACT §5) — a pong from
// it would tell an agent's client that a contact is reachable that never will be.
// Anything else gets service-unavailable from xmpp.js's IQ callee. Ad-hoc commands (and
// so disco#items) live in adhoc-commands.ts.

const FEATURES = [NS.discoInfo, NS.discoItems, NS.version, NS.ping, NS.chatStates, NS.receipts, NS.commands];

export function registerServiceIqs(link: XmppLink, deps: { domain: string; version: string; store: Store }): void {
  const identityOfTarget = (stanza: Element) => identityOf(parseAddress(stanza.attrs.to ?? "", deps.domain), deps.store);
  link.onIqGet(NS.discoInfo, "query", async ({ stanza }) => {
    const identity = await identityOfTarget(stanza);
    if (!identity) return itemNotFound();
    return xml("query", { xmlns: NS.discoInfo }, identity, ...FEATURES.map((v) => xml("feature", { var: v })));
  });
  link.onIqGet(NS.version, "query", async ({ stanza }) => {
    if (!(await identityOfTarget(stanza))) return itemNotFound();
    return xml("query", { xmlns: NS.version }, xml("name", {}, "Parley"), xml("version", {}, deps.version));
  });
  // `true` makes xmpp.js answer an empty result, as XEP-0199 §4 asks.
  link.onIqGet(NS.ping, "ping", async ({ stanza }) => ((await identityOfTarget(stanza)) ? true : itemNotFound()));
}

function itemNotFound(): Element {
  return xml("error", { type: "cancel" }, xml("item-not-found", { xmlns: NS.stanzas }));
}

async function identityOf(address: ReturnType<typeof parseAddress>, store: Store): Promise<Element | null> {
  switch (address.kind) {
    case "component":
      return xml("identity", { category: "gateway", type: "parley", name: "Parley live chat" });
    case "desk": {
      const site = await store.getSite(address.siteId);
      return site ? xml("identity", { category: "client", type: "bot", name: `${site.name} desk` }) : null;
    }
    case "visitor": {
      const visitor = await store.getVisitor(address.visitorId);
      return visitor && visitor.siteId === address.siteId ? xml("identity", { category: "client", type: "web", name: "Website visitor" }) : null;
    }
    case "unknown":
      return null;
  }
}
