import { Redis, Cluster, type RedisOptions } from "ioredis";
import { aggregatePresence, type AgentPresence, type AgentShow } from "../../stanza-mappers/presence-to-agent-state.js";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { BatchingRedis } from "./batching-redis.js";
import { decodeAgent, decodeSite, encodeAgent, encodeSite, StoredValueError } from "./codec.js";
import { chatMatchesListState } from "./chat-list-state.js";
import { visitorIdOfChat } from "./ids.js";
import { channels, keys } from "./keys.js";
import { compareMessageIds } from "./message-ids.js";
import { APPEND_AGENT_MESSAGE, APPEND_VISITOR_MESSAGE, CHANGE_HOLDER, CLAIM_AGENT, CLAIM_LEAST_LOADED, CLAIM_STALE_PROCESS, CREATE_VISITOR, DELETE_SITE, DROP_RESOURCES_UNHEARD_SINCE, FINISH_TIMER, FORGET_IF_NOTHING_LEFT, KEEP_VISITOR, LEAVE_SITE, MARK_MANY_RELAYED, MARK_ONLINE, PUBLISH_TO_HOLDERS, RELEASE_AGENT, REMOVE_AGENT, SET_AGENT_RESOURCE, TAKE_DUE_TIMERS, UPDATE_CHAT, VISITOR_WITH_CHAT } from "./redis-scripts.js";
import { UnknownVisitorError, VisitorBlockedError, type Agent, type AppendAgentMessage, type AppendAgentOutcome, type AppendResult, type AppendVisitorMessage, type BusHandler, type Chat, type ProcessMessage, type ChatState, type Site, type Store, type StoredMessage, type Visitor, type WebhookEvent } from "./types.js";

type Client = Redis | Cluster;

/** How many messages of one visitor's log Redis keeps (approximate trim, XADD MAXLEN ~). */
const LOG_MAX_LENGTH = 10_000;
const CHAT_LIST_LIMIT = 1000;
/**
 * How long a webhook event is kept, from its last attempt. Its retries span about 3 hours
 * (webhooks.ts); an event whose process died between storing it and scheduling its first
 * attempt has no timer, and stayed in Redis for good without this bound.
 */
export const WEBHOOK_EVENT_TTL_SECONDS = 7 * 86_400;
/** How long `close` waits for Redis to acknowledge QUIT before dropping the connections. */
const CLOSE_TIMEOUT_MS = 2000;
/** A health check waits no longer than this for Redis (a balancer's own timeout is often 2 s). */
const PING_TIMEOUT_MS = 1000;

const SCRIPTS = {
  appendVisitorMessage: { numberOfKeys: 6, lua: APPEND_VISITOR_MESSAGE },
  appendAgentMessage: { numberOfKeys: 3, lua: APPEND_AGENT_MESSAGE },
  publishToHolders: { numberOfKeys: 1, lua: PUBLISH_TO_HOLDERS },
  changeHolder: { numberOfKeys: 2, lua: CHANGE_HOLDER },
  claimStaleProcess: { numberOfKeys: 1, lua: CLAIM_STALE_PROCESS },
  updateChat: { numberOfKeys: 3, lua: UPDATE_CHAT },
  claimAgent: { numberOfKeys: 3, lua: CLAIM_AGENT },
  takeDueTimers: { numberOfKeys: 1, lua: TAKE_DUE_TIMERS },
  visitorWithChat: { numberOfKeys: 1, lua: VISITOR_WITH_CHAT },
  finishTimer: { numberOfKeys: 1, lua: FINISH_TIMER },
  keepVisitor: { numberOfKeys: 2, lua: KEEP_VISITOR },
  createVisitor: { numberOfKeys: 1, lua: CREATE_VISITOR },
  forgetIfNothingLeft: { numberOfKeys: 4, lua: FORGET_IF_NOTHING_LEFT },
  setAgentResource: { numberOfKeys: 2, lua: SET_AGENT_RESOURCE },
  dropResourcesUnheardSince: { numberOfKeys: 1, lua: DROP_RESOURCES_UNHEARD_SINCE },
  markOnline: { numberOfKeys: 1, lua: MARK_ONLINE },
  removeAgent: { numberOfKeys: 3, lua: REMOVE_AGENT },
  releaseAgent: { numberOfKeys: 4, lua: RELEASE_AGENT },
  deleteSite: { numberOfKeys: 6, lua: DELETE_SITE },
  leaveSite: { numberOfKeys: 5, lua: LEAVE_SITE },
};

