import { monitorEventLoopDelay } from "node:perf_hooks";
import type { AddressInfo } from "node:net";
import type { Element } from "@xmpp/xml";
import { deskJid } from "../stanza-mappers/addressing.js";
import { pingToStanza } from "../stanza-mappers/ping.js";
import { stanzaToPrivilegeGrant } from "../stanza-mappers/privileges.js";
import { AdminApi } from "./admin-api.js";
import { registerAdhocCommands } from "./adhoc-commands.js";
import { AgentMessages } from "./agent-messages.js";
import { ChatService, type LocalDelivery } from "./chats.js";
import { CommandService } from "./commands.js";
import type { Config } from "./config.js";
import { createHttpServer, listen } from "./http-server.js";
import { KeyedQueue } from "./keyed-queue.js";
import { createLogger, type Logger } from "./logger.js";
import { createMetrics } from "./metrics.js";
import { PresenceService } from "./presence.js";
import { newProcessId, processOfStanzaId, stanzaIdFactory } from "./process-ids.js";
import { Outbox } from "./outbox.js";
import { Rosters } from "./rosters.js";
import { registerLifecycleTimers } from "./lifecycle.js";
import { Scheduler } from "./scheduler.js";
import { SiteService } from "./sites.js";
import { Webhooks } from "./webhooks.js";
import { MemoryStore } from "./store/memory-store.js";
import { RedisStore } from "./store/redis-store.js";
import { withSiteCache } from "./store/site-cache.js";
import type { Store } from "./store/types.js";
import { VisitorGateway } from "./visitor-gateway.js";
import { packageRoot } from "./package-root.js";
import { VisitorService } from "./visitors.js";
import { IqError, XmppLink } from "./xmpp-link.js";
import { registerServiceIqs } from "./xmpp-service.js";

/**
 * The composition root: config → logger → store → XMPP link → services → HTTP. The only
 * place that creates dependencies; everything else receives the narrow parts it uses.
 */
export interface Bridge {
  /** The HTTP address actually bound (port 0 picks a free one). */
  readonly httpUrl: string;
  readonly store: Store;
  readonly link: XmppLink;
  /** Starts the ids of this process's IQs, so that answers balanced elsewhere find their way back. */
  readonly processId: string;
  stop(): Promise<void>;
}

const DAY_MS = 24 * 3600 * 1000;
/** How long ejabberd may take to answer the ping that confirms written visitor messages (see outbox.ts). */
const ROUTING_CONFIRMATION_TIMEOUT_MS = 5000;

