// The widget's conversation state machine. Pure: server frames and local actions go in,
// the next view state and the frames to send come out. No DOM, no timers, no clock —
// time arrives inside events, so every behaviour is testable in plain Node.

import { identifyFrame, pageFrame, type Author, type ClientFrame, type MessageFrame, type ServerFrame } from "./protocol.js";

export type Delivery = "pending" | "delivered" | "failed";

/** How long "… is typing" stays without news (a `typing` frame) before it is dropped. */
export const TYPING_STALE_MS = 30_000;

export interface Line {
  /** Stable across updates so the view can patch a line in place (e.g. its tick). */
  key: string;
  kind: "message" | "notice";
  from: Author;
  name: string;
  text: string;
  ts: number;
  /** Client id of a visitor message, from this tab or another one. */
  id?: string;
  messageId?: string;
  /** Only for visitor messages: "delivered" once the bridge has stored it (`ack`). */
  delivery?: Delivery;
  /** A failed message the bridge may take later (it was unavailable): sent again on the next welcome. */
  resend?: boolean;
}

export interface Identity {
  name: string;
  email: string;
}

export interface SessionState {
  /**
   * "online" only between `welcome` and the socket closing: frames may be sent.
   * "unavailable": the bridge keeps refusing the connection or said the site is gone.
   */
  link: "connecting" | "online" | "reconnecting" | "unavailable";
  token: string | null;
  /** Unknown (null) until the first `welcome`. */
  agentsOnline: boolean | null;
  agent: string | null;
  agentTyping: string | null;
  queuePosition: number | null;
  lines: Line[];
  expanded: boolean;
  unread: number;
  identity: Identity | null;
  page: { url: string; title: string } | null;
  /** The newest message the previous page had shown (from storage), until this one shows any. */
  seenBefore: string | null;
  /** The site's greeting, as its admin set it (from `welcome`). */
  siteWelcome: string | null;
  /** Feeds keys of local notices, which have no server id. */
  seq: number;
}

/** What survives a reload (see storage.ts). */
export interface Persisted {
  token: string | null;
  pending: { id: string; text: string; ts: number }[];
  identity: Identity | null;
  expanded: boolean;
  /** The badge's count, and the newest message shown: what arrives after it while collapsed is unread. */
  unread?: number;
  seen?: string | null;
}

export type SessionEvent =
  | { type: "disconnected" }
  /** The connection rests or stopped (see backoff.ts): chat is not possible for now. */
  | { type: "unavailable" }
  | { type: "frame"; frame: ServerFrame }
  | { type: "send"; id: string; text: string; ts: number }
  | { type: "identify"; name: string; email: string }
  | { type: "retry"; id: string }
  | { type: "page"; url: string; title: string }
  | { type: "typing"; state: "composing" | "paused" }
  | { type: "toggle"; expanded: boolean }
  /** No typing news from the agent for TYPING_STALE_MS: their client may have dropped without "paused". */
  | { type: "typing-stale" };

export interface Step {
  state: SessionState;
  out: ClientFrame[];
}

export function initialState(saved: Persisted | null): SessionState {
  return {
    link: "connecting",
    token: saved ? saved.token : null,
    agentsOnline: null,
    agent: null,
    agentTyping: null,
    queuePosition: null,
    // Messages typed before a reload but never acknowledged are shown and resent.
    lines: saved ? saved.pending.map((p) => ownLine(p.id, p.text, p.ts)) : [],
    expanded: saved ? saved.expanded : false,
    unread: saved && !saved.expanded ? (saved.unread ?? 0) : 0,
    identity: saved ? saved.identity : null,
    page: null,
    seenBefore: saved?.seen ?? null,
    siteWelcome: null,
    seq: 0,
  };
}

export function persisted(s: SessionState): Persisted {
  return {
    token: s.token,
    pending: s.lines.filter((l) => isPending(l) || l.resend === true).map((l) => ({ id: l.id as string, text: l.text, ts: l.ts })),
    identity: s.identity,
    expanded: s.expanded,
    unread: s.unread,
    seen: newestShown(s),
  };
}

/**
 * What to store, given what another tab of the same site stored meanwhile (one record per
 * site, so the last write wins): that tab's unsent messages are kept unless this tab has
 * seen them (stored, they come back to every tab with their id). Otherwise closing a tab
 * right after typing could lose its message to the other tab's next write. Likewise its
 * token, while this tab has none yet.
 */
export function withOtherTabs(own: Persisted, stored: Persisted | null, s: SessionState): Persisted {
  // A tab still waiting for its first welcome has no token: it must not erase the one
  // another tab stored, which it is about to resume (see first-visit.ts).
  const token = own.token ?? stored?.token ?? null;
  const theirs = (stored?.pending ?? []).filter((p) => !s.lines.some((l) => l.id === p.id));
  return { ...own, token, pending: theirs.length === 0 ? own.pending : [...own.pending, ...theirs].sort((a, b) => a.ts - b.ts) };
}

