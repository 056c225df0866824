/**
 * Parley's addressing scheme on the component domain (e.g. `chat.example.com`).
 *
 * | JID                                   | what it is                                   |
 * |---------------------------------------|----------------------------------------------|
 * | `chat.example.com`                    | the component itself (disco, version, ping)  |
 * | `acme@chat.example.com`               | the desk contact of site `acme`              |
 * | `acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat...` | a visitor of site `acme`                     |
 *
 * Worked examples:
 * - `parseLocalpart("acme")` → `{ kind: "desk", siteId: "acme" }`
 * - `parseLocalpart("acme.q7m2x4tb3wr5czn6v2aqd7hsek")` → `{ kind: "visitor", siteId: "acme", visitorId: "q7m2x4tb3wr5czn6v2aqd7hsek" }`
 * - `parseLocalpart("Acme")` → `{ kind: "unknown" }` (site ids are lower case)
 *
 * A site id matches `[a-z0-9][a-z0-9-]{0,31}` and so never contains a dot, which is why a
 * visitor JID can never equal a desk JID. The visitor id is 130 random bits in
 * lower-case base32 (no padding), so one visitor's JID says nothing about another's;
 * the site prefix lets Parley refuse a stanza that crosses sites before any lookup.
 */

export const SITE_ID_PATTERN = /^[a-z0-9][a-z0-9-]{0,31}$/;
export const VISITOR_ID_PATTERN = /^[a-z2-7]{26}$/;

export type Address =
  | { kind: "component" }
  | { kind: "desk"; siteId: string }
  | { kind: "visitor"; siteId: string; visitorId: string }
  | { kind: "unknown" };

export function deskJid(siteId: string, domain: string): string {
  return `${siteId}@${domain}`;
}

export function visitorJid(siteId: string, visitorId: string, domain: string): string {
  return `${siteId}.${visitorId}@${domain}`;
}

export function parseLocalpart(local: string): Address {
  if (local === "") return { kind: "component" };
  const dot = local.indexOf(".");
  if (dot === -1) return SITE_ID_PATTERN.test(local) ? { kind: "desk", siteId: local } : { kind: "unknown" };
  const siteId = local.slice(0, dot);
  const visitorId = local.slice(dot + 1);
  if (SITE_ID_PATTERN.test(siteId) && VISITOR_ID_PATTERN.test(visitorId)) return { kind: "visitor", siteId, visitorId };
  return { kind: "unknown" };
}

/** Parses a full or bare JID addressed to our domain; anything else is `unknown`. */
export function parseAddress(jid: string, domain: string): Address {
  const bare = bareJid(jid);
  const at = bare.indexOf("@");
  const host = at === -1 ? bare : bare.slice(at + 1);
  if (host !== domain) return { kind: "unknown" };
  return parseLocalpart(at === -1 ? "" : bare.slice(0, at));
}

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/** Encodes 17 random bytes (136 bits) as a 26-character visitor id (130 bits kept). */
export function visitorIdFromBytes(bytes: Uint8Array): string {
  if (bytes.length < 17) throw new RangeError("visitorIdFromBytes needs 17 random bytes");
  let out = "";
  let buffer = 0;
  let bits = 0;
  for (const byte of bytes.subarray(0, 17)) {
    buffer = (buffer << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 26) {
      out += BASE32[(buffer >>> (bits - 5)) & 31];
      bits -= 5;
    }
    buffer &= (1 << bits) - 1;
  }
  return out;
}

/**
 * The bare JID, prepared the way XMPP servers prepare its parts (RFC 6122 nodeprep and
 * nameprep: NFKC, then case folding), so that "Straße@Example.com" typed by an admin is the
 * "strasse@example.com" ejabberd writes in stanzas. Case folding is lowercasing except for a
 * few characters, mapped here; for ASCII it is lowercasing alone (the hot path).
 */
export function bareJid(jid: string): string {
  const slash = jid.indexOf("/");
  const bare = slash === -1 ? jid : jid.slice(0, slash);
  if (!/[\u0080-\uffff]/.test(bare)) return bare.toLowerCase();
  return bare.normalize("NFKC").toLowerCase().replace(/ß|ς|\u0345/g, (c) => FOLDED_BEYOND_LOWERCASE[c]!).normalize("NFKC");
}

/** Stringprep's case folding (RFC 3454 table B.2) where it differs from lowercasing. */
const FOLDED_BEYOND_LOWERCASE: Record<string, string> = { "ß": "ss", "ς": "σ", "\u0345": "ι" };

export function resourceOf(jid: string): string {
  const slash = jid.indexOf("/");
  return slash === -1 ? "" : jid.slice(slash + 1);
}

export function domainOf(jid: string): string {
  const bare = bareJid(jid);
  const at = bare.indexOf("@");
  return at === -1 ? bare : bare.slice(at + 1);
}
