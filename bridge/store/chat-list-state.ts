import type { Chat } from "./types.js";

/** `active` lists chats being handled; `queued` lists chats waiting for an agent (queued or offline). */
export function chatMatchesListState(chat: Chat, state: "active" | "queued" | "ended"): boolean {
  switch (state) {
    case "active":
      return chat.state === "active" || chat.state === "new";
    case "queued":
      return chat.state === "queued" || chat.state === "offline";
    case "ended":
      return chat.state === "ended";
  }
}
