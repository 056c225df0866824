import type { Writable } from "node:stream";

const corked = new WeakSet<Writable>();

/**
 * Holds back writes to a stream until the current turn of the event loop has run its I/O
 * callbacks, then sends them in one system call. On loopback a write is a system call
 * plus the receiver's wake-up; under load, the stanzas or Redis commands produced by one
 * turn (replies to many visitors) leave as one write instead of one each. An idle stream
 * waits for nothing: its write goes out at the end of the same turn.
 */
export function corkForThisTurn(stream: Writable): void {
  if (corked.has(stream) || stream.destroyed) return;
  corked.add(stream);
  stream.cork();
  setImmediate(() => {
    corked.delete(stream);
    stream.uncork();
  });
}
