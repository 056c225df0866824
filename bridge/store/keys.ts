// Every Redis key and channel Parley uses, in one place. Keys that one operation
// touches together share a hash tag ({s:…} per site, {v:…} per visitor, {a:…} per
// agent) so that Lua scripts and multi-key commands work on Redis Cluster.

const P = "parley";

export const keys = {
  sites: () => `${P}:sites`,
  chatStateCounts: () => `${P}:chat-state-counts`,
  timers: () => `${P}:timers`,
  webhookEvent: (id: string) => `${P}:webhook-event:${id}`,
  processes: () => `${P}:processes`,
  outbox: (processId: string) => `${P}:outbox:${processId}`,
  site: (siteId: string) => `${P}:{s:${siteId}}:site`,
  agents: (siteId: string) => `${P}:{s:${siteId}}:agents`,
  visitorNumber: (siteId: string) => `${P}:{s:${siteId}}:vnum`,
  online: (siteId: string) => `${P}:{s:${siteId}}:online`,
  siteChats: (siteId: string) => `${P}:{s:${siteId}}:chats`,
  /** The site's chats not ended yet, by start time: listed whatever the site's history. */
  openChats: (siteId: string) => `${P}:{s:${siteId}}:chats:open`,
  agentChats: (siteId: string, agentJid: string) => `${P}:{s:${siteId}}:load:${agentJid}`,
  lastAssigned: (siteId: string) => `${P}:{s:${siteId}}:last-assigned`,
  loadedAgents: (siteId: string) => `${P}:{s:${siteId}}:loaded`,
  queue: (siteId: string) => `${P}:{s:${siteId}}:queue`,

  agentSites: (jid: string) => `${P}:{a:${jid}}:sites`,
  agentResources: (jid: string) => `${P}:{a:${jid}}:resources`,
  /** Counts the probes of the agent's presence (see dropResourcesUnheardSince). */
  agentProbeRound: (jid: string) => `${P}:{a:${jid}}:probe-round`,
  agentUnavailableSince: (jid: string) => `${P}:{a:${jid}}:unavailable-since`,
  agentBusy: (jid: string) => `${P}:{a:${jid}}:busy`,

  visitor: (visitorId: string) => `${P}:{v:${visitorId}}:visitor`,
  clientIds: (visitorId: string) => `${P}:{v:${visitorId}}:client-ids`,
  log: (visitorId: string) => `${P}:{v:${visitorId}}:log`,
  unrelayed: (visitorId: string) => `${P}:{v:${visitorId}}:unrelayed`,
  /** Ids of the processes holding the visitor's sockets (where frames for them go). */
  holders: (visitorId: string) => `${P}:{v:${visitorId}}:holders`,
  chat: (visitorId: string, chatId: string) => `${P}:{v:${visitorId}}:chat:${chatId}`,
  chatPrefix: (visitorId: string) => `${P}:{v:${visitorId}}:chat:`,
} as const;

export const channels = {
  site: (siteId: string) => `${P}:bus:s:${siteId}`,
  process: (processId: string) => `${P}:bus:p:${processId}`,
  processPrefix: () => `${P}:bus:p:`,
} as const;
