import type { MessageFrame } from "../../stanza-mappers/visitor-protocol.js";
import type { StoredMessage } from "./types.js";

/**
 * A stored message as visitors see it. The Redis store's append scripts build the same
 * frame in Lua (redis-scripts.ts, `messageFrameJson`) so that they can publish it in the
 * step that stores it; the store contract test checks that the two agree.
 */
export function messageFrame(message: StoredMessage): MessageFrame {
  const frame: MessageFrame = {
    type: "message",
    messageId: message.id,
    from: message.from === "note" ? "system" : message.from,
    name: message.name,
    text: message.text,
    ts: message.ts,
  };
  if (message.clientId) frame.id = message.clientId;
  return frame;
}
