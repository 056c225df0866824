import xml, { type Element } from "@xmpp/xml";
import { parseAddress } from "../stanza-mappers/addressing.js";
import { NS } from "../stanza-mappers/namespaces.js";
import type { Store } from "./store/types.js";
import type { XmppLink } from "./xmpp-link.js";

// The component's own IQ answers: disco#info (XEP-0030), version (XEP-0092) and ping
// (XEP-0199), on the component domain, desk JIDs and visitor JIDs alike. Anything
// else gets service-unavailable from xmpp.js's IQ callee. Ad-hoc commands (and so
// disco#items) live in adhoc-commands.ts.

const FEATURES = [NS.discoInfo, NS.discoItems, NS.version, NS.ping, NS.chatStates, NS.receipts, NS.commands];

export function registerServiceIqs(link: XmppLink, deps: { domain: string; version: string; store: Store }): void {
  link.onIqGet(NS.discoInfo, "query", async ({ stanza }) => {
    const address = parseAddress(stanza.attrs.to ?? "", deps.domain);
    const identity = await identityOf(address, deps.store);
    if (!identity) return xml("error", { type: "cancel" }, xml("item-not-found", { xmlns: NS.stanzas }));
    return xml("query", { xmlns: NS.discoInfo }, identity, ...FEATURES.map((v) => xml("feature", { var: v })));
  });
  link.onIqGet(NS.version, "query", () => xml("query", { xmlns: NS.version }, xml("name", {}, "Parley"), xml("version", {}, deps.version)));
  // `true` makes xmpp.js answer an empty result, as XEP-0199 §4 asks.
  link.onIqGet(NS.ping, "ping", () => true);
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
