import { randomInt } from "node:crypto";

/**
 * A reproducible source of randomness for scenario tests: the seed is printed, and setting it
 * again (through the environment variable the test names) replays the same choices.
 * mulberry32: 32 bits of state, good enough to pick and shuffle, not for anything secret.
 */
export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** The seed from `variable` if set, else a new one. */
  static fromEnv(variable: string): SeededRandom {
    const given = process.env[variable];
    if (given !== undefined && !/^\d+$/.test(given)) throw new Error(`${variable} must be a non-negative integer, got ${given}`);
    return new SeededRandom(given === undefined ? randomInt(2 ** 31) : Number(given));
  }

  /** A float in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[Math.floor(this.next() * items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }
}
