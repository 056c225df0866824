import { randomBytes } from "node:crypto";

/**
 * Bytes from the operating system's CSPRNG, fetched 4 KiB at a time: every new visitor
 * needs 49 random bytes (id and resume secret), and one system call per 80 visitors costs
 * far less than two per visitor. Each slice is copied out and wiped from the pool, so
 * nothing handed out stays in memory here.
 */
export class RandomPool {
  private pool = Buffer.alloc(0);
  private offset = 0;

  constructor(private readonly poolBytes = 4096) {}

  take(size: number): Buffer {
    if (size > this.poolBytes) return randomBytes(size);
    if (this.offset + size > this.pool.length) {
      this.pool = randomBytes(this.poolBytes);
      this.offset = 0;
    }
    const slice = this.pool.subarray(this.offset, this.offset + size);
    const out = Buffer.from(slice);
    slice.fill(0);
    this.offset += size;
    return out;
  }
}