/**
 * The offline form (name, email, message) replaces the composer while nobody can answer
 * and the visitor has not yet left a message; afterwards they see their conversation.
 */
export function showsOfflineForm(s: SessionState): boolean {
  return s.agentsOnline === false && s.agent === null && !s.lines.some((l) => l.from === "visitor");
}

export function step(s: SessionState, e: SessionEvent): Step {
  switch (e.type) {
    case "disconnected":
      // A typing indicator from before the drop would otherwise stay on screen forever.
      return { state: { ...s, link: "reconnecting", agentTyping: null }, out: [] };
    case "unavailable":
      return { state: { ...s, link: "unavailable", agentTyping: null }, out: [] };
    case "frame":
      return onFrame(s, e.frame);
    case "send": {
      const line = ownLine(e.id, e.text, e.ts);
      return { state: { ...s, lines: [...s.lines, line] }, out: online(s, [messageOut(line)]) };
    }
    case "identify": {
      const identity = { name: e.name, email: e.email };
      return { state: { ...s, identity }, out: online(s, [identifyFrame(e.name, e.email)]) };
    }
    case "retry": {
      const line = s.lines.find((l) => l.id === e.id && l.delivery === "failed");
      if (!line) return { state: s, out: [] };
      const retried = retrying(line);
      return { state: { ...s, lines: replace(s.lines, line, retried) }, out: online(s, [messageOut(retried)]) };
    }
    case "page": {
      const same = s.page !== null && s.page.url === e.url && s.page.title === e.title;
      if (same) return { state: s, out: [] };
      return { state: { ...s, page: { url: e.url, title: e.title } }, out: online(s, [pageFrame(e.url, e.title)]) };
    }
    case "typing":
      // Typing is ephemeral: dropped rather than queued while offline.
      return { state: s, out: online(s, [{ type: "typing", state: e.state }]) };
    case "toggle":
      return { state: { ...s, expanded: e.expanded, unread: e.expanded ? 0 : s.unread }, out: [] };
    case "typing-stale":
      return { state: { ...s, agentTyping: null }, out: [] };
  }
}

function onFrame(s: SessionState, f: ServerFrame): Step {
  switch (f.type) {
    case "welcome":
      return onWelcome(s, f);
    case "ack":
      return { state: { ...s, lines: confirm(s.lines, f.id, f.messageId, f.ts) }, out: [] };
    case "message":
      return { state: onMessage(s, f), out: [] };
    case "typing":
      return { state: { ...s, agentTyping: f.state === "composing" ? f.name : null }, out: [] };
    case "agent": {
      const joined = f.state === "joined";
      const next = {
        ...s,
        agent: joined ? f.name : s.agent === f.name ? null : s.agent,
        agentTyping: null,
        queuePosition: joined ? null : s.queuePosition,
      };
      return { state: notice(next, joined ? `${f.name} joined the chat` : `${f.name} left the chat`), out: [] };
    }
    case "queue":
      return { state: { ...s, queuePosition: f.position > 0 ? f.position : null }, out: [] };
    case "availability":
      return { state: { ...s, agentsOnline: f.agentsOnline }, out: [] };
    case "ended": {
      const next = { ...s, agent: null, agentTyping: null, queuePosition: null };
      return { state: notice(next, "The chat has ended. Write again any time."), out: [] };
    }
    case "error": {
      // An error naming a message means the bridge did not store it. Shown as not sent (the
      // visitor may retry); one it may take later is also sent again on the next welcome
      // and kept over a reload; an invalid one would be refused again, so it is not.
      const line = f.id === undefined ? undefined : s.lines.find((l) => l.id === f.id && l.delivery === "pending");
      if (!line) return { state: s, out: [] };
      const failed: Line = { ...line, delivery: "failed" };
      if (RESENDABLE_ERRORS.has(f.code)) failed.resend = true;
      return { state: { ...s, lines: replace(s.lines, line, failed) }, out: [] };
    }
    case "pong":
      return { state: s, out: [] };
  }
}

