import fc from "fast-check";
import xml, { type Element } from "@xmpp/xml";
import { parse } from "ltx";
import { describe, it } from "vitest";
import { bareJid, domainOf, parseAddress, parseLocalpart, resourceOf } from "../../stanza-mappers/addressing.js";
import { NS } from "../../stanza-mappers/namespaces.js";
import { parseClientFrame } from "../../stanza-mappers/parse-client-frame.js";
import { stanzaToPresenceEvent } from "../../stanza-mappers/presence-to-agent-state.js";
import { stanzaToPrivilegeGrant } from "../../stanza-mappers/privileges.js";
import { stanzaErrorReply } from "../../stanza-mappers/stanza-errors.js";
import { stanzaToAgentEvent } from "../../stanza-mappers/stanza-to-agent-event.js";

// Property-based fuzzing of everything that reads untrusted input (issue 5): visitor frame
// validation and the stanza mappers never throw, whatever comes in. 100,000 cases each in
// CI; PARLEY_FUZZ_RUNS=1000000 npm run test:unit -- fuzz for a longer run.

const RUNS = Number(process.env.PARLEY_FUZZ_RUNS ?? 100_000);
const ERROR_CODES = new Set(["bad_frame", "invalid", "too_large"]);
const FRAME_TYPES = new Set(["message", "typing", "page", "identify", "ping"]);
const ADDRESS_KINDS = new Set(["component", "desk", "visitor", "unknown"]);

// Plain checks: vitest's expect() inside 100,000 iterations would cost more than the fuzzing.
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`unexpected: ${what}`);
}

// --- visitor frames: raw bytes, arbitrary strings, arbitrary JSON, and near-valid frames
const nearValidFrame = fc.record(
  {
    type: fc.oneof(fc.constantFrom("message", "typing", "page", "identify", "ping", "hack", ""), fc.string(), fc.integer(), fc.constant(null)),
    id: fc.oneof(fc.string({ maxLength: 80 }), fc.integer(), fc.constant(null)),
    text: fc.oneof(fc.string({ maxLength: 50 }), fc.string({ unit: "binary", maxLength: 50 }), fc.integer({ min: 3990, max: 4010 }).map((n) => "é".repeat(n)), fc.integer(), fc.array(fc.string())),
    state: fc.oneof(fc.constantFrom("composing", "paused", "gone"), fc.anything()),
    url: fc.oneof(fc.webUrl(), fc.string()),
    title: fc.string({ unit: "grapheme", maxLength: 40 }),
    name: fc.string({ unit: "binary", maxLength: 140 }),
    email: fc.oneof(fc.emailAddress(), fc.string()),
    __proto__: fc.anything(),
  },
  { requiredKeys: [] },
);
const validish = fc.oneof(
  fc.record({ type: fc.constant("message"), id: fc.string({ minLength: 1, maxLength: 70 }), text: fc.string({ unit: "grapheme", maxLength: 60 }) }),
  fc.record({ type: fc.constant("typing"), state: fc.constantFrom("composing", "paused", "shouting") }),
  fc.record({ type: fc.constant("page"), url: fc.webUrl(), title: fc.string({ maxLength: 30 }) }, { requiredKeys: ["type", "url"] }),
  fc.record({ type: fc.constant("identify"), name: fc.string({ maxLength: 140 }), email: fc.oneof(fc.emailAddress(), fc.string()) }, { requiredKeys: ["type"] }),
  fc.constant({ type: "ping" }),
);
const frame = fc.oneof(
  validish.map((value) => ({ data: JSON.stringify(value) as Uint8Array | string, binary: false })),
  fc.uint8Array({ maxLength: 200 }).map((bytes) => ({ data: Buffer.from(bytes) as Uint8Array | string, binary: false })),
  fc.string({ unit: "binary", maxLength: 200 }).map((data) => ({ data: data as Uint8Array | string, binary: false })),
  fc.jsonValue({ maxDepth: 3 }).map((value) => ({ data: JSON.stringify(value) ?? "null", binary: false })),
  nearValidFrame.map((value) => ({ data: JSON.stringify(value), binary: false })),
  fc.tuple(nearValidFrame, fc.boolean()).map(([value, binary]) => ({ data: Buffer.from(JSON.stringify(value)) as Uint8Array | string, binary })),
);

describe("fuzzing visitor frames", () => {
  it(`validates ${RUNS} random frames without throwing, each an accepted frame or a contract error`, () => {
    let accepted = 0;
    let refused = 0;
    fc.assert(
      fc.property(frame, ({ data, binary }) => {
        const result = parseClientFrame(data, binary);
        if (result.ok) {
          accepted++;
          check(FRAME_TYPES.has(result.frame.type), `accepted a frame of type ${result.frame.type}`);
        } else {
          refused++;
          check(ERROR_CODES.has(result.code) && typeof result.message === "string", `refused with ${result.code}`);
        }
      }),
      { numRuns: RUNS },
    );
    console.log(`fuzzed visitor frames: ${accepted + refused} (${accepted} accepted, ${refused} refused with a contract error code), 0 exceptions`);
  }, 600_000);
});

