import { visitorDisplayName } from "./names.js";
import type { Chat, Store } from "./store/types.js";

/** The transcript object of CONTRACT §3 (also the `chat` of webhook bodies). */
export async function chatTranscript(store: Store, chat: Chat, withMessages: boolean) {
  const visitor = await store.getVisitor(chat.visitorId);
  const messages = withMessages ? await store.transcript(chat.id) : undefined;
  return {
    id: chat.id,
    siteId: chat.siteId,
    state: chat.state === "ended" ? "ended" : chat.state === "queued" || chat.state === "offline" ? "queued" : "active",
    offline: chat.state === "offline",
    visitor: { id: chat.visitorId, jid: visitor?.jid ?? null, name: visitor ? visitorDisplayName(visitor) : null, email: visitor?.email ?? null },
    agent: chat.agentJid ? { jid: chat.agentJid, name: chat.agentName ?? chat.agentJid } : null,
    startedAt: chat.startedAt,
    endedAt: chat.endedAt ?? null,
    ...(messages ? { messages: messages.map((m) => ({ id: m.id, from: m.from, name: m.name, text: m.text, ts: m.ts })) } : {}),
  };
}