function onWelcome(s: SessionState, f: Extract<ServerFrame, { type: "welcome" }>): Step {
  // A resumed session keeps what is on screen and adds only what was missed while away;
  // a new one (first visit, or the token was not recognised) starts from the history.
  // Messages not yet acknowledged are the newest: they go after the history, unless the
  // history holds them (stored before a drop), and then they take their place in it.
  const kept = (f.resumed ? s.lines : s.lines.filter((l) => isPending(l) || l.resend === true)).map((l) => (l.resend ? retrying(l) : l));
  const stored = new Set(f.history.map((m) => m.id).filter((id) => id !== undefined));
  let lines = kept.filter((l) => !isPending(l));
  for (const m of f.history) lines = addMessage(lines, m);
  lines = [...lines, ...kept.filter((l) => isPending(l) && !stored.has(l.id as string))];
  // What others wrote while this tab was away (a reconnect, or the next page) is unread too.
  const seen = newestShown(s);
  const missed = s.expanded || seen === null ? 0 : f.history.filter((m) => m.from !== "visitor" && !kept.some((l) => l.messageId === m.messageId) && isNewer(m.messageId, seen)).length;
  const state: SessionState = {
    ...s,
    link: "online",
    token: f.token,
    agentsOnline: f.agentsOnline,
    agent: f.agent ? f.agent.name : null,
    agentTyping: null,
    // A chat still waiting gets a `queue` frame right after the welcome; any other has none.
    queuePosition: null,
    siteWelcome: f.welcome ?? null,
    unread: s.unread + missed,
    lines,
  };
  // Resent with their original ids: the bridge acknowledges a duplicate id again
  // without storing it twice, so a message caught mid-flight by a drop is not doubled.
  const out: ClientFrame[] = [];
  if (state.page) out.push(pageFrame(state.page.url, state.page.title));
  if (state.identity) out.push(identifyFrame(state.identity.name, state.identity.email));
  for (const l of lines) if (isPending(l)) out.push(messageOut(l));
  return { state, out };
}

function onMessage(s: SessionState, m: MessageFrame): SessionState {
  const lines = addMessage(s.lines, m);
  if (lines === s.lines) return s;
  const fromOthers = m.from !== "visitor";
  return {
    ...s,
    lines,
    agentTyping: m.from === "agent" ? null : s.agentTyping,
    unread: fromOthers && !s.expanded ? s.unread + 1 : s.unread,
  };
}

/**
 * Adds a server message unless it is already shown. The visitor's own messages come back
 * (from history, or echoed from another tab) carrying the client `id`: one matching a
 * local line confirms that line instead of duplicating it.
 */
function addMessage(lines: Line[], m: MessageFrame): Line[] {
  if (lines.some((l) => l.messageId === m.messageId)) return lines;
  if (m.id !== undefined && lines.some((l) => l.id === m.id)) return confirm(lines, m.id, m.messageId, m.ts);
  const line: Line = { key: "m:" + m.messageId, kind: "message", from: m.from, name: m.name, text: m.text, ts: m.ts, messageId: m.messageId };
  if (m.id !== undefined) line.id = m.id;
  if (m.from === "visitor") line.delivery = "delivered";
  return [...lines, line];
}

function confirm(lines: Line[], id: string, messageId: string, ts: number): Line[] {
  const line = lines.find((l) => l.id === id);
  if (!line || line.delivery === "delivered") return lines;
  return replace(lines, line, { ...line, delivery: "delivered", messageId, ts });
}

function notice(s: SessionState, text: string): SessionState {
  const line: Line = { key: "n:" + s.seq, kind: "notice", from: "system", name: "", text, ts: 0 };
  return { ...s, seq: s.seq + 1, lines: [...s.lines, line] };
}

function ownLine(id: string, text: string, ts: number): Line {
  return { key: "c:" + id, kind: "message", from: "visitor", name: "", text, ts, id, delivery: "pending" };
}

/** The id of the newest server message on screen, or, before any, the previous page's. */
function newestShown(s: SessionState): string | null {
  let newest: string | null = null;
  for (const l of s.lines) if (l.messageId !== undefined && (newest === null || isNewer(l.messageId, newest))) newest = l.messageId;
  return newest ?? s.seenBefore;
}

/** Message ids are `<ms>-<sequence>` (Redis stream ids): compared as two numbers. */
function isNewer(a: string, b: string): boolean {
  const [am = 0, as = 0] = a.split("-").map(Number);
  const [bm = 0, bs = 0] = b.split("-").map(Number);
  return am !== bm ? am > bm : as > bs;
}

/**
 * Refusals that say nothing about the message: the bridge could not store it then (its
 * store was unreachable). Rate-limited ones are left to the visitor: resending a flood
 * would only be refused again.
 */
const RESENDABLE_ERRORS = new Set(["unavailable"]);

/** A failed line sent again: pending, and no longer marked for resending. */
function retrying(line: Line): Line {
  const { resend: _resend, ...rest } = line;
  return { ...rest, delivery: "pending" };
}

const isPending = (l: Line) => l.delivery === "pending";
const messageOut = (l: Line): ClientFrame => ({ type: "message", id: l.id as string, text: l.text });
const online = (s: SessionState, frames: ClientFrame[]) => (s.link === "online" ? frames : []);
const replace = (lines: Line[], old: Line, next: Line) => lines.map((l) => (l === old ? next : l));
