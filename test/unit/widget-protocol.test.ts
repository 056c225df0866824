import { describe, expect, expectTypeOf, it } from "vitest";
import type * as Bridge from "../../stanza-mappers/visitor-protocol.js";
import { parseClientFrame } from "../../stanza-mappers/parse-client-frame.js";
import { SITE_GONE_CLOSE_CODE as BRIDGE_SITE_GONE } from "../../stanza-mappers/visitor-protocol.js";
import { SITE_GONE_CLOSE_CODE, cleanText, identifyFrame, pageFrame, parseServerFrame, type ClientFrame, type ServerFrame } from "../../widget/src/protocol.js";

describe("widget protocol", () => {
  it("agrees with the bridge's frame types", () => {
    // Every frame the bridge can send, the widget can read; every frame the widget
    // sends, the bridge accepts.
    expectTypeOf<Bridge.ServerFrame>().toExtend<ServerFrame>();
    expectTypeOf<ClientFrame>().toExtend<Bridge.ClientFrame>();
  });

  it("closes for a deleted site with the code the bridge uses", () => {
    expect(SITE_GONE_CLOSE_CODE).toBe(BRIDGE_SITE_GONE);
  });

  it("parses well-formed server frames", () => {
    const ack = { type: "ack", id: "c1", messageId: "m1", ts: 5 };
    expect(parseServerFrame(JSON.stringify(ack))).toEqual(ack);
    const welcome = { type: "welcome", visitorId: "v", token: "t", resumed: false, agentsOnline: true, agent: null, history: [] };
    expect(parseServerFrame(JSON.stringify(welcome))).toEqual(welcome);
  });

  it.each([
    ["not JSON", "{"],
    ["an unknown type", '{"type":"future"}'],
    ["a message without text", '{"type":"message","messageId":"m","from":"agent","name":"A","ts":1}'],
    ["a message from an unknown author", '{"type":"message","messageId":"m","from":"robot","name":"A","text":"x","ts":1}'],
    ["a welcome with a malformed history entry", '{"type":"welcome","visitorId":"v","token":"t","resumed":false,"agentsOnline":true,"agent":null,"history":[{}]}'],
    ["a queue frame without a number", '{"type":"queue","position":"2"}'],
    ["null", "null"],
  ])("ignores %s", (_, raw) => {
    expect(parseServerFrame(raw)).toBeNull();
  });

  it("drops characters the bridge refuses, keeping emoji and newlines", () => {
    expect(cleanText("a\u0000b\u0007c\nd\t😀e\uD800f")).toBe("abc\nd\t😀ef");
  });

  it("caps page fields at the bridge's limits", () => {
    const frame = pageFrame("https://x.example/" + "a".repeat(3000), "t".repeat(600));
    expect(frame).toMatchObject({ type: "page" });
    if (frame.type !== "page") throw new Error("unreachable");
    expect(frame.url).toHaveLength(2048);
    expect(frame.title).toHaveLength(512);
  });

  it("cuts long titles and names between characters, never inside an emoji", () => {
    const title = "t" + "😀".repeat(600); // the 512th character starts at UTF-16 unit 511
    const page = pageFrame("https://x.example/", title);
    const identify = identifyFrame("n" + "😀".repeat(200), "");
    for (const [frame, field, max] of [[page, "title", 512], [identify, "name", 128]] as const) {
      const value = (frame as Record<string, string>)[field]!;
      expect(Array.from(value)).toHaveLength(max);
      expect(value.isWellFormed()).toBe(true);
      expect(parseClientFrame(JSON.stringify(frame), false)).toMatchObject({ ok: true });
    }
  });

  it("sends what the offline form's email field accepts, and the bridge takes it", () => {
    for (const email of ["name@intranet", "a..b@example.com", "x@example.c", "a!b@example.com"]) {
      expect(parseClientFrame(JSON.stringify(identifyFrame("Ann", email)), false)).toMatchObject({ ok: true });
    }
  });

  it("sends identify without blank fields", () => {
    expect(identifyFrame(" Ann ", "")).toEqual({ type: "identify", name: "Ann" });
  });
});
