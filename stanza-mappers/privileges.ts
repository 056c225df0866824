import type { Element } from "@xmpp/xml";
import { NS } from "./namespaces.js";

// XEP-0356 §4: right after the handshake the server tells the component what it may do,
// in a <message from="{server host}"><privilege><perm access="roster" type="both"/>….

export interface PrivilegeGrant {
  host: string;
  roster: "none" | "get" | "set" | "both";
  presence: "none" | "managed_entity" | "roster";
  message: "none" | "outgoing";
}

export function stanzaToPrivilegeGrant(stanza: Element): PrivilegeGrant | null {
  const privilege = stanza.getChild("privilege", NS.privilege) ?? stanza.getChild("privilege", NS.privilege2);
  const host = stanza.attrs.from;
  if (!privilege || !host || host.includes("@") || host.includes("/")) return null;
  const grant: PrivilegeGrant = { host, roster: "none", presence: "none", message: "none" };
  for (const perm of privilege.getChildren("perm")) {
    const type = perm.attrs.type;
    if (perm.attrs.access === "roster" && (type === "get" || type === "set" || type === "both")) grant.roster = type;
    if (perm.attrs.access === "presence" && (type === "managed_entity" || type === "roster")) grant.presence = type;
    if (perm.attrs.access === "message" && type === "outgoing") grant.message = "outgoing";
  }
  return grant;
}
