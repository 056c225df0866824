import xml, { type Element } from "@xmpp/xml";
import { NS } from "./namespaces.js";

/** An XEP-0199 ping (`<iq type="get"><ping/></iq>`). Pure. */
export function pingToStanza(p: { from: string; to: string; id: string }): Element {
  return xml("iq", { type: "get", from: p.from, to: p.to, id: p.id }, xml("ping", { xmlns: NS.ping }));
}
