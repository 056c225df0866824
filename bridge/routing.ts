import type { AgentPresence } from "../stanza-mappers/presence-to-agent-state.js";

// Routing decision (CONTRACT §5), pure: the available agent with the fewest active chats
// below the site's cap; ties go to the one assigned least recently, then by JID so that
// every process makes the same choice from the same data.

export interface AgentLoad {
  jid: string;
  presence: AgentPresence;
  activeChats: number;
  lastAssignedAt: number; // 0 = never
}

export type RouteDecision = { kind: "assign"; agentJid: string } | { kind: "queue" } | { kind: "offline" };

export function chooseAgent(agents: readonly AgentLoad[], maxChatsPerAgent: number): RouteDecision {
  const available = agents.filter((a) => a.presence === "available");
  if (available.length === 0) return { kind: "offline" };
  const withRoom = available.filter((a) => a.activeChats < maxChatsPerAgent);
  if (withRoom.length === 0) return { kind: "queue" };
  withRoom.sort(
    (a, b) => a.activeChats - b.activeChats || a.lastAssignedAt - b.lastAssignedAt || (a.jid < b.jid ? -1 : a.jid > b.jid ? 1 : 0),
  );
  return { kind: "assign", agentJid: withRoom[0]!.jid };
}
