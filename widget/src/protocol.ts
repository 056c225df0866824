// The visitor WebSocket protocol (CONTRACT §4) as the widget sees it.
// The bridge's copy lives in stanza-mappers/visitor-protocol.ts; the widget keeps its
// own so the bundle never depends on server code, and a unit test checks the two agree.

export type Author = "visitor" | "agent" | "system";
export type ChatState = "composing" | "paused";

export const MAX_TEXT_CHARS = 4000;

/** Close code of a bridge restarting (CONTRACT §6): come back at once, to another process. */
export const SERVICE_RESTART_CLOSE_CODE = 1012;
/** Close code of a socket whose site was deleted: never come back (the bridge's SITE_GONE_CLOSE_CODE). */
export const SITE_GONE_CLOSE_CODE = 4404;
// The bridge caps page fields at these lengths and rejects longer ones as `invalid`.
const MAX_URL_CHARS = 2048;
const MAX_TITLE_CHARS = 512;
const MAX_NAME_CHARS = 128;

export type ClientFrame =
  | { type: "message"; id: string; text: string }
  | { type: "typing"; state: ChatState }
  | { type: "page"; url: string; title: string }
  | { type: "identify"; name?: string; email?: string }
  | { type: "ping" };

export interface MessageFrame {
  type: "message";
  messageId: string;
  from: Author;
  name: string;
  text: string;
  ts: number;
  id?: string;
}

export interface WelcomeFrame {
  type: "welcome";
  visitorId: string;
  token: string;
  resumed: boolean;
  agentsOnline: boolean;
  agent: { name: string } | null;
  history: MessageFrame[];
  /** The site's greeting, when its admin set one. */
  welcome?: string;
}

export type ServerFrame =
  | WelcomeFrame
  | { type: "ack"; id: string; messageId: string; ts: number }
  | MessageFrame
  | { type: "typing"; state: ChatState; name: string }
  | { type: "agent"; state: "joined" | "left"; name: string }
  | { type: "queue"; position: number }
  | { type: "availability"; agentsOnline: boolean }
  | { type: "ended" }
  // Codes are open-ended: a newer bridge may add some, and the widget only needs `id`.
  | { type: "error"; code: string; message: string; id?: string }
  | { type: "pong" };

type Json = Record<string, unknown>;
const isStr = (v: unknown): v is string => typeof v === "string";
const isNum = (v: unknown): v is number => typeof v === "number" && isFinite(v);
const isBool = (v: unknown): v is boolean => typeof v === "boolean";
const optStr = (v: unknown) => v === undefined || isStr(v);
const isAuthor = (v: unknown): v is Author => v === "visitor" || v === "agent" || v === "system";
const isChatState = (v: unknown): v is ChatState => v === "composing" || v === "paused";

function isMessage(f: Json): boolean {
  return isStr(f.messageId) && isAuthor(f.from) && isStr(f.name) && isStr(f.text) && isNum(f.ts) && optStr(f.id);
}

/**
 * Checks an incoming frame's shape. Returns null for anything malformed or of an
 * unknown type, so a newer bridge can add frames without breaking deployed widgets.
 */
export function parseServerFrame(raw: string): ServerFrame | null {
  let f: unknown;
  try {
    f = JSON.parse(raw);
  } catch {
    return null;
  }
  if (typeof f !== "object" || f === null) return null;
  const j = f as Json;
  const ok = ((): boolean => {
    switch (j.type) {
      case "welcome":
        return (
          isStr(j.visitorId) &&
          isStr(j.token) &&
          isBool(j.resumed) &&
          isBool(j.agentsOnline) &&
          (j.agent === null || (typeof j.agent === "object" && isStr((j.agent as Json).name))) &&
          Array.isArray(j.history) &&
          j.history.every((m: unknown) => typeof m === "object" && m !== null && isMessage(m as Json)) &&
          (j.welcome === undefined || isStr(j.welcome))
        );
      case "ack":
        return isStr(j.id) && isStr(j.messageId) && isNum(j.ts);
      case "message":
        return isMessage(j);
      case "typing":
        return isChatState(j.state) && isStr(j.name);
      case "agent":
        return (j.state === "joined" || j.state === "left") && isStr(j.name);
      case "queue":
        return isNum(j.position);
      case "availability":
        return isBool(j.agentsOnline);
      case "error":
        return isStr(j.code) && isStr(j.message) && optStr(j.id);
      case "ended":
      case "pong":
        return true;
      default:
        return false;
    }
  })();
  return ok ? (f as ServerFrame) : null;
}

// Control characters (other than tab and newlines) and lone surrogates are refused by
// the bridge as `invalid` because XML cannot carry them; they only arrive by pasting.
// eslint-disable-next-line no-control-regex
const UNSENDABLE = /[\u0000-\u0008\u000B\u000C\u000E-\u001F\uFFFE\uFFFF]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(^|[^\uD800-\uDBFF])[\uDC00-\uDFFF]/g;

/** Makes user input acceptable to the bridge: drops unsendable characters. */
export function cleanText(text: string): string {
  return text.replace(UNSENDABLE, "$1");
}

/** The first `max` characters (code points, as the bridge counts): never half an emoji, which it would refuse. */
function firstCharacters(text: string, max: number): string {
  return text.length <= max ? text : Array.from(text).slice(0, max).join("");
}

export function pageFrame(url: string, title: string): ClientFrame {
  return { type: "page", url: firstCharacters(url, MAX_URL_CHARS), title: firstCharacters(cleanText(title), MAX_TITLE_CHARS) };
}

/** Blank fields are left out: the bridge validates `email` and would reject "". */
export function identifyFrame(name: string, email: string): ClientFrame {
  const frame: { type: "identify"; name?: string; email?: string } = { type: "identify" };
  const n = firstCharacters(cleanText(name).trim(), MAX_NAME_CHARS);
  const e = email.trim();
  if (n) frame.name = n;
  if (e) frame.email = e;
  return frame;
}
