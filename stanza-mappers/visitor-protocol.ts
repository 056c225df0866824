// The visitor WebSocket protocol (CONTRACT §4): frame shapes in both directions.

export type MessageAuthor = "visitor" | "agent" | "system";
export type ChatState = "composing" | "paused";

export type ClientFrame =
  | { type: "message"; id: string; text: string }
  | { type: "typing"; state: ChatState }
  | { type: "page"; url: string; title: string }
  | { type: "identify"; name?: string; email?: string }
  | { type: "ping" };

export interface MessageFrame {
  type: "message";
  messageId: string;
  from: MessageAuthor;
  name: string;
  text: string;
  ts: number;
  id?: string;
}

/** The contract's codes, plus `unavailable` (store down: nothing was stored) and `blocked` (see !block). */
export type ErrorCode = "bad_frame" | "invalid" | "too_large" | "rate_limited" | "unavailable" | "blocked";

export type ServerFrame =
  | {
      type: "welcome";
      visitorId: string;
      token: string;
      resumed: boolean;
      agentsOnline: boolean;
      agent: { name: string } | null;
      history: MessageFrame[];
      /** The site's welcome text, when it has one (an addition to CONTRACT §4). */
      welcome?: string;
    }
  | { type: "ack"; id: string; messageId: string; ts: number }
  | MessageFrame
  | { type: "typing"; state: ChatState; name: string }
  | { type: "agent"; state: "joined" | "left"; name: string }
  | { type: "queue"; position: number }
  | { type: "availability"; agentsOnline: boolean }
  | { type: "ended" }
  | { type: "error"; code: ErrorCode; message: string; id?: string }
  | { type: "pong" };

/** Frames larger than this get `too_large` and close 1009 (CONTRACT §4). */
export const MAX_FRAME_BYTES = 16 * 1024;
export const MAX_TEXT_CHARS = 4000;
export const MAX_CLIENT_ID_CHARS = 64;

/**
 * Close code of a socket whose site was deleted: nothing on it will ever be served again,
 * so a client should stop reconnecting. An application code (4000–4999, RFC 6455 §7.4.2)
 * because 1008 also closes a flooding socket, whose visitor may come back. Beyond the
 * contract, which names no close code for this; the widget keeps its own copy.
 */
export const SITE_GONE_CLOSE_CODE = 4404;
