import { randomUUID } from "node:crypto";
import xml from "@xmpp/xml";
import { bareJid, parseAddress } from "../stanza-mappers/addressing.js";
import { NS } from "../stanza-mappers/namespaces.js";
import type { CommandService } from "./commands.js";
import type { KeyedQueue } from "./keyed-queue.js";
import type { Store } from "./store/types.js";
import type { XmppLink } from "./xmpp-link.js";

/**
 * XEP-0050 ad-hoc commands on each visitor's JID, for clients that show them (Gajim,
 * Psi, Conversations): the same actions as the `!` commands, one step each.
 * disco#items (XEP-0030) with the commands node lists them (XEP-0050 §2.2).
 */
const COMMANDS = [
  { node: "end", name: "End the chat" },
  { node: "info", name: "Show visitor info" },
  { node: "block", name: "Block this visitor" },
] as const;

const stanzaError = (condition: string, type = "cancel") => xml("error", { type }, xml(condition, { xmlns: NS.stanzas }));

export function registerAdhocCommands(link: XmppLink, deps: { domain: string; store: Store; commands: CommandService; lanes: KeyedQueue }): void {
  link.onIqGet(NS.discoItems, "query", ({ stanza, element }) => {
    const node = element.attrs.node;
    const address = parseAddress(stanza.attrs.to ?? "", deps.domain);
    if (!node) return xml("query", { xmlns: NS.discoItems });
    if (node !== NS.commands || address.kind !== "visitor") return stanzaError("item-not-found");
    return xml(
      "query",
      { xmlns: NS.discoItems, node },
      ...COMMANDS.map((c) => xml("item", { jid: stanza.attrs.to, node: c.node, name: c.name })),
    );
  });

  link.onIqSet(NS.commands, "command", async ({ stanza, element }) => {
    const address = parseAddress(stanza.attrs.to ?? "", deps.domain);
    const node = element.attrs.node ?? "";
    if (address.kind !== "visitor" || !COMMANDS.some((c) => c.node === node)) return stanzaError("item-not-found");
    if (element.attrs.action === "cancel") return xml("command", { xmlns: NS.commands, node, sessionid: element.attrs.sessionid, status: "canceled" });
    const agentJid = bareJid(stanza.attrs.from ?? "");
    const answer = await deps.lanes.run(address.visitorId, async () => {
      const visitor = await deps.store.getVisitor(address.visitorId);
      const chat = visitor?.chatId ? await deps.store.getChat(visitor.chatId) : null;
      const site = visitor ? await deps.store.getSite(visitor.siteId) : null;
      if (!visitor || !site || visitor.siteId !== address.siteId) return null;
      if (!chat || chat.agentJid !== agentJid || chat.state !== "active") return "forbidden" as const;
      return deps.commands.run({ site, visitor, chat, agentJid, name: node, args: "" });
    });
    if (answer === null) return stanzaError("item-not-found");
    if (answer === "forbidden") return stanzaError("forbidden", "auth");
    return xml(
      "command",
      { xmlns: NS.commands, node, sessionid: element.attrs.sessionid ?? randomUUID(), status: "completed" },
      xml("note", { type: "info" }, answer.replace(/^\[parley\] /, "")),
    );
  });
}
