import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import xml from "@xmpp/xml";
import { parse } from "ltx";
import { describe, expect, it } from "vitest";
import { parseClientFrame } from "../../stanza-mappers/parse-client-frame.js";
import { stanzaToAgentEvent } from "../../stanza-mappers/stanza-to-agent-event.js";
import { pageStatus, presenceToStanza, visitorMessageToStanza, visitorTypingToStanza } from "../../stanza-mappers/visitor-to-stanza.js";
import { stanzaErrorCondition, stanzaErrorReply } from "../../stanza-mappers/stanza-errors.js";
import { stanzaToPresenceEvent, aggregatePresence } from "../../stanza-mappers/presence-to-agent-state.js";
import { stanzaToPrivilegeGrant } from "../../stanza-mappers/privileges.js";

const fixtures = join(import.meta.dirname, "../fixtures");
const read = (path: string) => readFileSync(join(fixtures, path), "utf8");

describe("agent stanzas as real clients send them", () => {
  const dir = join(fixtures, "stanzas/from-agents");
  const names = readdirSync(dir)
    .filter((f) => f.endsWith(".xml"))
    .map((f) => f.slice(0, -4));

  it("has a fixture for each client family and extension", () => {
    expect(names.length).toBeGreaterThanOrEqual(15);
  });

  it.each(names)("maps %s to its expected event", (name) => {
    const stanza = parse(read(`stanzas/from-agents/${name}.xml`));
    const expected = JSON.parse(read(`stanzas/from-agents/${name}.expected.json`)) as unknown;
    expect(stanzaToAgentEvent(stanza)).toEqual(expected);
  });
});

describe("agent commands (CONTRACT §5: a body starting with ! is never shown to the visitor)", () => {
  const message = (body: string) =>
    xml("message", { type: "chat", from: "ann@localhost/x", to: "acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost", id: "c1" }, xml("body", {}, body));

  it.each([
    ["!end", { name: "end", args: "" }],
    ["  !transfer  bob@localhost ", { name: "transfer", args: "bob@localhost" }],
    ["!note first line\nsecond line", { name: "note", args: "first line\nsecond line" }],
    ["!INFO", { name: "info", args: "" }],
    // Not the command pattern, still commands: answered with the help text.
    ["!end.", { name: "end.", args: "" }],
    ["! end", { name: "", args: "end" }],
    ["!!", { name: "!", args: "" }],
    ["!info?", { name: "info?", args: "" }],
    ["!", { name: "", args: "" }],
    ["\n\t!end", { name: "end", args: "" }],
  ])("reads %j as a command", (body, command) => {
    expect(stanzaToAgentEvent(message(body))).toEqual({ kind: "command", ...command, receiptRequested: false });
  });

  it.each(["hi !end", "¡hola!", "?!"])("reads %j as text", (body) => {
    expect(stanzaToAgentEvent(message(body))).toMatchObject({ kind: "text", text: body });
  });
});

describe("agent messages over the length limit", () => {
  const message = (body: string, ...extra: ReturnType<typeof xml>[]) =>
    xml("message", { type: "chat", from: "ann@localhost/x", to: "acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost", id: "long" }, xml("body", {}, body), ...extra);

  const tooLong = { kind: "too-long", maxChars: 10_000, maxBytes: 15_000 };

  it("refuses a body over 10,000 characters whole, command or not, receipt requested or not", () => {
    for (const body of ["x".repeat(10_001), `!note ${"x".repeat(10_000)}`]) {
      expect(stanzaToAgentEvent(message(body, xml("request", { xmlns: "urn:xmpp:receipts" })))).toEqual(tooLong);
    }
  });

  it("keeps a body of exactly 10,000 characters whole, counting characters rather than UTF-16 units", () => {
    for (const body of ["x".repeat(10_000), `${"👋".repeat(3000)}${"x".repeat(2_000)}`]) {
      expect(stanzaToAgentEvent(message(body))).toEqual({ kind: "text", text: body, receiptRequested: false, correction: false });
    }
  });

  it("refuses a text that would not fit a visitor's 16 KiB frame: 15,000 bytes once JSON-encoded", () => {
    const fits = "👋".repeat(3749); // 14,996 bytes, 14,998 with the quotes
    expect(stanzaToAgentEvent(message(fits))).toMatchObject({ kind: "text", text: fits });
    expect(stanzaToAgentEvent(message(`${fits}👋`))).toEqual(tooLong);
    expect(stanzaToAgentEvent(message("中".repeat(5000)))).toEqual(tooLong); // 15,000 bytes, and the quotes
    expect(stanzaToAgentEvent(message('"'.repeat(7500)))).toEqual(tooLong); // each escaped: 2 bytes
    // A correction's prefix counts: the visitor gets it in the same frame.
    expect(stanzaToAgentEvent(message(fits, xml("replace", { xmlns: "urn:xmpp:message-correct:0", id: "m1" })))).toEqual(tooLong);
  });
});

