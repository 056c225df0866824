// Message ids are Redis stream ids, `<ms>-<seq>` (the memory store makes the same shape):
// within one visitor's log they increase in the order the messages were stored, whatever
// the clocks of the processes that stored them.

/** Orders message ids numerically (as strings, `10-0` would sort before `9-0`). */
export function compareMessageIds(a: string, b: string): number {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am - bm || as - bs;
}

/** What a log with no message yet has stored "up to": every id is after it. */
export const BEFORE_ANY_MESSAGE = "0-0";