interface ScriptCommands {
  appendVisitorMessage(...args: (string | number)[]): Promise<unknown>;
  appendAgentMessage(...args: (string | number)[]): Promise<unknown>;
  publishToHolders(...args: string[]): Promise<number>;
  changeHolder(...args: string[]): Promise<string[]>;
  updateChat(...args: string[]): Promise<[string, string[]] | null>;
  setAgentResource(resourcesKey: string, roundKey: string, resource: string, show: string): Promise<[string[], string[]]>;
  dropResourcesUnheardSince(key: string, round: number): Promise<[string[], string[]]>;
  claimAgent(...args: (string | number)[]): Promise<number>;
  takeDueTimers(...args: (string | number)[]): Promise<string[]>;
  visitorWithChat(...args: string[]): Promise<[string[], string[]]>;
  finishTimer(...args: (string | number)[]): Promise<number>;
  keepVisitor(...args: (string | number)[]): Promise<number>;
  createVisitor(...args: (string | number)[]): Promise<number>;
  forgetIfNothingLeft(...args: (string | number)[]): Promise<number>;
  claimStaleProcess(...args: (string | number)[]): Promise<string | null>;
  claimLeastLoaded(numberOfKeys: number, ...args: (string | number)[]): Promise<string | null>;
  markManyRelayed(numberOfKeys: number, ...args: (string | number)[]): Promise<number>;
  markOnline(key: string, now: number, until: number, ...scoresAndIds: (string | number)[]): Promise<number>;
  removeAgent(...args: string[]): Promise<number>;
  releaseAgent(...args: string[]): Promise<number>;
  deleteSite(...args: string[]): Promise<number>;
  leaveSite(...args: string[]): Promise<number>;
}

/**
 * ioredis' auto-pipelining picks a command's cluster slot from its first argument, which for
 * a script with a variable number of keys is that number: such a command would join a
 * pipeline of another slot and fail the whole pipeline ("All keys in the pipeline should
 * belong to the same slots allocation group").
 */
const NOT_AUTO_PIPELINED = ["claimLeastLoaded", "markManyRelayed"];

export type RedisTarget = { url: string } | { clusterNodes: { host: string; port: number }[] };

/**
 * The shared store. Commands go through one connection, those of one event-loop turn in one
 * write (batching-redis.ts; auto-pipelined on Redis Cluster); pub/sub uses a second one, as
 * Redis requires. ioredis reconnects both and re-subscribes by itself.
 */
export class RedisStore implements Store {
  readonly kind: "redis" | "redis-cluster";
  private readonly redis: Client & ScriptCommands;
  private readonly sub: Client;
  private readonly handlers = new Map<string, Set<(message: never) => void>>();
  private readonly recoveryHandlers: (() => void)[] = [];
  private pendingPing: Promise<unknown> | undefined;

  constructor(
    target: RedisTarget,
    private readonly onError: (err: Error) => void = () => {},
  ) {
    const options = {
      // Fail commands fast while Redis is down instead of queueing them without bound:
      // the visitor gets an error instead of a late (or false) ack.
      maxRetriesPerRequest: 2,
      // Capped at 1 s (with jitter) so that the bridge serves again within ~1 s of Redis' return.
      retryStrategy: (attempt: number) => Math.min(50 * 2 ** attempt, 1000) * (0.5 + Math.random() / 2),
    } satisfies RedisOptions;
    if ("url" in target) {
      this.kind = "redis";
      this.redis = new BatchingRedis(target.url, options) as Client & ScriptCommands;
      this.sub = new Redis(target.url, { ...options, maxRetriesPerRequest: null });
    } else {
      this.kind = "redis-cluster";
      this.redis = new Cluster(target.clusterNodes, {
        enableAutoPipelining: true,
        autoPipeliningIgnoredCommands: NOT_AUTO_PIPELINED,
        redisOptions: options,
      }) as Client & ScriptCommands;
      this.sub = new Cluster(target.clusterNodes, { redisOptions: { ...options, maxRetriesPerRequest: null } });
    }
    for (const [name, script] of Object.entries(SCRIPTS)) this.redis.defineCommand(name, script);
    // Its number of keys varies (one per candidate agent): the first argument gives it.
    this.redis.defineCommand("claimLeastLoaded", { lua: CLAIM_LEAST_LOADED });
    this.redis.defineCommand("markManyRelayed", { lua: MARK_MANY_RELAYED });
    this.redis.on("error", onError);
    this.sub.on("error", onError);
    this.sub.on("message", (channel: string, payload: string) => this.dispatch(channel, payload));
    let connectedBefore = false;
    this.sub.on("ready", () => {
      if (connectedBefore) {
        this.confirmSubscriptions().then(
          () => this.recoveryHandlers.forEach((handler) => handler()),
          (err: Error) => onError(new Error(`resubscribing after a bus outage failed: ${err.message}`)), // the next "ready" tries again
        );
      }
      connectedBefore = true;
    });
  }

  /**
   * Subscribes again to every channel and resolves once Redis has confirmed it. ioredis
   * resubscribes by itself, but only after "ready" and without telling when it is done: a
   * catch-up read from the log before then could miss a message published in between
   * (stored after the read, published before the subscription). SUBSCRIBE twice is harmless.
   */
  private async confirmSubscriptions(): Promise<void> {
    const channels = [...this.handlers.keys()];
    if (channels.length > 0) await this.sub.subscribe(...channels);
  }