// --- stanzas: random elements built from the names, namespaces and attributes real clients use
const jid = fc.oneof(
  fc.constantFrom("agent1@localhost", "agent1@localhost/phone", "acme@chat.localhost", "chat.localhost", "localhost", "", "@", "/", "a@b/c/d"),
  fc.tuple(fc.constantFrom("acme", "Acme", "a-b", "x".repeat(40), ""), fc.stringMatching(/^[a-z2-7]{0,30}$/)).map(([site, id]) => `${site}.${id}@chat.localhost`),
  fc.string({ unit: "binary", maxLength: 40 }),
);
const namespace = fc.constantFrom(...Object.values(NS), "jabber:client", "", "urn:example:unknown");
const childName = fc.constantFrom("body", "show", "status", "composing", "paused", "active", "gone", "request", "received", "displayed", "sent", "forwarded", "encrypted", "openpgp", "x", "replace", "privilege", "perm", "nick", "delay", "error", "html", "query", "item", "zzz");
const text = fc.oneof(
  { arbitrary: fc.string({ unit: "binary", maxLength: 60 }), weight: 10 },
  { arbitrary: fc.constantFrom("away", "dnd", "xa", "chat", " ", "!end", "!transfer x@y", "!", "!!", ""), weight: 5 },
  { arbitrary: fc.integer({ min: 9_990, max: 10_010 }).map((n) => "x".repeat(n)), weight: 1 }, // around the mapper's length cap
);
const attrs = fc.dictionary(fc.constantFrom("type", "access", "id", "xmlns", "from", "to", "jid", "stamp"), fc.oneof(text, fc.constantFrom("roster", "presence", "message", "both", "set", "get", "outgoing", "roster", "managed_entity")), { maxKeys: 4 });
const leaf = fc.tuple(childName, namespace, attrs, text).map(([name, xmlns, a, t]) => xml(name, { ...a, ...(xmlns ? { xmlns } : {}) }, t));
// Two levels are enough to reach every branch of the mappers (carbons, privileges, encryption).
const child: fc.Arbitrary<Element> = fc
  .tuple(childName, namespace, attrs, fc.oneof(text.map((t) => [t as Element | string]), fc.array(leaf, { maxLength: 3 })))
  .map(([name, xmlns, a, children]) => xml(name, { ...a, ...(xmlns ? { xmlns } : {}) }, ...children));
const stanza = fc
  .tuple(
    fc.constantFrom("message", "presence", "iq", "stream:error", "foo"),
    fc.record(
      { from: jid, to: jid, type: fc.oneof(fc.constantFrom("chat", "normal", "groupchat", "headline", "error", "unavailable", "probe", "subscribe", "subscribed", "unsubscribe", "unsubscribed", "get", "set", "result"), text), id: text },
      { requiredKeys: [] },
    ),
    fc.array(child, { maxLength: 4 }),
  )
  .map(([name, a, children]) => xml(name, a as Record<string, string>, ...children));

describe("fuzzing stanzas", () => {
  it(`maps ${RUNS} random stanzas (and their re-parsed serialization) without throwing`, () => {
    const kinds = new Map<string, number>();
    let reparsed = 0;
    fc.assert(
      fc.property(stanza, fc.boolean(), (built, roundTrip) => {
        let element = built;
        if (roundTrip) {
          // What the bridge really gets: ejabberd's serialization, parsed by ltx.
          element = parse(built.toString()) as Element;
          reparsed++;
        }
        const event = stanzaToAgentEvent(element);
        kinds.set(event.kind, (kinds.get(event.kind) ?? 0) + 1);
        stanzaToPresenceEvent(element);
        const grant = stanzaToPrivilegeGrant(element);
        if (grant) check(!grant.host.includes("@"), `a privilege grant from ${grant.host}`);
        for (const address of [element.attrs.to, element.attrs.from]) {
          if (typeof address !== "string") continue;
          const parsed = parseAddress(address, "chat.localhost");
          check(ADDRESS_KINDS.has(parsed.kind), `address kind ${parsed.kind}`);
          parseLocalpart(address);
          bareJid(address);
          resourceOf(address);
          domainOf(address);
        }
        if (element.name === "message" && element.attrs.from && element.attrs.to) stanzaErrorReply(element, "item-not-found");
      }),
      { numRuns: RUNS },
    );
    console.log(`fuzzed stanzas: ${RUNS} (${reparsed} re-parsed from XML), mapped to ${[...kinds].map(([k, n]) => `${k} ${n}`).join(", ")}; 0 exceptions`);
  }, 600_000);
});
