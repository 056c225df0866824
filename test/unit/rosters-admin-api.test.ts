import type { Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../bridge/logger.js";
import { Rosters } from "../../bridge/rosters.js";

describe("roster changes through ejabberd's admin API", () => {
  it("keeps a burst of new chats to a few requests at a time, and every change still lands", async () => {
    let inFlight = 0;
    let mostInFlight = 0;
    const bodies: unknown[] = [];
    const fakeFetch = (async (_url: string, init: RequestInit) => {
      inFlight++;
      mostInFlight = Math.max(mostInFlight, inFlight);
      bodies.push(JSON.parse(String(init.body)));
      await new Promise((resolve) => setImmediate(resolve));
      inFlight--;
      return new Response("0", { status: 200 });
    }) as typeof fetch;
    const sent: Element[] = [];
    const rosters = new Rosters({
      domain: "chat.localhost",
      send: (stanza) => sent.push(stanza),
      request: async () => null,
      newId: () => "id",
      logger: createLogger("silent"),
      ejabberdApi: { url: "http://127.0.0.1:1/api" },
      fetch: fakeFetch,
    });

    await Promise.all(
      Array.from({ length: 200 }, (_, i) => rosters.upsert(`agent${i % 5}@localhost`, { jid: `shop.v${i}@chat.localhost`, name: `Visitor ${i}`, group: "Shop" })),
    );
    expect(bodies).toHaveLength(200);
    expect(mostInFlight).toBeGreaterThan(1);
    expect(mostInFlight).toBeLessThanOrEqual(32);
    expect(sent).toEqual([]); // no change fell back to a subscription request
  });
});