export async function startBridge(config: Config, logger: Logger = createLogger(config.logLevel)): Promise<Bridge> {
  const { version } = packageRoot;
  const now = () => Date.now();
  const idPrefix = newProcessId();
  const newId = stanzaIdFactory(idPrefix);

  const backend: Store =
    config.redis.kind === "memory"
      ? new MemoryStore()
      : new RedisStore(config.redis.kind === "redis" ? { url: config.redis.url } : { clusterNodes: config.redis.nodes }, (err) =>
          logger.child({ module: "store" }).warn({ err: err.message }, "redis error"),
        );
  // Sites and agents are read on every message: keep them for a second (see site-cache.ts).
  const store = withSiteCache(backend, { ttlMs: 1000, now });
  // Event-loop lag: the first sign of an overloaded process (reported in /healthz and /metrics).
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const metrics = createMetrics(() => store.chatStateCounts(), loopDelay);
  const link = new XmppLink({ service: config.xmppService, domain: config.xmppDomain, secret: config.xmppSecret, logger, maxQueued: config.xmppQueueMax });
  const send = (stanza: Element) => link.send(stanza);
  const lanes = new KeyedQueue();
  const domain = config.xmppDomain;

  const rosters = new Rosters({
    domain,
    send,
    request: (iq, timeoutMs) => link.request(iq, timeoutMs),
    newId,
    logger,
    ...(config.ejabberdApiUrl ? { ejabberdApi: { url: config.ejabberdApiUrl, ...(config.ejabberdApiAuth ? { auth: config.ejabberdApiAuth } : {}) } } : {}),
  });
  // Desk status lines follow the site's state; refreshes are coalesced per site.
  const pendingDeskRefresh = new Set<string>();
  const onChange = (siteId: string) => {
    if (pendingDeskRefresh.has(siteId)) return;
    pendingDeskRefresh.add(siteId);
    setImmediate(() => {
      pendingDeskRefresh.delete(siteId);
      void store
        .getSite(siteId)
        .then((site) => site && presence.refreshDesk(site))
        .catch((err: unknown) => logger.warn({ err, siteId }, "desk refresh failed"));
    });
  };
  const scheduler = new Scheduler({ store, now, logger });
  const webhooks = new Webhooks({ store, scheduler, now, logger });
  // Visitor messages not yet written to ejabberd survive this process (see outbox.ts).
  const outbox = new Outbox({
    store,
    processId: idPrefix,
    lanes,
    now,
    logger,
    redeliver: (visitorId, ids): Promise<void> => chats.redeliver(visitorId, ids),
    confirmRouted: (jid) =>
      link.request(pingToStanza({ from: domain, to: jid, id: newId() }), ROUTING_CONFIRMATION_TIMEOUT_MS).then(
        () => true,
        (err: unknown) => err instanceof IqError && err.answered,
      ),
  });
  // Frames for visitors whose sockets are here go straight to them (the gateway is built below).
  const local: LocalDelivery = { processId: idPrefix, deliver: (visitorId, frame) => gateway.deliver(visitorId, frame) };
  const chats = new ChatService({
    store,
    local,
    domain,
    send,
    relaySend: (stanza) => link.send(stanza),
    outbox,
    rosters,
    lanes,
    now,
    logger,
    onChange,
    scheduler,
    events: webhooks,
    retentionMs: config.transcriptRetentionDays * DAY_MS,
  });
  const presence = new PresenceService({ store, domain, send, chats, scheduler, agentGraceMs: config.agentGraceMs, restoreDesk: (site, jid): Promise<void> => sites.addDesk(site, jid), now, newId, logger });
  const commands = new CommandService({ store, deskJid: (siteId) => deskJid(siteId, domain), send, chats, now, newId, logger });
  const agentMessages = new AgentMessages({ store, domain, send, chats, commands, lanes, now, newId, logger, metrics });
  const visitorRetentionMs = config.visitorRetentionDays * DAY_MS;
  const visitors = new VisitorService({ store, domain, send, chats, presence, lanes, now, newId, logger, metrics, scheduler, outbox, graceMs: config.visitorGraceMs, heartbeatMs: config.heartbeatMs, retentionMs: visitorRetentionMs, chatIdleMs: config.chatIdleMs });
  const sites = new SiteService({
    store,
    domain,
    rosters,
    presence,
    now,
    logger,
    onSiteChanged: (site) => chats.drainQueue(site),
    onSiteDeleted: async (site) => {
      const ended = await chats.endOpenChats(site);
      if (ended > 0) logger.info({ siteId: site.id, ended }, "open chats of a deleted site ended");
    },
    onAgentRemoved: (site, agentJid) => chats.moveChatsOf(site, agentJid, `You are no longer an agent of ${site.name}.`),
  });
  registerLifecycleTimers({ store, scheduler, chats, presence, webhooks, lanes, agentGraceMs: config.agentGraceMs, chatIdleMs: config.chatIdleMs, visitorRetentionMs, logger });
  const gateway = new VisitorGateway({ store, visitors, logger, metrics, now, visitorRate: config.visitorRate, upgradeRate: config.upgradeRate, socketRate: config.socketRate, socketsPerAddress: config.socketsPerAddress, heartbeatMs: config.heartbeatMs, processId: idPrefix, deadProcesses: (ids) => outbox.deadAmong(ids) });
  // The admin API reads past the site cache: an admin who writes through one process and
  // reads through another (a load balancer) sees what they just wrote, not a cached copy up
  // to 1 s old. Its writes go through `sites`, which clears this process's cache.
  const adminApi = new AdminApi({ store: backend, sites, now, logger, version, ...(config.adminToken ? { adminToken: config.adminToken } : {}) });

  const xmppLog = logger.child({ module: "xmpp" });
  const guarded = (what: string, task: () => Promise<void>) =>
    task().catch((err: unknown) => xmppLog.warn({ err, what }, "stanza handling failed"));
  link.on("message", (stanza: Element) => {
    const grant = stanzaToPrivilegeGrant(stanza);
    if (grant) rosters.grant(grant);
    else void guarded("message", () => agentMessages.onMessage(stanza));
  });
  // IQ answers that ejabberd balanced to this process but another one asked for.
  link.on("foreign-iq-answer", (answer: { id: string; type: "result" | "error"; condition?: string; from?: string }) => {
    // An id no process of ours made has nobody to go to (publishing would reach no channel).
    const owner = processOfStanzaId(answer.id);
    if (owner && owner !== idPrefix) void store.publishToProcess(owner, { kind: "iq-result", ...answer }).catch(() => {});
  });
  const processSubscription = store.subscribeProcess(idPrefix, (message) => {
    if (message.kind === "visitor-frame") gateway.deliver(message.visitorId, message.frame);
    else if (message.kind === "iq-result") link.settleIq(message);
    else if (message.kind === "relay-if-stopped") void guarded("relay a message resent elsewhere", () => lanes.run(message.visitorId, () => visitors.relayIfStopped(message.visitorId, message.messageId)));
  });
  link.on("presence", (stanza: Element) => void guarded("presence", () => presence.onPresence(stanza)));
  link.on("online", () => {
    metrics.componentOnline.set(1);
    if (link.reconnects > 0) metrics.componentReconnects.inc();
    void guarded("announce desks", () => sites.announceDesks());
    void guarded("resend dropped visitor messages", () => outbox.resendDropped());
  });
  link.on("offline", () => {
    metrics.componentOnline.set(0);
    rosters.clearGrants();
    outbox.linkLost();
  });
  registerServiceIqs(link, { domain, version, store });
  registerAdhocCommands(link, { domain, store, commands, lanes });

  if (config.adminToken && config.adminToken.length < 16) logger.warn("PARLEY_ADMIN_TOKEN is short: use at least 16 random characters");
  // The subscription first: it completes once the subscriber connection is up, which the
  // ping checks too (pinging first warned on every start, while that connection was coming up).
  await processSubscription.catch((err: unknown) => logger.warn({ err }, "could not subscribe to this process's channel yet"));
  await store.ping().catch((err: unknown) => logger.warn({ err }, "store not answering yet; continuing"));
  if (config.sitesFile) {
    const count = await sites.applySitesFile(config.sitesFile);
    logger.info({ sites: count, file: config.sitesFile }, "sites file applied");
  }
  link.start();
  scheduler.start();
  outbox.start();

  const health = async () => {
    const storeUp = await store.ping().then(
      () => true,
      () => false,
    );
    const eventLoopLagMs = { p50: round(loopDelay.percentile(50) / 1e6), p99: round(loopDelay.percentile(99) / 1e6), max: round(loopDelay.max / 1e6) };
    return {
      ok: storeUp && link.online,
      parts: { xmpp: link.online ? "up" : "down", store: storeUp ? "up" : "down", storeKind: store.kind, process: idPrefix, xmppQueued: link.queued, eventLoopLagMs },
    };
  };
  const server = createHttpServer({ gateway, adminApi, metrics, health, logger });
  await listen(server, config.httpHost, config.httpPort);
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const httpUrl = `http://${host}:${address.port}`;
  logger.info({ httpUrl, domain, store: store.kind }, "parley bridge started");

  return {
    httpUrl,
    store,
    link,
    processId: idPrefix,
    async stop() {
      logger.info("stopping: closing visitor sockets (1012), flushing, disconnecting");
      server.close();
      await gateway.close();
      await scheduler.stop();
      await outbox.stop();
      // Not awaited: with Redis unreachable it would wait for its return; closing the store ends it anyway.
      void processSubscription.then((unsubscribe) => unsubscribe()).catch(() => {});
      await link.stop();
      server.closeAllConnections();
      await store.close();
      loopDelay.disable();
      logger.info("stopped");
    },
  };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
