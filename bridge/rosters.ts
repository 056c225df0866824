import type { Element } from "@xmpp/xml";
import { domainOf } from "../stanza-mappers/addressing.js";
import type { PrivilegeGrant } from "../stanza-mappers/privileges.js";
import { presenceToStanza, privilegedRosterSetToStanza, type RosterItem } from "../stanza-mappers/visitor-to-stanza.js";
import { ConcurrencyLimit } from "./concurrency-limit.js";
import type { Logger } from "./logger.js";

/**
 * Puts Parley's contacts (desks, visitors) into agents' rosters without the agent doing
 * anything (CONTRACT §5), choosing the way the agent's server allows:
 * 1. XEP-0356 privileged roster set, when the server granted roster `set`/`both` for the
 *    agent's host. ejabberd 23.01 grants it but refuses every set with
 *    internal-server-error (upstream bug #3942), so a set the server refuses switches that
 *    host to the next way until the grants are renewed (a new component connection). A set
 *    that got no answer (timeout, link offline) is no verdict: that change takes the next
 *    way, the next change tries the privileged set again.
 * 2. ejabberd's admin API (`add_rosteritem`/`delete_rosteritem`), when configured.
 * 3. Otherwise (and always for agents on other servers) a subscription request carrying
 *    a XEP-0172 nickname, which the agent's client shows for approval.
 */
export interface RosterDeps {
  domain: string;
  send(stanza: Element): void;
  request(iq: Element, timeoutMs: number): Promise<Element | null>;
  newId(): string;
  logger: Logger;
  ejabberdApi?: { url: string; auth?: { user: string; password: string } };
  fetch?: typeof fetch;
}

/**
 * Roster changes sent to ejabberd's admin API at once, per process. Measured with 1,000
 * chats starting together: unbounded, 67 timed out; 32, none and as fast; 8, none but
 * half as fast (ejabberd serves requests in parallel).
 */
const ADMIN_API_CONCURRENCY = 32;

/**
 * Error answers that say the server could not answer now, not that it refuses the set:
 * our own 5 s timeout and a busy server's. Any other error the server answered (forbidden,
 * not-allowed, feature-not-implemented, service-unavailable, bad-request, ejabberd
 * 23.01's internal-server-error…) is a refusal.
 */
const NO_VERDICT_CONDITIONS = new Set(["remote-server-timeout", "resource-constraint"]);

type PrivilegedSetOutcome = "done" | "refused" | "unanswered";

export class Rosters {
  private readonly grants = new Map<string, PrivilegeGrant>();
  private readonly privilegedSetBroken = new Set<string>();
  /** The first privileged set per host, which the others wait for instead of failing alongside it. */
  private readonly privilegedProbes = new Map<string, Promise<boolean>>();
  private readonly log: Logger;
  /** Admin API calls in flight: a burst of new chats queues here instead of timing out at ejabberd. */
  private readonly adminApiCalls = new ConcurrencyLimit(ADMIN_API_CONCURRENCY);

  constructor(private readonly deps: RosterDeps) {
    this.log = deps.logger.child({ module: "rosters" });
  }

  /** Records what the server allowed (XEP-0356 §4); called for each privilege message. */
  grant(grant: PrivilegeGrant): void {
    this.grants.set(grant.host, grant);
    this.log.info({ host: grant.host, roster: grant.roster, presence: grant.presence }, "privileges granted");
  }

  /**
   * Ejabberd removes privileges when a component connection of the domain leaves. The
   * next connection may reach an upgraded server, so past refusals are forgotten too.
   */
  clearGrants(): void {
    this.grants.clear();
    this.privilegedProbes.clear();
    this.privilegedSetBroken.clear();
  }

  /** Is the agent served by the same server as Parley (so admin API / privileges apply)? */
  isLocal(agentJid: string): boolean {
    const host = domainOf(agentJid);
    return this.grants.has(host) || this.deps.domain.endsWith(`.${host}`);
  }

  async upsert(agentJid: string, item: Omit<RosterItem, "subscription">): Promise<void> {
    await this.apply(agentJid, { ...item, subscription: "both" });
  }

  async remove(agentJid: string, item: Omit<RosterItem, "subscription">): Promise<void> {
    await this.apply(agentJid, { ...item, subscription: "remove" });
  }

  private async apply(agentJid: string, item: RosterItem): Promise<void> {
    const host = domainOf(agentJid);
    if (this.isLocal(agentJid)) {
      if (this.canSetPrivileged(host) && (await this.privilegedSetOnce(host, agentJid, item))) return;
      if (this.deps.ejabberdApi && (await this.adminApi(agentJid, item))) return;
    }
    this.subscription(agentJid, item);
  }

