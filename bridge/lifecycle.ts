import type { ChatService } from "./chats.js";
import type { KeyedQueue } from "./keyed-queue.js";
import type { Logger } from "./logger.js";
import type { PresenceService } from "./presence.js";
import type { Scheduler } from "./scheduler.js";
import { deletedSite } from "./sites.js";
import type { Chat, Site, Store, Visitor } from "./store/types.js";
import type { Webhooks } from "./webhooks.js";

/**
 * What happens when time passes (issue 3), as durable timers any process may fire:
 * - `unanswered:{chatId}|{agent}` — the assigned agent said nothing in time: the chat moves on
 *   (or, with no other agent available, stays with a reminder);
 * - `agent-gone:{agent}` — an agent offline past PARLEY_AGENT_GRACE_MS loses their chats;
 * - `probe-answers:{agent}|{round}` — the answers to a process's probes on connecting are
 *   in: the agent's resources they did not confirm are dropped;
 * - `visitor-left:{visitor}` — the visitor's grace period is over: their presence goes
 *   unavailable and the idle clock starts. While the visitor has an open chat it is also a
 *   watch, looking again every PARLEY_CHAT_IDLE_MS while they are online: a process that
 *   dies holding their sockets never says they left, and their chat stayed open for good;
 * - `chat-idle:{visitor}` — the visitor stayed away past PARLEY_CHAT_IDLE_MS: the chat ends;
 * - `finish-end:{chatId}|{attempt}` — written before a chat ends, removed once everything
 *   that follows is done: a process that died midway leaves it to another;
 * - `finish-queue:{chatId}|{attempt}[|{agent}]` — written before a chat is marked queued
 *   (taken from that agent), removed once it is in the site's queue: a chat left queued in
 *   no queue is put in line by another process, the agent's slot and roster item freed;
 * - `finish-route:{chatId}|{attempt}` — written before a new chat is routed, removed once
 *   it is assigned, queued or offline: a chat left `new` is routed by another process;
 * - `finish-assign:{chatId}|{attempt}|{agent}` — written before a chat is given to an
 *   agent, removed once the roster item, the waiting messages and `joined` are out: a chat
 *   that became the agent's meanwhile gets them from another process;
 * - `finish-transfer:{chatId}|{attempt}|{from}/{to}` — written before a chat moves from one
 *   agent to another, removed once both agents' slots and roster items follow: another
 *   process frees what the agent no longer with the chat kept;
 * - `webhook:{event}` — a webhook delivery attempt;
 * - `purge:{chatId}` — an ended chat's transcript is past PARLEY_TRANSCRIPT_RETENTION_DAYS.
 */
export interface LifecycleDeps {
  store: Store;
  scheduler: Scheduler;
  chats: ChatService;
  presence: PresenceService;
  webhooks: Webhooks;
  lanes: KeyedQueue;
  agentGraceMs: number;
  chatIdleMs: number;
  /** PARLEY_VISITOR_RETENTION_DAYS in ms (0: forever): a visitor whose last transcript is purged is then forgotten like one who never chatted. */
  visitorRetentionMs: number;
  logger: Logger;
}

