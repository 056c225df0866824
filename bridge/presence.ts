import type { Element } from "@xmpp/xml";
import { bareJid, deskJid, parseAddress, resourceOf } from "../stanza-mappers/addressing.js";
import { stanzaToPresenceEvent, type AgentPresence } from "../stanza-mappers/presence-to-agent-state.js";
import { noticeToStanza, pageStatus, presenceToStanza } from "../stanza-mappers/visitor-to-stanza.js";
import type { ChatService } from "./chats.js";
import { ExpiringCache } from "./expiring-cache.js";
import type { Logger } from "./logger.js";
import type { Scheduler } from "./scheduler.js";
import type { Site, Store } from "./store/types.js";

/**
 * Presence (CONTRACT §5, RFC 6121 §4):
 * - Agents' presence is read only from what they send to a desk contact (`{site}@domain`):
 *   the desk is in their roster with subscription both, so ejabberd sends it every change,
 *   including the unavailable it generates when a connection drops. Presence sent to a
 *   visitor's JID is not used: `delete_rosteritem` and server shutdowns produce
 *   unavailables there that say nothing about the agent's state.
 * - Probes to a desk or visitor JID are answered with its current presence.
 * - Presence missed while no process was connected (an agent who logged out meanwhile, or
 *   came back under another resource) is recovered on connecting: every agent is probed,
 *   and their resources that the answers do not confirm are dropped (`dropUnconfirmed`).
 * - Subscription requests from a site's agents are approved; one to a desk also puts the
 *   desk back (an agent who had removed it). An agent who stops sharing their presence
 *   with a desk is told that they get no chats of that site until they add it again.
 * - The desk's own presence carries the site's state ("2 waiting, 3 chatting").
 */
export interface PresenceDeps {
  store: Store;
  domain: string;
  send(stanza: Element): void;
  chats: ChatService;
  scheduler: Pick<Scheduler, "schedule" | "cancel">;
  agentGraceMs: number;
  /** Puts the site's desk in the agent's roster with their presence shared (SiteService). */
  restoreDesk(site: Site, agentJid: string): Promise<void>;
  now(): number;
  newId(): string;
  logger: Logger;
}

/** How long a site's "any agent online" answer is reused (welcome frames ask it for every new visitor). */
const AGENTS_ONLINE_TTL_MS = 1000;

/** At most one recheck of an agent's presence per this long (see recheckSoon). */
const RECHECK_EVERY_MS = 1000;

/**
 * How long the answers to the probes sent on connecting may take. ejabberd answers a probe
 * with each available resource's presence at once, and with nothing for an agent who is
 * offline: what is not confirmed by then is taken as gone.
 */
export const PROBE_ANSWER_WINDOW_MS = 10_000;

export class PresenceService {
  private readonly log: Logger;
  private readonly agentsOnlineCache = new ExpiringCache<boolean>({ ttlMs: AGENTS_ONLINE_TTL_MS, now: () => this.deps.now() });
  private readonly recentRechecks = new ExpiringCache<void>({ ttlMs: RECHECK_EVERY_MS, now: () => this.deps.now() });

  constructor(private readonly deps: PresenceDeps) {
    this.log = deps.logger.child({ module: "presence" });
  }

  async onPresence(stanza: Element): Promise<void> {
    const { from, to } = stanza.attrs;
    if (!from || !to) return;
    const address = parseAddress(to, this.deps.domain);
    if (address.kind !== "desk" && address.kind !== "visitor") return;
    const agentJid = bareJid(from);
    const site = await this.deps.store.getSite(address.siteId);
    if (!site) return;
    const isAgent = (await this.deps.store.listAgents(site.id)).some((a) => a.jid === agentJid);
    if (!isAgent) return; // strangers learn nothing about a site's desk or visitors

    const event = stanzaToPresenceEvent(stanza);
    switch (event.kind) {
      case "resource":
      case "resource-gone":
        if (address.kind !== "desk") return;
        await this.agentResourceChanged(agentJid, resourceOf(from), event.kind === "resource" ? event.show : null);
        if (event.kind === "resource-gone" && resourceOf(from)) this.recheckSoon(site.id, agentJid);
        return;
      case "probe":
        if (address.kind === "desk") await this.sendDeskPresence(site, agentJid);
        else await this.sendVisitorPresence(address.visitorId, agentJid);
        return;
      case "subscribe":
        this.deps.send(presenceToStanza({ from: to, to: agentJid, type: "subscribed" }));
        // An agent adding the desk (back): it must see their presence too, or they get no chats.
        if (address.kind === "desk") await this.deps.restoreDesk(site, agentJid);
        else await this.sendVisitorPresence(address.visitorId, agentJid);
        return;
      case "unsubscribed":
        if (address.kind === "desk") this.deps.send(noticeToStanza({ from: to, to: agentJid, id: this.deps.newId(), text: deskRemovedNotice(site, to) }));
        return;
      case "subscribed":
      case "unsubscribe":
      case "ignore":
        return;
    }
  }

  /**
   * After a resource of the agent went unavailable, asks ejabberd what is available now. A
   * client that logs in again under the same resource (a phone back from a dead network,
   * Conversations, the same resource each time) replaces its old session, and the old
   * session's unavailable may reach Parley after the new session's presence: it then took
   * away a resource that is online, and the agent's chats would move after the grace
   * period. The probe's answer puts it back. Once per agent a second: an unavailable comes
   * to each desk the agent shares presence with.
   */
  private recheckSoon(siteId: string, agentJid: string): void {
    void this.recentRechecks.get(agentJid, async () => this.probeAgent(siteId, agentJid));
  }

