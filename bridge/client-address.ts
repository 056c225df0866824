// The key under which per-client limits (PARLEY_UPGRADE_RATE, PARLEY_SOCKETS_PER_ADDRESS)
// count a connection, and the addresses they do not count. Pure.

/**
 * 127.0.0.1 and ::1: a reverse proxy on the same host (every visitor behind it shares the
 * address, so a per-address limit would be one limit for all of them) or the operator's own
 * tools. Per-visitor limits belong in that proxy (docs/operations.md). Other loopback
 * addresses (127.0.0.2…) count as any client does.
 */
export function isLocalProxy(address: string): boolean {
  return address === "127.0.0.1" || address === "::1" || address === "::ffff:127.0.0.1";
}

/**
 * An IPv4 address counts as itself; an IPv6 address by its /64 network, since a single
 * line (and so a single attacker) is given a whole /64 and may use a fresh address for
 * every connection: counted per address, the limit would not limit anything. An IPv4
 * address seen by an IPv6 listener (`::ffff:192.0.2.7`) is that IPv4 address.
 * - `clientKey("192.0.2.7")` → `"192.0.2.7"`
 * - `clientKey("::ffff:192.0.2.7")` → `"192.0.2.7"`
 * - `clientKey("2001:db8:1:2::7")`, `clientKey("2001:DB8:1:2:aaaa:bbbb:cccc:dddd")` → `"2001:db8:1:2::/64"`
 * Anything it cannot read is its own key.
 */
export function clientKey(address: string): string {
  const ip = address.split("%")[0]!.toLowerCase(); // without a zone (fe80::1%eth0)
  if (!ip.includes(":")) return ip;
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/.exec(ip);
  if (mapped) return mapped[1]!;
  const groups = ipv6Groups(ip);
  return groups ? `${groups.slice(0, 4).join(":")}::/64` : ip;
}

/** The eight 16-bit groups of an IPv6 address, as hex without leading zeros; null if it is not one. */
function ipv6Groups(ip: string): string[] | null {
  const halves = ip.split("::");
  if (halves.length > 2) return null;
  const part = (s: string | undefined) => (s ? s.split(":") : []);
  const head = part(halves[0]);
  const tail = part(halves[1]);
  // A trailing dotted IPv4 (64:ff9b::192.0.2.7) fills two groups.
  const last = tail.at(-1) ?? head.at(-1);
  const given = head.length + tail.length + (last?.includes(".") ? 1 : 0);
  const groups = halves.length === 2 ? [...head, ...Array<string>(8 - given).fill("0"), ...tail] : head;
  if (given > 8 || (halves.length === 1 && given !== 8)) return null;
  const first = groups.slice(0, 4);
  if (!first.every((g) => /^[0-9a-f]{1,4}$/.test(g))) return null;
  return [...first.map((g) => parseInt(g, 16).toString(16)), ...groups.slice(4)];
}
