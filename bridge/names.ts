import { oneLine } from "../stanza-mappers/agent-facing-text.js";
import type { Agent, Visitor } from "./store/types.js";

// Display names, in one place so that roster items, frames and transcripts agree.

/** One line: the name is the visitor's to choose, and it appears inside Parley's own lines (`!info`, `!queue`, notices). */
export function visitorDisplayName(visitor: Pick<Visitor, "name" | "number">): string {
  return (visitor.name && oneLine(visitor.name).trim()) || `Visitor ${String(visitor.number).padStart(4, "0")}`;
}

export function agentDisplayName(agent: Pick<Agent, "jid" | "name"> | undefined, jid: string): string {
  return agent?.name?.trim() || jid.split("@")[0] || jid;
}
