import type { Redis } from "ioredis";

/**
 * Redis' keys grouped by pattern (ids replaced by `*`), with how many members their
 * collections hold: a sorted set that gains a member per visitor and never loses it shows
 * here, where DBSIZE (keys) does not see it.
 */
export type RedisBreakdown = Map<string, { keys: number; members: number }>;

const LENGTH_COMMAND: Record<string, string> = { zset: "zcard", set: "scard", hash: "hlen", list: "llen", stream: "xlen" };

export function keyPattern(key: string): string {
  return key
    .replace(/\{v:[^}]+\}/, "{v:*}")
    .replace(/\{a:[^}]+\}/, "{a:*}")
    .replace(/\{s:soak-tmp-\d+\}/, "{s:soak-tmp-*}")
    .replace(/:(chat|webhook-event|outbox|load):.*$/, ":$1:*");
}

export async function redisBreakdown(redis: Redis): Promise<RedisBreakdown> {
  const keys: string[] = [];
  let cursor = "0";
  do {
    const [next, batch] = await redis.scan(cursor, "COUNT", 1000);
    keys.push(...batch);
    cursor = next;
  } while (cursor !== "0");
  const types = (await redis.pipeline(keys.map((key) => ["type", key])).exec()) ?? [];
  const lengths =
    (await redis
      .pipeline(keys.map((key, i) => [LENGTH_COMMAND[String(types[i]?.[1])] ?? "exists", key]))
      .exec()) ?? [];
  const breakdown: RedisBreakdown = new Map();
  keys.forEach((key, i) => {
    const pattern = keyPattern(key);
    const entry = breakdown.get(pattern) ?? { keys: 0, members: 0 };
    entry.keys += 1;
    entry.members += Number(lengths[i]?.[1] ?? 0);
    breakdown.set(pattern, entry);
  });
  return breakdown;
}

/** Patterns whose member count grew most from `before` to `after`. */
export function grownPatterns(before: RedisBreakdown, after: RedisBreakdown, top = 12): { pattern: string; keys: number; members: number }[] {
  const patterns = new Set([...before.keys(), ...after.keys()]);
  return [...patterns]
    .map((pattern) => ({
      pattern,
      keys: (after.get(pattern)?.keys ?? 0) - (before.get(pattern)?.keys ?? 0),
      members: (after.get(pattern)?.members ?? 0) - (before.get(pattern)?.members ?? 0),
    }))
    .filter((d) => d.keys !== 0 || d.members !== 0)
    .sort((x, y) => y.members - x.members)
    .slice(0, top);
}
