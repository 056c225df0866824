import type { Agent, Visitor } from "./store/types.js";

// Display names, in one place so that roster items, frames and transcripts agree.

export function visitorDisplayName(visitor: Pick<Visitor, "name" | "number">): string {
  return visitor.name?.trim() || `Visitor ${String(visitor.number).padStart(4, "0")}`;
}

export function agentDisplayName(agent: Pick<Agent, "jid" | "name"> | undefined, jid: string): string {
  return agent?.name?.trim() || jid.split("@")[0] || jid;
}
