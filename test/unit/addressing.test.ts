import { describe, expect, it } from "vitest";
import { deskJid, parseAddress, parseLocalpart, visitorIdFromBytes, visitorJid, VISITOR_ID_PATTERN } from "../../stanza-mappers/addressing.js";

describe("addressing", () => {
  it("follows the documented worked examples", () => {
    expect(parseLocalpart("acme")).toEqual({ kind: "desk", siteId: "acme" });
    expect(parseLocalpart("acme.q7m2x4tb3wr5czn6v2aqd7hsek")).toEqual({ kind: "visitor", siteId: "acme", visitorId: "q7m2x4tb3wr5czn6v2aqd7hsek" });
    expect(parseLocalpart("Acme")).toEqual({ kind: "unknown" });
    expect(parseLocalpart("")).toEqual({ kind: "component" });
  });

  it("never confuses a visitor JID with a desk JID", () => {
    const id = visitorIdFromBytes(new Uint8Array(17).fill(7));
    expect(visitorJid("acme", id, "chat.localhost")).not.toBe(deskJid("acme", "chat.localhost"));
    expect(parseAddress(visitorJid("acme", id, "chat.localhost") + "/web", "chat.localhost")).toEqual({ kind: "visitor", siteId: "acme", visitorId: id });
  });

  it("refuses JIDs of other domains", () => {
    expect(parseAddress("acme@chat.other", "chat.localhost")).toEqual({ kind: "unknown" });
  });

  it("encodes 17 random bytes as 26 base32 characters", () => {
    const ids = new Set<string>();
    for (let i = 0; i < 200; i++) {
      const bytes = new Uint8Array(17).map((_, j) => (i * 31 + j * 17) & 255);
      const id = visitorIdFromBytes(bytes);
      expect(id).toMatch(VISITOR_ID_PATTERN);
      ids.add(id);
    }
    expect(ids.size).toBe(200);
  });
});
