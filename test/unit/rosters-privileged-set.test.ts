import type { Element } from "@xmpp/xml";
import { describe, expect, it } from "vitest";
import { createLogger } from "../../bridge/logger.js";
import { Rosters } from "../../bridge/rosters.js";
import { IqError } from "../../bridge/xmpp-link.js";

// XEP-0356 privileged roster set: a refusal from the server switches the host to the admin
// API for good (ejabberd 23.01 refuses every set), but a set that got no answer (a busy
// server, the link down for a moment) says nothing about the server: it falls back once.

function rostersWith(answers: (() => Promise<Element | null>)[]) {
  const requests: Element[] = [];
  const adminApiCalls: unknown[] = [];
  const subscriptions: Element[] = [];
  const rosters = new Rosters({
    domain: "chat.localhost",
    send: (stanza) => void subscriptions.push(stanza),
    request: async (iq) => {
      requests.push(iq);
      const answer = answers.shift();
      return answer ? answer() : null;
    },
    newId: () => `3fa2c01b-${requests.length}`,
    logger: createLogger("silent"),
    ejabberdApi: { url: "http://127.0.0.1:1/api" },
    fetch: (async (_url: string, init: RequestInit) => {
      adminApiCalls.push(JSON.parse(String(init.body)));
      return new Response("0", { status: 200 });
    }) as typeof fetch,
  });
  rosters.grant({ host: "localhost", roster: "both", presence: "roster", message: "outgoing" });
  const grantAgain = () => {
    rosters.clearGrants();
    rosters.grant({ host: "localhost", roster: "both", presence: "roster", message: "outgoing" });
  };
  const upsert = (i: number) => rosters.upsert(`agent${i}@localhost`, { jid: `shop.v${i}@chat.localhost`, name: `Visitor ${i}`, group: "Shop" });
  return { upsert, grantAgain, requests, adminApiCalls, subscriptions };
}

const timeout = () => Promise.reject(new IqError("remote-server-timeout", "no answer to IQ within 5000 ms"));
const offline = () => Promise.reject(new Error("xmpp link is offline"));
const refused = (condition: string) => () => Promise.reject(new IqError(condition, `IQ failed: ${condition}`));
const accepted = () => Promise.resolve(null);

describe("XEP-0356 privileged roster set", () => {
  it.each([
    ["timed out", timeout],
    ["found the link offline", offline],
  ])("is used again after a set that %s, which fell back to the admin API once", async (_what, failure) => {
    const { upsert, requests, adminApiCalls, subscriptions } = rostersWith([failure, accepted, accepted]);
    await upsert(1);
    expect(requests).toHaveLength(1);
    expect(adminApiCalls).toHaveLength(1);
    await upsert(2);
    await upsert(3);
    expect(requests).toHaveLength(3);
    expect(adminApiCalls).toHaveLength(1);
    expect(subscriptions).toEqual([]);
  });

  it("lets the changes waiting on a probe that timed out fall back, then probes again", async () => {
    const { upsert, requests, adminApiCalls } = rostersWith([timeout, accepted]);
    await Promise.all([upsert(1), upsert(2), upsert(3)]);
    expect(requests).toHaveLength(1); // one probe in flight per host
    expect(adminApiCalls).toHaveLength(3);
    await upsert(4);
    expect(requests).toHaveLength(2);
    expect(adminApiCalls).toHaveLength(3);
  });

  it.each(["forbidden", "not-allowed", "feature-not-implemented", "service-unavailable", "bad-request", "internal-server-error"])(
    "is not tried again for the host after the server refused it with %s",
    async (condition) => {
      const { upsert, requests, adminApiCalls } = rostersWith([refused(condition), accepted]);
      await upsert(1);
      await upsert(2);
      expect(requests).toHaveLength(1);
      expect(adminApiCalls).toHaveLength(2);
    },
  );

  it("is tried again after a reconnection renewed the grants (the server may have been upgraded)", async () => {
    const { upsert, grantAgain, requests, adminApiCalls } = rostersWith([refused("internal-server-error"), accepted]);
    await upsert(1);
    grantAgain();
    await upsert(2);
    expect(requests).toHaveLength(2);
    expect(adminApiCalls).toHaveLength(1);
  });
});

describe("a refused privileged roster set without the admin API", () => {
  it("warns that agents get subscription requests, naming PARLEY_EJABBERD_API_URL", async () => {
    const lines: { level: number; msg: string }[] = [];
    const subscriptions: Element[] = [];
    const rosters = new Rosters({
      domain: "chat.localhost",
      send: (stanza) => void subscriptions.push(stanza),
      request: refused("internal-server-error"),
      newId: () => "3fa2c01b-1",
      logger: createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) }),
    });
    rosters.grant({ host: "localhost", roster: "both", presence: "roster", message: "outgoing" });
    await rosters.upsert("agent1@localhost", { jid: "shop@chat.localhost", name: "Shop", group: "Shop" });

    expect(subscriptions.map((s) => s.attrs.type)).toEqual(["subscribe"]);
    const warnings = lines.filter((line) => line.level === 40);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.msg).toContain("PARLEY_EJABBERD_API_URL");
    expect(warnings[0]!.msg).toContain("subscription requests");
  });
});