describe("visitor frames to stanzas (golden pairs with the same basename)", () => {
  type Fixture = { context: Record<string, string>; frame: unknown };
  const load = (name: string) => {
    const fixture = JSON.parse(read(`visitor/${name}.json`)) as Fixture;
    const parsed = parseClientFrame(JSON.stringify(fixture.frame), false);
    if (!parsed.ok) throw new Error(`fixture ${name} is not a valid frame: ${parsed.message}`);
    return { ...fixture, frame: parsed.frame, expected: parse(read(`stanzas/${name}.xml`).trim()) };
  };

  it("maps a message, keeping multibyte text and markup-looking text exact", () => {
    const { context, frame, expected } = load("message-multibyte");
    if (frame.type !== "message") throw new Error("fixture is not a message");
    const stanza = visitorMessageToStanza({ from: context.from!, to: context.to!, messageId: context.messageId!, text: frame.text });
    expect(stanza.toString()).toBe(expected.toString());
    expect(parse(stanza.toString()).getChildText("body")).toBe(frame.text);
  });

  it("maps typing to a XEP-0085 chat state that servers do not store", () => {
    const { context, frame, expected } = load("typing-composing");
    if (frame.type !== "typing") throw new Error("fixture is not typing");
    expect(visitorTypingToStanza({ from: context.from!, to: context.to!, state: frame.state, id: context.id! }).toString()).toBe(expected.toString());
  });

  it("maps a page change to presence with the title and URL as status", () => {
    const { context, frame, expected } = load("page");
    if (frame.type !== "page") throw new Error("fixture is not a page");
    expect(presenceToStanza({ from: context.from!, to: context.to!, status: pageStatus(frame) }).toString()).toBe(expected.toString());
  });

  it("shows only the title of a page whose URL was kept out, and only the URL of a page without a title", () => {
    expect(pageStatus({ url: "", title: "Pricing" })).toBe("Pricing");
    expect(pageStatus({ url: "https://shop.example/", title: "" })).toBe("https://shop.example/");
  });
});

describe("stanza errors", () => {
  it("reads the condition of a bounce, whatever the order of its children, and nothing else", () => {
    expect(stanzaErrorCondition(parse(read("stanzas/from-agents/error-bounce.xml")))).toBe("service-unavailable");
    const stanzas = "urn:ietf:params:xml:ns:xmpp-stanzas";
    const bounce = (...children: string[]) => parse(`<message type="error"><body>secret</body><error type="cancel">${children.join("")}</error></message>`);
    expect(stanzaErrorCondition(bounce(`<text xmlns="${stanzas}">User session not found</text>`, `<recipient-unavailable xmlns="${stanzas}"/>`))).toBe("recipient-unavailable");
    // Not an RFC 6120 condition, no condition, no <error/>: counted as undefined-condition (bounded metric labels).
    expect(stanzaErrorCondition(bounce(`<made-up-${"x".repeat(50)} xmlns="${stanzas}"/>`))).toBe("undefined-condition");
    expect(stanzaErrorCondition(bounce(`<forbidden xmlns="urn:example:not-stanzas"/>`))).toBe("undefined-condition");
    expect(stanzaErrorCondition(parse('<message type="error"/>'))).toBe("undefined-condition");
  });

  it("swaps addresses, keeps the id and names the condition", () => {
    const stanza = parse('<message from="eve@localhost/x" to="acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost" id="m1" type="chat"><body>hi</body></message>');
    const reply = stanzaErrorReply(stanza, "forbidden");
    expect(reply.attrs).toMatchObject({ type: "error", from: "acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost", to: "eve@localhost/x", id: "m1" });
    expect(reply.getChild("error")?.attrs.type).toBe("auth");
    expect(reply.getChild("error")?.getChild("forbidden", "urn:ietf:params:xml:ns:xmpp-stanzas")).toBeDefined();
  });
});

describe("agent presence", () => {
  it.each([
    ["<presence/>", { kind: "resource", show: "available" }],
    ["<presence><show>chat</show></presence>", { kind: "resource", show: "available" }],
    ["<presence><show>away</show><status>lunch</status></presence>", { kind: "resource", show: "away" }],
    ["<presence><show>dnd</show></presence>", { kind: "resource", show: "dnd" }],
    ["<presence><show>xa</show></presence>", { kind: "resource", show: "xa" }],
    ['<presence type="unavailable"/>', { kind: "resource-gone" }],
    ["<presence><priority>0</priority></presence>", { kind: "resource", show: "available" }],
    ["<presence><priority>5</priority><show>away</show></presence>", { kind: "resource", show: "away" }],
    // Never reached by messages to the bare JID (RFC 6121 §8.5.2.1): as good as gone.
    ["<presence><priority>-1</priority></presence>", { kind: "resource-gone" }],
    ["<presence><priority>junk</priority></presence>", { kind: "resource", show: "available" }],
    ['<presence type="probe"/>', { kind: "probe" }],
    ['<presence type="subscribe"/>', { kind: "subscribe" }],
  ])("reads %s", (xml, expected) => {
    expect(stanzaToPresenceEvent(parse(xml))).toEqual(expected);
  });

  it("counts the most available resource", () => {
    expect(aggregatePresence([])).toBe("offline");
    expect(aggregatePresence(["away", "available"])).toBe("available");
    expect(aggregatePresence(["xa", "dnd"])).toBe("dnd");
  });
});

describe("XEP-0356 privilege grants", () => {
  it("reads ejabberd 23.01's grant message", () => {
    const stanza = parse(
      '<message from="localhost" to="chat.localhost"><privilege xmlns="urn:xmpp:privilege:1"><perm access="roster" type="both"/><perm access="message" type="outgoing"/><perm access="presence" type="roster"/></privilege></message>',
    );
    expect(stanzaToPrivilegeGrant(stanza)).toEqual({ host: "localhost", roster: "both", presence: "roster", message: "outgoing" });
  });

  it("ignores the same element from a user", () => {
    expect(stanzaToPrivilegeGrant(parse('<message from="eve@localhost"><privilege xmlns="urn:xmpp:privilege:1"/></message>'))).toBeNull();
  });
});