  /** Asks ejabberd for an agent's current presence (answered to the desk JID). */
  probeAgent(siteId: string, agentJid: string): void {
    this.deps.send(presenceToStanza({ from: deskJid(siteId, this.deps.domain), to: agentJid, type: "probe" }));
  }

  /**
   * Probes the agent on behalf of every site they belong to after (re)connecting, and drops
   * after the answer window the resources that no answer confirmed. The probe round, not a
   * clock, tells confirmed from stale: answers may be handled by any process.
   */
  async probeAndConfirm(agentJid: string, siteIds: Iterable<string>): Promise<void> {
    const round = await this.deps.store.beginProbeRound(agentJid);
    for (const siteId of siteIds) this.probeAgent(siteId, agentJid);
    await this.deps.scheduler.schedule("probe-answers", `${agentJid}|${round}`, this.deps.now() + PROBE_ANSWER_WINDOW_MS);
  }

  /** The `probe-answers` timer: resources not heard of since the probe round began are gone. */
  async dropUnconfirmed(agentJid: string, round: number): Promise<void> {
    const { before, after } = await this.deps.store.dropResourcesUnheardSince(agentJid, round, this.deps.now());
    if (before !== after) this.log.info({ agent: agentJid, before, after }, "agent resources unconfirmed by a probe dropped");
    await this.presenceMoved(agentJid, before, after);
  }

  async sendDeskPresence(site: Site, agentJid: string): Promise<void> {
    this.deps.send(presenceToStanza({ from: deskJid(site.id, this.deps.domain), to: agentJid, status: await this.deskStatus(site) }));
  }

  /** Re-announces the desk to every agent of the site (its status line changed). */
  async refreshDesk(site: Site): Promise<void> {
    const status = await this.deskStatus(site);
    for (const agent of await this.deps.store.listAgents(site.id)) {
      this.deps.send(presenceToStanza({ from: deskJid(site.id, this.deps.domain), to: agent.jid, status }));
    }
  }

  async sendVisitorPresence(visitorId: string, agentJid: string): Promise<void> {
    const visitor = await this.deps.store.getVisitor(visitorId);
    if (!visitor) return;
    const online = await this.deps.store.isOnline(visitor.siteId, visitor.id, this.deps.now());
    this.deps.send(presenceToStanza({ from: visitor.jid, to: agentJid, ...(online ? { status: pageStatus(visitor.page) } : { type: "unavailable" }) }));
  }

  /**
   * Whether any agent of the site is available. Cached for a second: a change seen by this
   * process drops the entry at once, one seen by another reaches visitors through the
   * site's `availability` frame anyway.
   */
  agentsOnline(siteId: string): Promise<boolean> {
    return this.agentsOnlineCache.get(siteId, () => this.readAgentsOnline(siteId));
  }

  private async readAgentsOnline(siteId: string): Promise<boolean> {
    const agents = await this.deps.store.listAgents(siteId);
    const presences = await Promise.all(agents.map((a) => this.deps.store.getAgentPresence(a.jid)));
    return presences.includes("available");
  }

  private async agentResourceChanged(agentJid: string, resource: string, show: Parameters<Store["setAgentResource"]>[2]): Promise<void> {
    const { before, after } = await this.deps.store.setAgentResource(agentJid, resource, show, this.deps.now());
    await this.presenceMoved(agentJid, before, after);
  }

  private async presenceMoved(agentJid: string, before: AgentPresence, after: AgentPresence): Promise<void> {
    if (before === after) return;
    this.log.info({ agent: agentJid, before, after }, "agent presence changed");
    // Offline (not away): after the grace period their chats move (see lifecycle.ts).
    if (after === "offline") await this.deps.scheduler.schedule("agent-gone", agentJid, this.deps.now() + this.deps.agentGraceMs);
    else if (before === "offline") await this.deps.scheduler.cancel("agent-gone", agentJid);
    if ((before === "available") === (after === "available")) return;
    for (const siteId of await this.deps.store.sitesOfAgent(agentJid)) {
      this.agentsOnlineCache.delete(siteId);
      const site = await this.deps.store.getSite(siteId);
      if (!site) continue;
      await this.deps.store.publishToSite(siteId, { type: "availability", agentsOnline: await this.agentsOnline(siteId) });
      if (after === "available") await this.deps.chats.drainQueue(site);
      await this.deps.chats.announceQueuePositions(site);
      await this.refreshDesk(site);
    }
  }

  /** From the queue and the agents' active sets: a few reads, however many chats the site has had. */
  private async deskStatus(site: Site): Promise<string> {
    const [waiting, loads] = await Promise.all([this.deps.store.queueLength(site.id), this.deps.store.agentLoads(site.id)]);
    let chatting = 0;
    for (const { chatIds } of loads.values()) chatting += chatIds.length;
    return `${waiting} waiting, ${chatting} chatting`;
  }
}

function deskRemovedNotice(site: Site, desk: string): string {
  return `[parley] You removed ${desk} (${site.name}) from your contacts: Parley no longer sees whether you are available, so you get no new chats of ${site.name}. Add ${desk} again to receive them.`;
}