  private canSetPrivileged(host: string): boolean {
    const roster = this.grants.get(host)?.roster;
    return (roster === "set" || roster === "both") && !this.privilegedSetBroken.has(host);
  }

  /**
   * Until the server has accepted one privileged set for the host, only one is in flight:
   * when many chats start at once on ejabberd 23.01 they would all fail and time out together.
   */
  private async privilegedSetOnce(host: string, agentJid: string, item: RosterItem): Promise<boolean> {
    const probe = this.privilegedProbes.get(host);
    if (probe) {
      if (!(await probe) || this.privilegedSetBroken.has(host)) return false;
      return (await this.privilegedSet(agentJid, item)) === "done";
    }
    const first: Promise<boolean> = this.privilegedSet(agentJid, item).then((outcome) => {
      // No answer is no verdict: the changes waiting on this probe fall back this once, and
      // the next change probes again.
      if (outcome === "unanswered" && this.privilegedProbes.get(host) === first) this.privilegedProbes.delete(host);
      return outcome === "done";
    });
    this.privilegedProbes.set(host, first);
    return first;
  }

  private async privilegedSet(agentJid: string, item: RosterItem): Promise<PrivilegedSetOutcome> {
    const iq = privilegedRosterSetToStanza({ from: this.deps.domain, to: agentJid, id: this.deps.newId(), item });
    try {
      await this.deps.request(iq, 5000);
      return "done";
    } catch (err) {
      const host = domainOf(agentJid);
      const condition = (err as { condition?: unknown }).condition;
      if (typeof condition !== "string" || NO_VERDICT_CONDITIONS.has(condition)) {
        const reason = typeof condition === "string" ? condition : err instanceof Error ? err.message : String(err);
        this.log.warn({ host, reason }, "privileged roster set unanswered; using the next way for this change only");
        return "unanswered";
      }
      this.privilegedSetBroken.add(host);
      if (this.deps.ejabberdApi) {
        // Expected once per host and connection on ejabberd 23.01 (bug #3942): not worth more than a line.
        this.log.info({ host, condition }, "privileged roster set refused; using the next way for this host");
      } else {
        // Without the admin API the next way is a subscription request each agent must approve:
        // desks and visitors do not appear by themselves, which the admin should hear about.
        this.log.warn(
          { host, condition },
          `the server refused the XEP-0356 roster set and PARLEY_EJABBERD_API_URL is not set: agents on ${host} get subscription requests to approve instead of contacts in their roster (on ejabberd before 23.10, set PARLEY_EJABBERD_API_URL)`,
        );
      }
      return "refused";
    }
  }

  private async adminApi(agentJid: string, item: RosterItem): Promise<boolean> {
    const api = this.deps.ejabberdApi!;
    const [localuser, localhost] = splitJid(agentJid);
    const [user, host] = splitJid(item.jid);
    const command = item.subscription === "remove" ? "delete_rosteritem" : "add_rosteritem";
    const body =
      item.subscription === "remove"
        ? { localuser, localhost, user, host }
        : { localuser, localhost, user, host, nick: item.name, group: item.group, subs: "both" };
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (api.auth) headers.authorization = `Basic ${Buffer.from(`${api.auth.user}:${api.auth.password}`).toString("base64")}`;
    return this.adminApiCalls.run(async () => {
      try {
        // The timeout starts when the request does, not while it waits for a slot.
        const response = await (this.deps.fetch ?? fetch)(`${api.url}/${command}`, {
          method: "POST",
          headers,
          body: JSON.stringify(body),
          signal: AbortSignal.timeout(5000),
        });
        const text = await response.text();
        // mod_http_api answers 200 with 0 for success; other values or statuses are failures.
        if (response.ok && text.trim() === "0") return true;
        this.log.warn({ command, status: response.status, reply: text.slice(0, 200) }, "ejabberd admin API refused the roster change");
      } catch (err) {
        this.log.warn({ err, command, queued: this.adminApiCalls.queued }, "ejabberd admin API unreachable");
      }
      return false;
    });
  }

  private subscription(agentJid: string, item: RosterItem): void {
    const type = item.subscription === "remove" ? "unsubscribed" : "subscribe";
    this.deps.send(presenceToStanza({ from: item.jid, to: agentJid, type, nick: type === "subscribe" ? item.name : undefined }));
    if (type === "unsubscribed") this.deps.send(presenceToStanza({ from: item.jid, to: agentJid, type: "unsubscribe" }));
  }
}

function splitJid(jid: string): [string, string] {
  const at = jid.indexOf("@");
  return [jid.slice(0, at), jid.slice(at + 1)];
}
