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

  it("judges an ASCII line the same on its fast path as on the general one", () => {
    // A zero-width space at the end sends a line down the general path without changing what it reads as.
    const alphabet = ["p", "P", "a", "r", "R", "l", "L", "1", "|", "e", "y", "Y", " ", "\t", "[", "]", "*", "(", "!", "x", "0"];
    let seed = 7;
    const random = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    const lines = ["[parley] hi", "  * P A R L E Y *", "(par1ey)", "[parlez-vous]", "a [parley]", "PARL|Y", "", "   "];
    const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)]!;
    const variants: Record<string, string[]> = { p: ["p", "P"], a: ["a", "A", "@"], r: ["r", "R"], l: ["l", "L", "1", "|", "I"], e: ["e", "E", "3"], y: ["y", "Y"] };
    const noise = () => (random() < 0.3 ? pick([" ", "\t", "[", "*", "(", "x", "0"]) : "");
    for (let i = 0; i < 5000; i++) {
      // Half near-misses and disguises of "parley", half random text.
      const line = random() < 0.5 ? noise() + noise() + [..."parley"].map((c) => pick(variants[c]!) + noise()).join("") : Array.from({ length: 1 + Math.floor(random() * 14) }, () => pick(alphabet)).join("");
      lines.push(line);
    }
    let parleyLike = 0;
    for (const line of lines) {
      expect(readsAsParleyLine(line), JSON.stringify(line)).toBe(readsAsParleyLine(line + "\u200B"));
      if (readsAsParleyLine(line)) parleyLike++;
    }
    expect(parleyLike).toBeGreaterThan(100); // the sample reaches both answers
    expect(parleyLike).toBeLessThan(lines.length - 100);
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
