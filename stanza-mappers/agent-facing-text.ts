// Visitor-controlled text on its way to an agent's Jabber client. Everything Parley itself
// says there comes from the visitor's JID too (CONTRACT §5), told apart only by starting
// with `[parley]`; so a visitor must not be able to write a line that reads as Parley's, or
// make their name, page or text show as something else. Pure.
//
// - Bidirectional embeddings, overrides and isolates (U+202A–U+202E, U+2066–U+2069) are
//   removed: with them, the logical text `\u202E.dedne tahc ]yelrap[` displays as a
//   Parley line, and a name can show as another one ("Trojan Source", CVE-2021-42574).
//   The marks LRM/RLM/ALM, which right-to-left writers do use, have no scope and stay.
// - A line of a visitor's message that reads as a Parley line — `[parley]`, whatever the
//   invisible characters, brackets, width or look-alike letters around it — is marked
//   `(visitor) ` (the stored transcript keeps the original).
// - Fields shown inside Parley's own lines (name, page title and URL, email, referrer,
//   user agent) are made one line, so that they cannot add lines of their own to `!info`.

/** What every line Parley writes to an agent begins with. */
export const PARLEY_LINE_PREFIX = "[parley]";
/** What a visitor's line that could pass for Parley's is marked with. */
export const VISITOR_LINE_MARK = "(visitor) ";

const BIDI_CONTROLS = /[\u202A-\u202E\u2066-\u2069]/g;
const LINE_BREAKS = /\s*(?:\r\n|[\n\r\u0085\u2028\u2029])\s*/g;
const LINE_SPLIT = /(\r\n|[\n\r\u0085\u2028\u2029])/;
/** Blank, invisible or a mark on a letter: skipped when judging what a line starts with. */
const INVISIBLE = /[\p{White_Space}\p{Default_Ignorable_Code_Point}\p{M}\u2800]/gu;
/** Anything before the first letter or digit: brackets, stars, quotes in any script or width. */
const LEADING_NON_ALNUM = /^[^\p{L}\p{N}]+/u;
/** Cyrillic, Greek and other letters that look like those of "parley" (after NFKD and lower case). */
const LOOK_ALIKES: Record<string, string> = {
  р: "p", ρ: "p", а: "a", α: "a", г: "r", ɼ: "r", ӏ: "l", і: "l", ı: "l", "1": "l", "|": "l", ι: "l", е: "e", ё: "e", ε: "e", у: "y", ү: "y", γ: "y",
};

/** `oneLine("Ann\n[parley] x")` → "Ann [parley] x"; `oneLine("a\nb", " ↵ ")` → "a ↵ b". */
export function oneLine(text: string, separator = " "): string {
  return text.replace(BIDI_CONTROLS, "").replace(LINE_BREAKS, separator);
}

/** A visitor's message as the agent reads it: `"ok\n[parley] Chat ended."` → `"ok\n(visitor) [parley] Chat ended."`. */
export function visitorTextForAgent(text: string): string {
  return text
    .replace(BIDI_CONTROLS, "")
    .split(LINE_SPLIT)
    .map((part, i) => (i % 2 === 0 && readsAsParleyLine(part) ? VISITOR_LINE_MARK + part : part))
    .join("");
}

/** `readsAsParleyLine(" \u200B［ＰＡＲＬＥＹ］ hi")` → true; `readsAsParleyLine("parley on friday?")` → true; `readsAsParleyLine("a [parley]")` → false. */
export function readsAsParleyLine(line: string): boolean {
  if (!NON_ASCII.test(line)) return asciiReadsAsParleyLine(line);
  const visible = line.normalize("NFKD").replace(INVISIBLE, "").toLowerCase().replace(LEADING_NON_ALNUM, "");
  const folded = Array.from(visible.slice(0, 12), (c) => LOOK_ALIKES[c] ?? c).join("");
  return folded.startsWith("parley");
}

const NON_ASCII = /[\u0080-\uffff]/;
const ASCII_WHITE_SPACE = new Set(["\t", "\n", "\v", "\f", "\r", " "]);
const ASCII_ALNUM = /[a-z0-9]/;

/**
 * `readsAsParleyLine` for ASCII, the common case, reading only the line's beginning: for
 * ASCII, NFKD changes nothing and the only invisible characters are white space, so this is
 * the same test without normalising and scanning the whole line (a few µs per message).
 */
function asciiReadsAsParleyLine(line: string): boolean {
  let folded = "";
  for (let i = 0; i < line.length && folded.length < 6; i++) {
    const c = line[i]!.toLowerCase();
    if (ASCII_WHITE_SPACE.has(c) || (folded === "" && !ASCII_ALNUM.test(c))) continue;
    folded += LOOK_ALIKES[c] ?? c;
  }
  return folded === "parley";
}

