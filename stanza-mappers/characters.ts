// Length limits count characters (code points), as people do, not UTF-16 units: an emoji is
// one character, not two. Pure.

/** `atMostCharacters("👋👋", 2)` → true (4 UTF-16 units); `atMostCharacters("abc", 2)` → false. */
export function atMostCharacters(text: string, max: number): boolean {
  // A string of at most `max` UTF-16 units has no more than `max` code points: no need to count.
  if (text.length <= max) return true;
  let n = 0;
  for (const _ of text) if (++n > max) return false;
  return true;
}
