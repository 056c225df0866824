import { describe, expect, it } from "vitest";
import { chooseAgent, type AgentLoad } from "../../bridge/routing.js";
import { backoffDelay } from "../../bridge/backoff.js";
import { parseRateSpec, TokenBucket } from "../../bridge/rate-limit.js";

const agent = (jid: string, activeChats: number, lastAssignedAt = 0, presence: AgentLoad["presence"] = "available"): AgentLoad => ({ jid, presence, activeChats, lastAssignedAt });

describe("chooseAgent", () => {
  it("picks the available agent with the fewest chats", () => {
    expect(chooseAgent([agent("a@x", 2), agent("b@x", 1)], 3)).toEqual({ kind: "assign", agentJid: "b@x" });
  });
  it("breaks ties by the least recently assigned", () => {
    expect(chooseAgent([agent("a@x", 1, 200), agent("b@x", 1, 100)], 3)).toEqual({ kind: "assign", agentJid: "b@x" });
  });
  it("never picks away, dnd, xa or offline agents", () => {
    const agents = (["away", "dnd", "xa", "offline"] as const).map((p, i) => agent(`${p}@x`, 0, i, p));
    expect(chooseAgent(agents, 3)).toEqual({ kind: "offline" });
  });
  it("queues when every available agent is at the cap", () => {
    expect(chooseAgent([agent("a@x", 3), agent("b@x", 0, 0, "away")], 3)).toEqual({ kind: "queue" });
  });
});

describe("backoffDelay", () => {
  it("grows exponentially, stays within half and all of its step, and is capped", () => {
    const spec = { baseMs: 100, maxMs: 5000 };
    expect(backoffDelay(spec, 0, 0)).toBe(50);
    expect(backoffDelay(spec, 0, 1)).toBe(100);
    expect(backoffDelay(spec, 3, 0.5)).toBe(600);
    expect(backoffDelay(spec, 50, 1)).toBe(5000);
  });
});

describe("rate limits", () => {
  it("parses the contract's syntax", () => {
    expect(parseRateSpec("5/s burst 20")).toEqual({ perSecond: 5, burst: 20 });
    expect(parseRateSpec("10/s")).toEqual({ perSecond: 10, burst: 10 });
    expect(parseRateSpec("fast")).toBeNull();
    expect(parseRateSpec("30/min burst 5")).toEqual({ perSecond: 0.5, burst: 5 });
    expect(parseRateSpec("7200/h")).toEqual({ perSecond: 2, burst: 2 });
    expect(parseRateSpec("1/m")).toEqual({ perSecond: 1 / 60, burst: 1 });
    expect(parseRateSpec("5/fortnight")).toBeNull();
    expect(parseRateSpec("5/constructor")).toBeNull();
    expect(parseRateSpec("0/s")).toBeNull();
  });
  it("accepts a burst, then the sustained rate, and refuses beyond", () => {
    const bucket = new TokenBucket({ perSecond: 5, burst: 20 }, 0);
    for (let i = 0; i < 20; i++) expect(bucket.take(0)).toBe(true);
    expect(bucket.take(0)).toBe(false);
    expect(bucket.take(200)).toBe(true); // 5/s → one token per 200 ms
    expect(bucket.take(200)).toBe(false);
  });
  it("accepts the sustained rate with arrivals a little early, but not a faster rate", () => {
    const bucket = new TokenBucket({ perSecond: 5, burst: 20 }, 0);
    for (let i = 0; i < 20; i++) expect(bucket.take(0)).toBe(true);
    // Sent every 200 ms, arriving up to 40 ms early or late: every one accepted.
    for (let k = 1; k <= 50; k++) expect(bucket.take(k * 200 + (k % 2 ? -40 : 40))).toBe(true);
    // Every 150 ms instead: refused within a few messages.
    const start = 50 * 200 + 40;
    const refused = Array.from({ length: 10 }, (_, k) => bucket.take(start + (k + 1) * 150)).filter((ok) => !ok);
    expect(refused.length).toBeGreaterThan(0);
  });
});
