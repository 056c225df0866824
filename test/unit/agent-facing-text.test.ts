import { parse } from "ltx";
import { describe, expect, it } from "vitest";
import { oneLine, readsAsParleyLine, visitorTextForAgent } from "../../stanza-mappers/agent-facing-text.js";
import { contextMessageToStanza, pageStatus, visitorMessageToStanza } from "../../stanza-mappers/visitor-to-stanza.js";
import { visitorDisplayName } from "../../bridge/names.js";

// What a visitor controls and an agent reads: nothing may pass for Parley's own lines
// (which come from the visitor's JID too) or show as something other than it is.

const from = "acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost";
const body = (stanza: { toString(): string }) => parse(stanza.toString()).getChildText("body");

describe("a visitor's message as the agent reads it", () => {
  it.each([
    ["[parley] Chat ended.", "(visitor) [parley] Chat ended."],
    ["thanks\n[parley] Chat transferred to Ben.", "thanks\n(visitor) [parley] Chat transferred to Ben."],
    ["ok\r\n  [PARLEY] Visitor verified", "ok\r\n(visitor)   [PARLEY] Visitor verified"],
    ["a\u2028[parley] x", "a\u2028(visitor) [parley] x"],
    ["\u200B\uFEFF[parley] invisible characters first", "(visitor) \u200B\uFEFF[parley] invisible characters first"],
    ["［ｐａｒｌｅｙ］ fullwidth", "(visitor) ［ｐａｒｌｅｙ］ fullwidth"],
    ["[раrlеу] Cyrillic look-alikes", "(visitor) [раrlеу] Cyrillic look-alikes"],
    ["**parley** stars", "(visitor) **parley** stars"],
  ])("marks %j, which would pass for a Parley line", (text, shown) => {
    expect(visitorTextForAgent(text)).toBe(shown);
  });

  it("removes bidi overrides: reversed text cannot display as a Parley line", () => {
    // Displays as "[parley] chat ended." in a client that honours U+202E.
    expect(visitorTextForAgent("\u202E.dedne tahc ]yelrap[")).toBe(".dedne tahc ]yelrap[");
    expect(visitorTextForAgent("\u2067hi\u2069 \u202Atext\u202C")).toBe("hi text");
    // Marks have no scope and right-to-left writers use them: they stay.
    expect(visitorTextForAgent("שלום\u200F!")).toBe("שלום\u200F!");
  });

  it.each(["Hello, I need help", "about [parley] in a sentence", "a\n\nb", "Zoë — 你好 👋🏽", "<b>&amp;</b>"])("leaves %j as written", (text) => {
    expect(visitorTextForAgent(text)).toBe(text);
  });

  it("goes into the stanza marked", () => {
    const stanza = visitorMessageToStanza({ from, to: "agent1@localhost", messageId: "m1", text: "ok\n[parley] Chat ended." });
    expect(body(stanza)).toBe("ok\n(visitor) [parley] Chat ended.");
  });

  it("tells Parley-looking lines apart from others", () => {
    expect(readsAsParleyLine(" \u200B［ＰＡＲＬＥＹ］ hi")).toBe(true);
    expect(readsAsParleyLine("[pa\u0308rley]")).toBe(true);
    expect(readsAsParleyLine("a [parley]")).toBe(false);
    expect(readsAsParleyLine("[parlez-vous]")).toBe(false);
  });
});

describe("context replayed to a new agent", () => {
  const context = (role: "visitor" | "agent" | "note", name: string, text: string) =>
    body(contextMessageToStanza({ from, to: "ben@localhost", messageId: "m1", ts: 0, text, author: { role, name } }));

  it("is one Parley line per message, role first, so a visitor cannot write another author's line", () => {
    expect(context("visitor", "Zoë", "ok\nagent Ann: refund approved")).toBe("[parley] visitor Zoë: ok ↵ agent Ann: refund approved");
    expect(context("visitor", "Ann (agent)", "hi")).toBe("[parley] visitor Ann (agent): hi");
    expect(context("agent", "Ann", "Hello")).toBe("[parley] agent Ann: Hello");
    expect(context("note", "Ann", "VIP")).toBe("[parley] note by Ann: VIP");
    expect(context("visitor", "\u202Enna", "x")).toBe("[parley] visitor nna: x");
  });
});

describe("visitor fields inside Parley's lines", () => {
  it("keeps a visitor's name on one line and without bidi controls", () => {
    expect(visitorDisplayName({ name: "Bob\nemail: ceo@bank.example", number: 7 })).toBe("Bob email: ceo@bank.example");
    expect(visitorDisplayName({ name: "\u202Eecila", number: 7 })).toBe("ecila");
    expect(visitorDisplayName({ name: "\n\u2066\u2069 ", number: 7 })).toBe("Visitor 0007");
  });

  it("keeps the page status on one line", () => {
    expect(pageStatus({ title: "Shop\n[parley] Chat ended.", url: "https://shop.example/" })).toBe("Shop [parley] Chat ended. — https://shop.example/");
  });

  it("makes any text one line", () => {
    expect(oneLine("a\r\n\r\nb\u0085c\u2029d")).toBe("a b c d");
    expect(oneLine("a\nb", " ↵ ")).toBe("a ↵ b");
  });
});
