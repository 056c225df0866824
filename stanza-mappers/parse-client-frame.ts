import { z } from "zod";
import { atMostCharacters } from "./characters.js";
import { isXmlSafe, XML_UNSAFE_MESSAGE } from "./xml-safe-text.js";
import { MAX_CLIENT_ID_CHARS, MAX_FRAME_BYTES, MAX_TEXT_CHARS, type ClientFrame, type ErrorCode } from "./visitor-protocol.js";

// Validation of visitor frames (CONTRACT §4). Pure: bytes in, a frame or an error out.
// Expected bad input is a value, never an exception.

export type ParseResult =
  | { ok: true; frame: ClientFrame }
  | { ok: false; code: ErrorCode; message: string; id?: string; close?: 1009 };

const text = (max: number) =>
  z
    .string()
    .refine((s) => atMostCharacters(s, max), { message: `at most ${max} characters` })
    // Control characters other than tab and newlines have no place in chat text and are a
    // classic way to confuse clients; most are not allowed in XML at all.
    .refine(isXmlSafe, { message: XML_UNSAFE_MESSAGE });

const schema = z.discriminatedUnion("type", [
  z.strictObject({
    type: z.literal("message"),
    id: text(MAX_CLIENT_ID_CHARS).refine((s) => s.length > 0, { message: "must not be empty" }),
    text: text(MAX_TEXT_CHARS).refine((s) => s.trim().length > 0, { message: "must not be empty" }),
  }),
  z.strictObject({ type: z.literal("typing"), state: z.enum(["composing", "paused"]) }),
  // A URL that is not a web page's is kept out (see isWebUrl), not refused: the widget on a
  // page opened from a file or about:blank still tells the agent the page's title.
  z.strictObject({ type: z.literal("page"), url: text(2048).transform((url) => (isWebUrl(url) ? url : "")), title: text(512).default("") }),
  z.strictObject({
    type: z.literal("identify"),
    name: text(128).optional(),
    // An empty email means "none given" (forms send the field empty), not a bad address.
    // The rule is the browser's own for <input type="email">: whatever the widget's form
    // accepts, the bridge accepts (a stricter one refused the whole frame, name included).
    email: z.union([z.literal(""), z.email({ pattern: z.regexes.html5Email }).max(254)]).optional(),
  }),
  z.strictObject({ type: z.literal("ping") }),
]);

/**
 * The page a visitor is on is a web page. Anything else (`javascript:`, `data:`) would only
 * ever be an attack on whoever shows it as a link: an agent's client, an admin dashboard
 * reading `page` from the API.
 */
export function isWebUrl(url: string): boolean {
  return URL.canParse(url) && /^https?:$/.test(new URL(url).protocol) && /^https?:\/\//i.test(url.trimStart());
}

const KNOWN_TYPES = new Set(["message", "typing", "page", "identify", "ping"]);
const utf8 = new TextDecoder("utf-8", { fatal: true });

export function parseClientFrame(data: Uint8Array | string, isBinary: boolean): ParseResult {
  const size = typeof data === "string" ? Buffer.byteLength(data) : data.byteLength;
  if (size > MAX_FRAME_BYTES) {
    return { ok: false, code: "too_large", message: `frames are limited to ${MAX_FRAME_BYTES} bytes`, close: 1009 };
  }
  if (isBinary) return { ok: false, code: "bad_frame", message: "binary frames are not accepted; send JSON text" };

  let raw: string;
  try {
    raw = typeof data === "string" ? data : utf8.decode(data);
  } catch {
    return { ok: false, code: "bad_frame", message: "frame is not valid UTF-8" };
  }

  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, code: "bad_frame", message: "frame is not valid JSON" };
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    return { ok: false, code: "bad_frame", message: "frame must be a JSON object" };
  }

  const clientId = typeof (json as { id?: unknown }).id === "string" ? ((json as { id: string }).id.slice(0, MAX_CLIENT_ID_CHARS)) : undefined;
  const type = (json as { type?: unknown }).type;
  if (typeof type !== "string" || !KNOWN_TYPES.has(type)) {
    return withId({ ok: false, code: "invalid", message: `unknown frame type ${describeType(type)}` }, clientId);
  }

  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.join(".") || "frame";
    return withId({ ok: false, code: "invalid", message: `${field}: ${issue?.message ?? "invalid"}` }, clientId);
  }
  return { ok: true, frame: parsed.data as ClientFrame };
}

/**
 * The frame's `type` as the error names it: a string (cut short), else only what kind of
 * value it is. Never the value itself: serializing an array nested 8,000 deep, which fits
 * in a 16 KiB frame, overflows the stack.
 */
function describeType(type: unknown): string {
  if (typeof type === "string") return JSON.stringify(type.slice(0, 40));
  if (type === undefined) return "undefined";
  if (type === null) return "null";
  return Array.isArray(type) ? "(an array)" : typeof type === "object" ? "(an object)" : `(a ${typeof type})`;
}

function withId(result: Extract<ParseResult, { ok: false }>, id: string | undefined): ParseResult {
  return id === undefined ? result : { ...result, id };
}
