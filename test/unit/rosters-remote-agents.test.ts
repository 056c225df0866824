import type { Element } from "@xmpp/xml";
import { expect, it } from "vitest";
import { createLogger } from "../../bridge/logger.js";
import { Rosters } from "../../bridge/rosters.js";

// CONTRACT §5: agents on other servers (no admin API or privileges there) get a
// subscription request from the visitor's JID carrying a XEP-0172 nickname; the end of the
// chat withdraws it both ways.

it("asks an agent on another server to add the visitor, with the visitor's name as nickname, and withdraws it at the end", async () => {
  const sent: Element[] = [];
  let adminApiCalls = 0;
  const rosters = new Rosters({
    domain: "chat.localhost",
    send: (stanza) => sent.push(stanza),
    request: async () => null,
    newId: () => "id",
    logger: createLogger("silent"),
    ejabberdApi: { url: "http://127.0.0.1:1/api" },
    fetch: (async () => {
      adminApiCalls++;
      return new Response("0");
    }) as typeof fetch,
  });
  const item = { jid: "shop.v1@chat.localhost", name: "Ada <Lovelace>", group: "Shop" };

  await rosters.upsert("bob@elsewhere.example", item);
  expect(sent.map((p) => p.toString())).toEqual([
    `<presence from="shop.v1@chat.localhost" to="bob@elsewhere.example" type="subscribe"><nick xmlns="http://jabber.org/protocol/nick">Ada &lt;Lovelace&gt;</nick></presence>`,
  ]);

  sent.length = 0;
  await rosters.remove("bob@elsewhere.example", item);
  expect(sent.map((p) => [p.attrs.type, p.attrs.from, p.attrs.to, p.getChild("nick")])).toEqual([
    ["unsubscribed", "shop.v1@chat.localhost", "bob@elsewhere.example", undefined],
    ["unsubscribe", "shop.v1@chat.localhost", "bob@elsewhere.example", undefined],
  ]);
  expect(adminApiCalls).toBe(0); // ejabberd's admin API only manages its own users
});