export function registerLifecycleTimers(deps: LifecycleDeps): void {
  const { store, scheduler, chats, lanes } = deps;
  const log = deps.logger.child({ module: "lifecycle" });

  scheduler.on("unanswered", async (key) => {
    const [chatId, agentJid] = key.split("|");
    const chat = chatId ? await store.getChat(chatId) : null;
    if (!chat || chat.state !== "active" || chat.agentJid !== agentJid) return;
    const [site, visitor] = await Promise.all([store.getSite(chat.siteId), store.getVisitor(chat.visitorId)]);
    if (!site || !visitor) return;
    log.info({ chatId, agent: agentJid }, "chat unanswered in time; moving it");
    await lanes.run(visitor.id, async () => {
      const current = await store.getChat(chat.id);
      if (current?.state === "active" && current.agentJid === agentJid) {
        await chats.reassign(site, visitor, current, `You did not answer within ${site.answerTimeoutSeconds ?? 120} s.`, { keepIfNobodyElse: true });
      }
    });
  });

  scheduler.on("agent-gone", async (agentJid) => {
    if ((await store.getAgentPresence(agentJid)) !== "offline") return;
    log.info({ agent: agentJid }, "agent gone past the grace period; moving their chats");
    // What the visitors wrote since the agent went away reaches whoever takes their chats as messages, not as context.
    const awaySince = (await store.agentUnavailableSince(agentJid)) ?? undefined;
    for (const siteId of await store.sitesOfAgent(agentJid)) {
      const site = await store.getSite(siteId);
      if (site) await chats.moveChatsOf(site, agentJid, `You were offline for more than ${Math.round(deps.agentGraceMs / 1000)} s.`, { awaySince });
    }
  });

  // Probes sent on connecting: the agents' resources they did not confirm are gone.
  scheduler.on("probe-answers", async (key) => {
    const bar = key.lastIndexOf("|");
    await deps.presence.dropUnconfirmed(key.slice(0, bar), Number(key.slice(bar + 1)));
  });

  scheduler.on("visitor-left", async (visitorId, now) => {
    const visitor = await store.getVisitor(visitorId);
    if (!visitor) return;
    const chat = visitor.chatId ? await store.getChat(visitor.chatId) : null;
    const open = chat !== null && chat.state !== "ended";
    // Still online (another tab, another process): a visitor with an open chat is looked at
    // again later, in case the process holding their sockets dies without saying they left.
    if (await store.isOnline(visitor.siteId, visitorId, now)) return open ? { retryAt: now + deps.chatIdleMs } : undefined;
    // Their mark (and any other expired one of the site, e.g. of a process that stopped)
    // goes now, not at the site's next heartbeat.
    await store.forgetExpiredOnlineMarks(visitor.siteId, now);
    if (!open) return;
    if (chat.state === "active" && chat.agentJid) await deps.presence.sendVisitorPresence(visitorId, chat.agentJid);
    await scheduler.schedule("chat-idle", visitorId, now + deps.chatIdleMs);
  });

  scheduler.on("chat-idle", async (visitorId, now) => {
    const visitor = await store.getVisitor(visitorId);
    if (!visitor || (await store.isOnline(visitor.siteId, visitorId, now))) return;
    const [site, chat] = await Promise.all([store.getSite(visitor.siteId), visitor.chatId ? store.getChat(visitor.chatId) : null]);
    if (!chat || chat.state === "ended") return;
    log.info({ chatId: chat.id }, "visitor gone past the idle timeout; ending the chat");
    // A chat of a deleted site ends too: one the deletion could not end (its process died
    // midway, or another process had not seen the deletion when the chat started).
    await lanes.run(visitorId, () => chats.end(site ?? deletedSite(visitor.siteId), visitor, chat).then(() => undefined));
  });

  // The process that ended this chat died before it finished (see ChatService.end).
  scheduler.on("finish-end", async (key) => {
    const chat = await store.getChat(key.slice(0, key.indexOf("|")));
    if (chat?.state !== "ended") return;
    const site = (await store.getSite(chat.siteId)) ?? deletedSite(chat.siteId);
    log.warn({ chatId: chat.id }, "finishing the end of a chat whose process stopped midway");
    await lanes.run(chat.visitorId, async () => {
      const visitor = await store.getVisitor(chat.visitorId);
      if (visitor) await chats.finishEnd(site, visitor, chat);
    });
  });

  /**
   * A finishing timer (`finish-queue`, `finish-route`, `finish-assign`, `finish-transfer`;
   * key `{chatId}|{attempt}[|{detail}]`): for a chat of a live site that `wanted` accepts,
   * `finish` runs in the visitor's lane with the visitor and the chat as they are then.
   * A deleted site's chat waits for nobody: it ends once its visitor is gone (chat-idle).
   */
  const onFinishing = (kind: string, finish: (site: Site, visitor: Visitor, chat: Chat, detail: string) => Promise<void>, wanted: (chat: Chat) => boolean = () => true) =>
    scheduler.on(kind, async (key) => {
      const [chatId = "", , ...detail] = key.split("|");
      const chat = await store.getChat(chatId);
      const site = chat && (await store.getSite(chat.siteId));
      if (!chat || !site || !wanted(chat)) return;
      await lanes.run(chat.visitorId, async () => {
        const [visitor, current] = await Promise.all([store.getVisitor(chat.visitorId), store.getChat(chat.id)]);
        if (visitor && current) await finish(site, visitor, current, detail.join("|"));
      });
    });

  // The process that queued this chat stopped before putting it in line (see ChatService.queueing).
  onFinishing("finish-queue", (site, visitor, chat, fromAgentJid) => chats.finishQueue(site, visitor, chat, fromAgentJid || undefined));
  // The process that was routing this new chat stopped before the chat left `new` (see ChatService.route).
  onFinishing("finish-route", (site, visitor, chat) => chats.finishRoute(site, visitor, chat), (chat) => chat.state === "new");
  // The process that was giving this chat to an agent stopped midway (see ChatService.assign).
  onFinishing("finish-assign", (site, visitor, chat, agentJid) => chats.finishAssign(site, visitor, chat, agentJid), (chat) => chat.state === "active");
  // The process that was moving this chat between agents stopped midway (see ChatService.transfer).
  onFinishing("finish-transfer", (site, visitor, chat, agents) => chats.finishTransfer(site, visitor, chat, agents.split("/")));

  scheduler.on("webhook", (eventId, now) => deps.webhooks.deliver(eventId, now));

  scheduler.on("purge", async (chatId, now) => {
    await store.purgeChat(chatId, deps.visitorRetentionMs > 0 ? now + deps.visitorRetentionMs : undefined);
    log.info({ chatId }, "transcript past retention deleted");
  });
}