  /**
   * Answers a health check at once: while ioredis reconnects a PING waits through its retries
   * (seconds), and a hung Redis with its socket open would never answer it at all.
   */
  async ping(): Promise<void> {
    for (const [name, connection] of [["", this.redis], [" subscriber", this.sub]] as const) {
      if (connection.status !== "ready") throw new Error(`Redis${name} connection is ${connection.status}`);
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`Redis did not answer PING within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
    });
    // One PING at a time: a balancer polling a hung Redis would otherwise queue one per poll.
    this.pendingPing ??= this.redis.ping().finally(() => (this.pendingPing = undefined));
    try {
      await Promise.race([this.pendingPing, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  async close(): Promise<void> {
    this.handlers.clear();
    // QUIT waits for Redis' answer: while it is unreachable, forever. A stop must end.
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise((resolve) => (timer = setTimeout(resolve, CLOSE_TIMEOUT_MS)));
    await Promise.race([Promise.allSettled([this.redis.quit(), this.sub.quit()]), deadline]);
    clearTimeout(timer);
    this.redis.disconnect();
    this.sub.disconnect();
  }

  // --- sites and agents
  async putSite(site: Site) {
    await this.redis.set(keys.site(site.id), encodeSite(site));
    await this.redis.sadd(keys.sites(), site.id);
  }
  async getSite(siteId: string) {
    const raw = await this.redis.get(keys.site(siteId));
    return raw === null ? null : decodeSite(raw);
  }
  async listSites() {
    const ids = (await this.redis.smembers(keys.sites())).sort();
    const sites = await Promise.all(ids.map((id) => this.getSite(id)));
    return sites.filter((s): s is Site => s !== null);
  }
  async deleteSite(siteId: string) {
    const agents = await this.listAgents(siteId);
    await Promise.all(agents.map((a) => this.leaveSite(a.jid, siteId)));
    const removed = await this.redis.deleteSite(
      keys.site(siteId),
      keys.agents(siteId),
      keys.visitorNumber(siteId),
      keys.online(siteId),
      keys.loadedAgents(siteId),
      keys.lastAssigned(siteId),
      keys.agentChats(siteId, ""),
    );
    await this.redis.srem(keys.sites(), siteId);
    return removed > 0;
  }
  async putAgent(siteId: string, agent: Agent) {
    await this.redis.hset(keys.agents(siteId), agent.jid, encodeAgent(agent));
    await this.redis.sadd(keys.agentSites(agent.jid), siteId);
  }
  async removeAgent(siteId: string, jid: string) {
    const removed = await this.redis.removeAgent(keys.agents(siteId), keys.loadedAgents(siteId), keys.lastAssigned(siteId), jid, keys.agentChats(siteId, ""));
    await this.leaveSite(jid, siteId);
    return removed > 0;
  }
  private async leaveSite(jid: string, siteId: string) {
    await this.redis.leaveSite(keys.agentSites(jid), keys.agentResources(jid), keys.agentProbeRound(jid), keys.agentUnavailableSince(jid), keys.agentBusy(jid), siteId);
  }
  async listAgents(siteId: string) {
    const all = await this.redis.hgetall(keys.agents(siteId));
    return Object.values(all).map(decodeAgent).sort((a, b) => a.jid.localeCompare(b.jid));
  }
  async sitesOfAgent(jid: string) {
    return (await this.redis.smembers(keys.agentSites(jid))).sort();
  }

  // --- presence
  // Each resource's value is `show|round`, the probe round it was last heard of in.
  async setAgentResource(jid: string, resource: string, show: AgentShow | null, now: number) {
    const [beforeVals, afterVals] = await this.redis.setAgentResource(keys.agentResources(jid), keys.agentProbeRound(jid), resource, show ?? "");
    return this.presenceMoved(jid, beforeVals, afterVals, now);
  }
  async beginProbeRound(jid: string) {
    return this.redis.incr(keys.agentProbeRound(jid));
  }
  async dropResourcesUnheardSince(jid: string, round: number, now: number) {
    const [beforeVals, afterVals] = await this.redis.dropResourcesUnheardSince(keys.agentResources(jid), round);
    return this.presenceMoved(jid, beforeVals, afterVals, now);
  }
  private async presenceMoved(jid: string, beforeVals: string[], afterVals: string[], now: number) {
    const before = aggregatePresence(beforeVals.map(showOfResource));
    const after = aggregatePresence(afterVals.map(showOfResource));
    if (before === "available" && after !== "available") await this.redis.set(keys.agentUnavailableSince(jid), String(now));
    if (after === "available") await this.redis.del(keys.agentUnavailableSince(jid));
    return { before, after };
  }
  async getAgentPresence(jid: string): Promise<AgentPresence> {
    return aggregatePresence((await this.redis.hvals(keys.agentResources(jid))).map(showOfResource));
  }
  async agentUnavailableSince(jid: string) {
    const raw = await this.redis.get(keys.agentUnavailableSince(jid));
    return raw === null ? null : Number(raw);
  }

  async setAgentBusy(jid: string, busy: boolean) {
    if (busy) await this.redis.set(keys.agentBusy(jid), "1");
    else await this.redis.del(keys.agentBusy(jid));
  }
  async isAgentBusy(jid: string) {
    return (await this.redis.exists(keys.agentBusy(jid))) === 1;
  }

  // --- visitors
  async createVisitor(v: Visitor, forgetAt?: number) {
    const fields: Record<string, string> = {
      id: v.id,
      siteId: v.siteId,
      jid: v.jid,
      tokenHash: v.tokenHash,
      number: String(v.number),
      createdAt: String(v.createdAt),
      ...visitorPatchFields(v),
    };
    if (v.chatId) fields.chatId = v.chatId;
    await this.redis.createVisitor(keys.visitor(v.id), forgetAt ?? "", ...Object.entries(fields).flat());
  }
  async keepVisitor(visitorId: string, forgetAt: number) {
    await this.redis.keepVisitor(keys.visitor(visitorId), keys.holders(visitorId), forgetAt);
  }
  async getVisitor(visitorId: string) {
    return decodeVisitor(await this.redis.hgetall(keys.visitor(visitorId)));
  }
  async recordPage(visitorId: string, page: { url: string; title: string }) {
    const key = keys.visitor(visitorId);
    if (!(await this.redis.exists(key))) return;
    await this.redis.multi().hset(key, "page", JSON.stringify(page)).hincrby(key, "pagesSeen", 1).exec();
  }
  async updateVisitor(visitorId: string, patch: Partial<Pick<Visitor, "name" | "email" | "page" | "referrer" | "userAgent" | "blocked">>) {
    const key = keys.visitor(visitorId);
    if (!(await this.redis.exists(key))) return null;
    const fields = visitorPatchFields(patch);
    if (Object.keys(fields).length > 0) await this.redis.hset(key, fields);
    return this.getVisitor(visitorId);
  }
  async reserveVisitorNumbers(siteId: string, count: number) {
    return (await this.redis.incrby(keys.visitorNumber(siteId), count)) - count + 1;
  }
  async markManyOnline(siteId: string, visitorIds: readonly string[], until: number, now: number) {
    // One command per thousand visitors instead of one per visitor.
    for (let i = 0; i < visitorIds.length; i += 1000) {
      const args = visitorIds.slice(i, i + 1000).flatMap((id) => [until, id]);
      await this.redis.markOnline(keys.online(siteId), now, until, ...args);
    }
  }
  async markOnline(siteId: string, visitorId: string, until: number, now: number) {
    await this.redis.markOnline(keys.online(siteId), now, until, until, visitorId);
  }
  async onlineVisitors(siteId: string, now: number) {
    await this.forgetExpiredOnlineMarks(siteId, now);
    return this.redis.zrange(keys.online(siteId), "0", "-1");
  }
  async forgetExpiredOnlineMarks(siteId: string, now: number) {
    await this.redis.zremrangebyscore(keys.online(siteId), "-inf", now);
  }
  async isOnline(siteId: string, visitorId: string, now: number) {
    const until = await this.redis.zscore(keys.online(siteId), visitorId);
    return until !== null && Number(until) > now;
  }

  // --- chats and messages
  async appendVisitorMessage(input: AppendVisitorMessage): Promise<AppendResult> {
    const { visitorId } = input;
    const reply = (await this.redis.appendVisitorMessage(
      keys.visitor(visitorId),
      keys.clientIds(visitorId),
      keys.log(visitorId),
      keys.chat(visitorId, input.newChatId),
      keys.unrelayed(visitorId),
      keys.holders(visitorId),
      input.clientId,
      input.newChatId,
      input.siteId,
      visitorId,
      input.fallbackName,
      input.text,
      input.ts,
      keys.chatPrefix(visitorId),
      LOG_MAX_LENGTH,
      input.owner ?? "",
      input.publisher ?? "",
      channels.processPrefix(),
    )) as [number, string, number, string, string, string];
    const [outcome, messageId, created, chatJson, visitorJson, name] = reply;
    if (outcome === 2) throw new VisitorBlockedError(visitorId);
    if (outcome === 3) throw new UnknownVisitorError(visitorId);
    const visitor = decodeVisitor(hashFromJson(visitorJson));
    if (!visitor) throw new StoredValueError(`visitor ${visitorId} vanished while appending`);
    if (outcome === 1) {
      const message = await this.messageById(visitorId, messageId);
      const chat = message && (await this.getChat(message.chatId));
      if (!message || !chat) throw new StoredValueError(`message ${messageId} of visitor ${visitorId} was trimmed`);
      return { visitor, message, chat, chatCreated: false, duplicate: true, unrelayed: created === 1 };
    }
    const chat = decodeChat(hashFromJson(chatJson));
    if (!chat) throw new StoredValueError(`chat of visitor ${visitorId} vanished while appending`);
    const message: StoredMessage = { id: messageId, chatId: chat.id, from: "visitor", name, text: input.text, ts: input.ts, clientId: input.clientId };
    if (created === 1) {
      // Site-wide indexes live in the site's hash slot: a second step, once per chat. The
      // message is stored by now, so a failure here is reported, not thrown: the visitor
      // must get their ack, and the chat its routing, whose state change indexes it then
      // (updateChat).
      await Promise.all([
        this.redis.zadd(keys.siteChats(input.siteId), input.ts, chat.id),
        this.redis.zadd(keys.openChats(input.siteId), input.ts, chat.id),
        this.redis.hincrby(keys.chatStateCounts(), "new", 1),
      ]).catch((err: Error) => this.onError(new Error(`chat ${chat.id} stored but not indexed: ${err.message}`)));
    }
    return { visitor, message, chat, chatCreated: created === 1, duplicate: false };
  }
  async appendAgentMessage(input: AppendAgentMessage): Promise<AppendAgentOutcome> {
    const { visitorId } = input;
    const reply = (await this.redis.appendAgentMessage(
      keys.visitor(visitorId),
      keys.log(visitorId),
      keys.holders(visitorId),
      input.siteId,
      input.agentJid,
      input.fallbackName,
      input.text,
      input.ts,
      keys.chatPrefix(visitorId),
      LOG_MAX_LENGTH,
      input.publisher ?? "",
      channels.processPrefix(),
      visitorId,
    )) as [number, string?, string?, string?, string?];
    const [outcome, visitorJson = "{}", chatJson = "{}", messageId, name] = reply;
    const visitor = decodeVisitor(hashFromJson(visitorJson));
    if (outcome === 0 || !visitor) return { kind: "unknown-visitor" };
    const chat = decodeChat(hashFromJson(chatJson));
    if (outcome === 1 || !chat || !messageId || name === undefined) return { kind: "not-assigned", visitor, chat };
    return { kind: "appended", visitor, chat, message: { id: messageId, chatId: chat.id, from: "agent", name, text: input.text, ts: input.ts } };
  }
  async appendMessage(visitorId: string, m: Omit<StoredMessage, "id">) {
    const id = await this.redis.xadd(
      keys.log(visitorId),
      "MAXLEN",
      "~",
      LOG_MAX_LENGTH,
      "*",
      "chatId",
      m.chatId,
      "from",
      m.from,
      "name",
      m.name,
      "text",
      m.text,
      "ts",
      String(m.ts),
    );
    return { id: id!, ...m };
  }
  async history(visitorId: string, limit: number) {
    const entries = await this.redis.xrevrange(keys.log(visitorId), "+", "-", "COUNT", limit);
    return entries.reverse().map(([id, fields]) => decodeMessage(id, fields));
  }
  async transcript(chatId: string) {
    const visitorId = visitorIdOfChat(chatId);
    const chat = visitorId && (await this.getChat(chatId));
    if (!visitorId || !chat) return [];
    // Stream ids are milliseconds: start a little before the chat to be safe against clock skew between processes.
    const entries = await this.redis.xrange(keys.log(visitorId), String(Math.max(0, chat.startedAt - 60_000)), "+");
    return entries.map(([id, fields]) => decodeMessage(id, fields)).filter((m) => m.chatId === chatId);
  }
  async visitorWithChat(visitorId: string) {
    const [visitorPairs, chatPairs] = await this.redis.visitorWithChat(keys.visitor(visitorId), keys.chatPrefix(visitorId));
    const visitor = decodeVisitor(pairsToObject(visitorPairs));
    return visitor ? { visitor, chat: decodeChat(pairsToObject(chatPairs)) } : null;
  }
  async getChat(chatId: string) {
    const visitorId = visitorIdOfChat(chatId);
    if (!visitorId) return null;
    return decodeChat(await this.redis.hgetall(keys.chat(visitorId, chatId)));
  }
  async updateChat(chatId: string, from: readonly ChatState[], patch: Partial<Omit<Chat, "id" | "siteId" | "visitorId">>, withAgent?: string) {
    const visitorId = visitorIdOfChat(chatId);
    if (!visitorId) return null;
    const args: string[] = [from.join(","), withAgent ?? ""];
    for (const [field, value] of Object.entries(patch)) args.push(field, value === undefined || value === null ? "" : String(value));
    const reply = await this.redis.updateChat(keys.chat(visitorId, chatId), keys.visitor(visitorId), keys.log(visitorId), ...args);
    if (!reply) return null;
    const chat = decodeChat(pairsToObject(reply[1]));
    if (chat && chat.state !== reply[0]) {
      await Promise.all([
        this.redis.multi().hincrby(keys.chatStateCounts(), reply[0], -1).hincrby(keys.chatStateCounts(), chat.state, 1).exec(),
        chat.state === "ended" ? this.redis.zrem(keys.openChats(chat.siteId), chat.id) : this.redis.zadd(keys.openChats(chat.siteId), "NX", chat.startedAt, chat.id),
        // A chat whose indexing failed as it was created (see appendVisitorMessage) is indexed
        // at its next change; for one that was, NX changes nothing. (An open chat added back
        // just after another process ended it is dropped by the next listChats.)
        this.redis.zadd(keys.siteChats(chat.siteId), "NX", chat.startedAt, chat.id),
      ]);
    }
    return chat;
  }
  /**
   * Active and queued chats come from the site's open chats (oldest first, so a long chat is
   * never pushed out by newer ones); ended chats from the site's most recent chats.
   */
  async listChats(siteId: string, state: "active" | "queued" | "ended") {
    const open = state !== "ended";
    const ids = open ? await this.redis.zrange(keys.openChats(siteId), "0", String(CHAT_LIST_LIMIT - 1)) : await this.redis.zrevrange(keys.siteChats(siteId), 0, CHAT_LIST_LIMIT - 1);
    const chats = await Promise.all(ids.map((id) => this.getChat(id)));
    if (open) {
      // A process that died between ending a chat and updating the index left it here.
      const stale = ids.filter((_, i) => {
        const chat = chats[i];
        return !chat || chat.state === "ended";
      });
      if (stale.length > 0) await this.redis.zrem(keys.openChats(siteId), ...stale);
    }
    return chats.filter((c): c is Chat => c !== null && chatMatchesListState(c, state)).sort((a, b) => a.startedAt - b.startedAt);
  }

  async purgeChat(chatId: string, forgetVisitorAt?: number) {
    const chat = await this.getChat(chatId);
    if (!chat || chat.state !== "ended") return;
    const ids = (await this.transcript(chatId)).map((m) => m.id);
    if (ids.length > 0) await this.redis.xdel(keys.log(chat.visitorId), ...ids);
    await this.redis.del(keys.chat(chat.visitorId, chatId));
    await Promise.all([this.redis.zrem(keys.siteChats(chat.siteId), chatId), this.redis.zrem(keys.openChats(chat.siteId), chatId)]);
    await this.redis.hincrby(keys.chatStateCounts(), "ended", -1);
    if (forgetVisitorAt !== undefined) await this.redis.forgetIfNothingLeft(keys.visitor(chat.visitorId), keys.log(chat.visitorId), keys.holders(chat.visitorId), keys.clientIds(chat.visitorId), forgetVisitorAt);
  }
  async chatStateCounts() {
    const raw = await this.redis.hgetall(keys.chatStateCounts());
    const counts = { new: 0, queued: 0, active: 0, offline: 0, ended: 0 };
    for (const state of Object.keys(counts) as ChatState[]) counts[state] = Math.max(0, Number(raw[state] ?? 0));
    return counts;
  }

  // --- routing
  async claimAgent(siteId: string, agentJid: string, chatId: string, cap: number, now: number) {
    const claimed = await this.redis.claimAgent(keys.agentChats(siteId, agentJid), keys.lastAssigned(siteId), keys.loadedAgents(siteId), chatId, cap, now, agentJid);
    return claimed === 1;
  }
  async claimLeastLoaded(siteId: string, candidates: readonly string[], chatId: string, cap: number, now: number) {
    if (candidates.length === 0) return null;
    const chatSets = candidates.map((jid) => keys.agentChats(siteId, jid));
    const claimed = await this.redis.claimLeastLoaded(2 + candidates.length, keys.lastAssigned(siteId), keys.loadedAgents(siteId), ...chatSets, chatId, cap, now, ...candidates);
    return claimed ?? null;
  }
  async releaseAgent(siteId: string, agentJid: string, chatId: string) {
    await this.redis.releaseAgent(keys.agentChats(siteId, agentJid), keys.agents(siteId), keys.loadedAgents(siteId), keys.lastAssigned(siteId), chatId, agentJid);
  }
  async agentLoads(siteId: string) {
    const [agents, last] = await Promise.all([this.redis.smembers(keys.loadedAgents(siteId)), this.redis.hgetall(keys.lastAssigned(siteId))]);
    const result = new Map<string, { chatIds: string[]; lastAssignedAt: number }>();
    const sets = await Promise.all(agents.map((jid) => this.redis.smembers(keys.agentChats(siteId, jid))));
    agents.forEach((jid, i) => result.set(jid, { chatIds: sets[i]!, lastAssignedAt: Number(last[jid] ?? 0) }));
    return result;
  }
  async enqueue(siteId: string, chatId: string, ts: number) {
    await this.redis.zadd(keys.queue(siteId), "NX", ts, chatId);
  }
  async firstInQueue(siteId: string) {
    const [first] = await this.redis.zrange(keys.queue(siteId), "0", "0");
    return first ?? null;
  }
  async queuePosition(siteId: string, chatId: string) {
    const rank = await this.redis.zrank(keys.queue(siteId), chatId);
    return rank === null ? null : rank + 1;
  }
  async removeFromQueue(siteId: string, chatId: string) {
    return (await this.redis.zrem(keys.queue(siteId), chatId)) === 1;
  }
  async queueLength(siteId: string) {
    return this.redis.zcard(keys.queue(siteId));
  }
  async queuedChats(siteId: string) {
    return this.redis.zrange(keys.queue(siteId), "0", "-1");
  }

  // --- timers and webhook events
  async setTimer(id: string, dueAt: number) {
    await this.redis.zadd(keys.timers(), dueAt, id);
  }
  async clearTimer(id: string) {
    await this.redis.zrem(keys.timers(), id);
  }
  async takeDueTimers(now: number, leaseMs: number, limit: number) {
    return this.redis.takeDueTimers(keys.timers(), now, leaseMs, limit);
  }
  async finishTimer(id: string, leasedUntil: number, retryAt?: number) {
    await this.redis.finishTimer(keys.timers(), id, leasedUntil, retryAt ?? "");
  }
  async putWebhookEvent(event: WebhookEvent) {
    const key = keys.webhookEvent(event.id);
    await this.redis.multi().hset(key, { siteId: event.siteId, body: event.body, attempts: String(event.attempts) }).expire(key, WEBHOOK_EVENT_TTL_SECONDS).exec();
  }
  async getWebhookEvent(id: string) {
    const h = await this.redis.hgetall(keys.webhookEvent(id));
    if (!h.body || !h.siteId) return null;
    return { id, siteId: h.siteId, body: h.body, attempts: Number(h.attempts ?? 0) };
  }
  async deleteWebhookEvent(id: string) {
    await this.redis.del(keys.webhookEvent(id));
  }

  // --- outbox (see OutboxStore)
  async unrelayed(visitorId: string) {
    const owners = await this.redis.hgetall(keys.unrelayed(visitorId));
    return Object.entries(owners)
      .map(([messageId, owner]) => ({ messageId, owner }))
      .sort((a, b) => compareMessageIds(a.messageId, b.messageId));
  }
  async markRelayed(visitorId: string, messageIds: string[]) {
    if (messageIds.length > 0) await this.redis.hdel(keys.unrelayed(visitorId), ...messageIds);
  }
  async markManyRelayed(batch: ReadonlyMap<string, readonly string[]>) {
    const entries = [...batch].filter(([, ids]) => ids.length > 0);
    if (this.redis instanceof Cluster) {
      // Keys of many hash slots: one HDEL per visitor (ioredis pipelines them per node).
      await Promise.all(entries.map(([visitorId, ids]) => this.redis.hdel(keys.unrelayed(visitorId), ...ids)));
      return;
    }
    for (let i = 0; i < entries.length; i += 500) {
      const chunk = entries.slice(i, i + 500);
      const args = chunk.flatMap(([, ids]) => [ids.length, ...ids]);
      await this.redis.markManyRelayed(chunk.length, ...chunk.map(([visitorId]) => keys.unrelayed(visitorId)), ...args);
    }
  }
  async addToOutbox(processId: string, visitorId: string) {
    await this.redis.sadd(keys.outbox(processId), visitorId);
  }
  async removeFromOutbox(processId: string, visitorId: string) {
    await this.redis.srem(keys.outbox(processId), visitorId);
  }
  async outboxVisitors(processId: string) {
    return this.redis.smembers(keys.outbox(processId));
  }
  async heartbeat(processId: string, now: number) {
    return (await this.redis.zadd(keys.processes(), now, processId)) === 0; // ZADD counts the members it added
  }
  async lastHeartbeats(processIds: readonly string[]) {
    if (processIds.length === 0) return [];
    const scores = await this.redis.zmscore(keys.processes(), ...processIds);
    return scores.map((score) => (score === null ? null : Number(score)));
  }
  async claimStaleProcess(staleBefore: number, now: number) {
    return (await this.redis.claimStaleProcess(keys.processes(), staleBefore, now)) ?? null;
  }
  async forgetProcess(processId: string) {
    await this.redis.zrem(keys.processes(), processId);
    await this.redis.del(keys.outbox(processId));
  }

  // --- bus (Redis pub/sub: at most once; the durable copy of every message is the log)
  async holdVisitor(visitorId: string, processId: string) {
    return this.redis.changeHolder(keys.holders(visitorId), keys.visitor(visitorId), processId, "hold");
  }
  async releaseVisitor(visitorId: string, processId: string) {
    return this.redis.changeHolder(keys.holders(visitorId), keys.visitor(visitorId), processId, "release");
  }
  async publishToVisitor(visitorId: string, frame: ServerFrame, publisher = "") {
    const message: ProcessMessage = { kind: "visitor-frame", visitorId, frame };
    await this.redis.publishToHolders(keys.holders(visitorId), publisher, channels.processPrefix(), JSON.stringify(message));
  }
  async publishToSite(siteId: string, frame: ServerFrame) {
    await this.redis.publish(channels.site(siteId), JSON.stringify(frame));
  }
  async subscribeSite(siteId: string, handler: BusHandler) {
    return this.subscribe(channels.site(siteId), handler);
  }

  onBusRecovered(handler: () => void): void {
    this.recoveryHandlers.push(handler);
  }
  async publishToProcess(processId: string, message: ProcessMessage) {
    await this.redis.publish(channels.process(processId), JSON.stringify(message));
  }
  async subscribeProcess(processId: string, handler: (message: ProcessMessage) => void) {
    return this.subscribe(channels.process(processId), handler);
  }

  private async subscribe<T>(channel: string, handler: (message: T) => void) {
    let set = this.handlers.get(channel);
    if (!set) {
      this.handlers.set(channel, (set = new Set()));
      await this.sub.subscribe(channel);
    }
    set.add(handler);
    return async () => {
      const current = this.handlers.get(channel);
      if (!current?.delete(handler) || current.size > 0) return;
      this.handlers.delete(channel);
      await this.sub.unsubscribe(channel).catch(() => {});
    };
  }

  private dispatch(channel: string, payload: string) {
    const set = this.handlers.get(channel);
    if (!set) return;
    let message: never;
    try {
      message = JSON.parse(payload) as never;
    } catch {
      return; // only Parley publishes on these channels; a foreign payload is not ours to deliver
    }
    for (const handler of set) handler(message);
  }

  private async messageById(visitorId: string, id: string) {
    const [entry] = await this.redis.xrange(keys.log(visitorId), id, id);
    return entry ? decodeMessage(entry[0], entry[1]) : null;
  }
}

function visitorPatchFields(p: Partial<Pick<Visitor, "name" | "email" | "page" | "referrer" | "userAgent" | "blocked">>) {
  const fields: Record<string, string> = {};
  if (p.blocked !== undefined) fields.blocked = p.blocked ? "1" : "0";
  if (p.name !== undefined) fields.name = p.name;
  if (p.email !== undefined) fields.email = p.email;
  if (p.page !== undefined) fields.page = JSON.stringify(p.page);
  if (p.referrer !== undefined) fields.referrer = p.referrer;
  if (p.userAgent !== undefined) fields.userAgent = p.userAgent;
  return fields;
}

function decodeVisitor(h: Record<string, string>): Visitor | null {
  if (!h.id) return null;
  if (!h.siteId || !h.jid || !h.tokenHash || !h.number || !h.createdAt) throw new StoredValueError(`stored visitor ${h.id} is incomplete`);
  const visitor: Visitor = { id: h.id, siteId: h.siteId, jid: h.jid, tokenHash: h.tokenHash, number: Number(h.number), createdAt: Number(h.createdAt) };
  if (h.name !== undefined) visitor.name = h.name;
  if (h.email !== undefined) visitor.email = h.email;
  if (h.page !== undefined) visitor.page = JSON.parse(h.page) as { url: string; title: string };
  if (h.referrer !== undefined) visitor.referrer = h.referrer;
  if (h.userAgent !== undefined) visitor.userAgent = h.userAgent;
  if (h.chatId !== undefined) visitor.chatId = h.chatId;
  if (h.blocked === "1") visitor.blocked = true;
  if (h.pagesSeen !== undefined) visitor.pagesSeen = Number(h.pagesSeen);
  if (h.chatCount !== undefined) visitor.chatCount = Number(h.chatCount);
  return visitor;
}

const CHAT_STATES = new Set<ChatState>(["new", "queued", "active", "offline", "ended"]);

function decodeChat(h: Record<string, string>): Chat | null {
  if (!h.id) return null;
  if (!h.siteId || !h.visitorId || !CHAT_STATES.has(h.state as ChatState) || !h.startedAt) throw new StoredValueError(`stored chat ${h.id} is invalid`);
  const chat: Chat = { id: h.id, siteId: h.siteId, visitorId: h.visitorId, state: h.state as ChatState, startedAt: Number(h.startedAt) };
  if (h.agentJid) chat.agentJid = h.agentJid;
  if (h.agentName) chat.agentName = h.agentName;
  if (h.assignedAt) chat.assignedAt = Number(h.assignedAt);
  if (h.requeuedAt) chat.requeuedAt = Number(h.requeuedAt);
  if (h.activatedAfter) chat.activatedAfter = h.activatedAfter;
  if (h.endedAt) chat.endedAt = Number(h.endedAt);
  return chat;
}

const AUTHORS = new Set(["visitor", "agent", "system", "note"]);

function decodeMessage(id: string, fields: string[]): StoredMessage {
  const f = pairsToObject(fields);
  if (!f.chatId || !AUTHORS.has(f.from ?? "") || f.text === undefined || !f.ts) throw new StoredValueError(`stored message ${id} is invalid`);
  const message: StoredMessage = { id, chatId: f.chatId, from: f.from as StoredMessage["from"], name: f.name ?? "", text: f.text, ts: Number(f.ts) };
  if (f.cid) message.clientId = f.cid;
  return message;
}

/** The show of a stored resource value, `show|round`. */
function showOfResource(value: string): AgentShow {
  const bar = value.indexOf("|");
  return (bar < 0 ? value : value.slice(0, bar)) as AgentShow;
}

/** A hash a script sent back as JSON (see `hashJson` in redis-scripts.ts). */
function hashFromJson(json: string): Record<string, string> {
  const parsed = JSON.parse(json) as unknown;
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) throw new StoredValueError("a script sent back a hash that is not a JSON object");
  return parsed as Record<string, string>;
}

function pairsToObject(pairs: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < pairs.length; i += 2) out[pairs[i]!] = pairs[i + 1]!;
  return out;
}
