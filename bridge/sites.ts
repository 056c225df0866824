import { deskJid } from "../stanza-mappers/addressing.js";
import type { Logger } from "./logger.js";
import type { PresenceService } from "./presence.js";
import type { Rosters } from "./rosters.js";
import { KEEP_SECRET, type SiteBody } from "./site-schema.js";
import { readSitesFile } from "./sites-file.js";
import type { Agent, Site, Store } from "./store/types.js";

/**
 * Sites and their agents. Adding an agent puts the site's desk contact in their roster
 * (so Parley learns their presence) and probes their current presence.
 */
export interface SiteDeps {
  store: Store;
  domain: string;
  rosters: Rosters;
  presence: PresenceService;
  now(): number;
  logger: Logger;
  /** A site's settings changed (e.g. a higher cap): queued chats may now find an agent. */
  onSiteChanged?(site: Site): Promise<void>;
  /** The site is gone from the store: its open chats end. */
  onSiteDeleted?(site: Site): Promise<void>;
  /** The agent is no longer one of the site's: their chats there move to another agent. */
  onAgentRemoved?(site: Site, agentJid: string): Promise<void>;
}

/** What ending a leftover chat of a deleted site needs of it: its id (its name for the roster item being removed). */
export function deletedSite(siteId: string): Site {
  return { id: siteId, name: siteId, origins: [], maxChatsPerAgent: 0, createdAt: 0, updatedAt: 0 };
}

export class SiteService {
  private readonly log: Logger;

  constructor(private readonly deps: SiteDeps) {
    this.log = deps.logger.child({ module: "sites" });
  }

  async putSite(siteId: string, body: SiteBody): Promise<{ site: Site; created: boolean }> {
    const { store } = this.deps;
    const existing = await store.getSite(siteId);
    const now = this.deps.now();
    const site: Site = {
      id: siteId,
      name: body.name,
      origins: body.origins ?? [],
      maxChatsPerAgent: body.maxChatsPerAgent ?? 3,
      createdAt: existing?.createdAt ?? now,
      updatedAt: now,
    };
    if (body.answerTimeoutSeconds !== undefined) site.answerTimeoutSeconds = body.answerTimeoutSeconds;
    if (body.welcome !== undefined) site.welcome = body.welcome;
    if (body.offlineMessage !== undefined) site.offlineMessage = body.offlineMessage;
    if (body.webhookUrl !== undefined) site.webhookUrl = body.webhookUrl;
    const webhookSecret = body.webhookSecret === KEEP_SECRET ? existing?.webhookSecret : body.webhookSecret;
    if (webhookSecret) site.webhookSecret = webhookSecret;
    await store.putSite(site);
    if (existing && existing.name !== site.name) {
      // The desk's roster name and group follow the site's name.
      for (const agent of await store.listAgents(siteId)) await this.addDesk(site, agent.jid);
    }
    this.log.info({ siteId, created: !existing }, "site saved");
    if (existing) await this.deps.onSiteChanged?.(site);
    return { site, created: !existing };
  }

  /**
   * Deletes the site first, so that no visitor connects or starts a chat while the rest
   * happens (a connected visitor's next frame is refused), then ends its open chats and
   * takes the desk contact out of every agent's roster. Transcripts stay until retention.
   */
  async deleteSite(siteId: string): Promise<boolean> {
    const { store } = this.deps;
    const site = await store.getSite(siteId);
    if (!site) return false;
    const agents = await store.listAgents(siteId);
    if (!(await store.deleteSite(siteId))) return false; // another request was first
    this.log.info({ siteId }, "site deleted");
    await this.deps.onSiteDeleted?.(site);
    for (const agent of agents) await this.removeDesk(site, agent.jid);
    return true;
  }

  async putAgent(site: Site, jid: string, name: string | undefined): Promise<{ agent: Agent; created: boolean }> {
    const existing = (await this.deps.store.listAgents(site.id)).find((a) => a.jid === jid);
    const agent: Agent = { jid, addedAt: existing?.addedAt ?? this.deps.now() };
    if (name !== undefined) agent.name = name;
    await this.deps.store.putAgent(site.id, agent);
    // Like "site saved": who can answer a site's visitors is worth a line in the log.
    this.log.info({ siteId: site.id, agentJid: jid, created: !existing }, "agent saved");
    await this.addDesk(site, jid);
    return { agent, created: !existing };
  }

  async removeAgent(site: Site, jid: string): Promise<boolean> {
    const removed = await this.deps.store.removeAgent(site.id, jid);
    if (!removed) return false;
    this.log.info({ siteId: site.id, agentJid: jid }, "agent removed");
    await this.removeDesk(site, jid);
    await this.deps.onAgentRemoved?.(site, jid);
    return true;
  }

  /** Applies PARLEY_SITES_FILE: creates or updates each site and agent listed (idempotent). */
  async applySitesFile(path: string): Promise<number> {
    const file = await readSitesFile(path);
    for (const { id, agents, ...body } of file.sites) {
      const { site } = await this.putSite(id, body);
      for (const entry of agents ?? []) {
        const agent = typeof entry === "string" ? { jid: entry, name: undefined } : entry;
        await this.putAgent(site, agent.jid, agent.name);
      }
    }
    return file.sites.length;
  }

  /** After (re)connecting to ejabberd: announce every desk and learn every agent's presence. */
  async announceDesks(): Promise<void> {
    const sitesOfAgent = new Map<string, string[]>();
    for (const site of await this.deps.store.listSites()) {
      for (const agent of await this.deps.store.listAgents(site.id)) {
        await this.deps.presence.sendDeskPresence(site, agent.jid);
        const siteIds = sitesOfAgent.get(agent.jid);
        if (siteIds) siteIds.push(site.id);
        else sitesOfAgent.set(agent.jid, [site.id]);
      }
    }
    for (const [agentJid, siteIds] of sitesOfAgent) await this.deps.presence.probeAndConfirm(agentJid, siteIds);
  }

  /** Puts the desk in the agent's roster, subscription both (also for an agent who removed it), and learns their presence. */
  async addDesk(site: Site, agentJid: string): Promise<void> {
    await this.deps.rosters.upsert(agentJid, { jid: deskJid(site.id, this.deps.domain), name: site.name, group: site.name });
    await this.deps.presence.sendDeskPresence(site, agentJid);
    this.deps.presence.probeAgent(site.id, agentJid);
  }

  private async removeDesk(site: Site, agentJid: string): Promise<void> {
    await this.deps.rosters.remove(agentJid, { jid: deskJid(site.id, this.deps.domain), name: site.name, group: site.name });
  }
}
