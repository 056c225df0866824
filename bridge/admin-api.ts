import { timingSafeEqual, createHash } from "node:crypto";
import type { IncomingMessage, ServerResponse } from "node:http";
import type { z } from "zod";
import { SITE_ID_PATTERN } from "../stanza-mappers/addressing.js";
import { HttpError, readJson, sendError, sendJson } from "./http-util.js";
import { openApiDocument } from "./openapi.js";
import type { Logger } from "./logger.js";
import { visitorDisplayName } from "./names.js";
import { agentBodySchema, bareJidSchema, KEEP_SECRET, siteBodySchema } from "./site-schema.js";
import type { SiteService } from "./sites.js";
import { visitorIdOfChat } from "./store/ids.js";
import type { Chat, Site, Store } from "./store/types.js";
import { chatTranscript } from "./transcripts.js";

/** The admin HTTP API (CONTRACT §3): `Authorization: Bearer $PARLEY_ADMIN_TOKEN`, JSON in and out. */
export interface AdminApiDeps {
  store: Store;
  sites: SiteService;
  adminToken?: string;
  version: string;
  now(): number;
  logger: Logger;
}

const MAX_BODY = 64 * 1024;

type Route = { method: string; pattern: RegExp; handle: (req: IncomingMessage, params: string[], url: URL) => Promise<[number, unknown]> };

export class AdminApi {
  private readonly routes: Route[];
  private readonly tokenDigest: Buffer | null;
  private readonly log: Logger;
  private readonly openApi: object;

  constructor(private readonly deps: AdminApiDeps) {
    this.openApi = openApiDocument(deps.version);
    this.log = deps.logger.child({ module: "admin-api" });
    this.tokenDigest = deps.adminToken ? digest(deps.adminToken) : null;
    const site = "([^/]+)";
    this.routes = [
      { method: "GET", pattern: /^\/api\/sites$/, handle: () => this.listSites() },
      { method: "PUT", pattern: new RegExp(`^/api/sites/${site}$`), handle: (req, [id]) => this.putSite(req, id!) },
      { method: "GET", pattern: new RegExp(`^/api/sites/${site}$`), handle: async (_req, [id]) => [200, publicSite(await this.site(id!))] },
      { method: "DELETE", pattern: new RegExp(`^/api/sites/${site}$`), handle: (_req, [id]) => this.deleteSite(id!) },
      { method: "GET", pattern: new RegExp(`^/api/sites/${site}/agents$`), handle: (_req, [id]) => this.listAgents(id!) },
      { method: "PUT", pattern: new RegExp(`^/api/sites/${site}/agents/([^/]+)$`), handle: (req, [id, jid]) => this.putAgent(req, id!, jid!) },
      { method: "DELETE", pattern: new RegExp(`^/api/sites/${site}/agents/([^/]+)$`), handle: (_req, [id, jid]) => this.deleteAgent(id!, jid!) },
      { method: "GET", pattern: new RegExp(`^/api/sites/${site}/visitors$`), handle: (_req, [id]) => this.listVisitors(id!) },
      { method: "GET", pattern: new RegExp(`^/api/sites/${site}/chats$`), handle: (_req, [id], url) => this.listChats(id!, url) },
      { method: "GET", pattern: /^\/api\/chats\/([^/]+)$/, handle: (_req, [id]) => this.getChat(id!) },
    ];
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    try {
      if (url.pathname === "/api/openapi.json" && req.method === "GET") return sendJson(res, 200, this.openApi);
      if (!this.tokenDigest) throw new HttpError(503, "admin_disabled", "the admin API is off: set PARLEY_ADMIN_TOKEN");
      this.authenticate(req);
      const path = url.pathname.replace(/\/+$/, "");
      const matching = this.routes.filter((r) => r.pattern.test(path));
      if (matching.length === 0) throw new HttpError(404, "not_found", `no such endpoint ${url.pathname}`);
      const route = matching.find((r) => r.method === req.method);
      if (!route) {
        res.setHeader("allow", matching.map((r) => r.method).join(", "));
        throw new HttpError(405, "method_not_allowed", `${req.method} is not allowed here`);
      }
      const params = route.pattern.exec(path)!.slice(1).map(decodePathSegment);
      const [status, body] = await route.handle(req, params, url);
      if (status === 204) {
        res.writeHead(204).end();
        return;
      }
      sendJson(res, status, body);
    } catch (err) {
      if (err instanceof HttpError) return sendError(res, err);
      // A store that does not answer is an outage the caller can wait out (and /healthz
      // shows), not a bug of ours: say so, with the status a retrying client understands.
      if (!(await this.storeAnswers())) {
        this.log.warn({ err, method: req.method, path: url.pathname }, "admin API request failed: the store is not answering");
        return sendError(res, new HttpError(503, "unavailable", "the store (Redis) is not answering; try again"));
      }
      this.log.error({ err, method: req.method, path: url.pathname }, "admin API request failed");
      sendError(res, new HttpError(500, "internal", "internal error; see the bridge's log"));
    }
  }

  private storeAnswers(): Promise<boolean> {
    return this.deps.store.ping().then(
      () => true,
      () => false,
    );
  }

  private authenticate(req: IncomingMessage): void {
    const match = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? "");
    // Compare digests so that the comparison takes the same time whatever the token's length.
    if (!match || !timingSafeEqual(digest(match[1]!.trim()), this.tokenDigest!)) {
      throw new HttpError(401, "unauthorized", "missing or wrong bearer token");
    }
  }

  private async listSites(): Promise<[number, unknown]> {
    return [200, (await this.deps.store.listSites()).map(publicSite)];
  }

  private async putSite(req: IncomingMessage, siteId: string): Promise<[number, unknown]> {
    if (!SITE_ID_PATTERN.test(siteId)) throw new HttpError(400, "invalid", "siteId: must match [a-z0-9][a-z0-9-]{0,31}");
    const { id, ...body } = validate(siteBodySchema, await readJson(req, MAX_BODY));
    if (id !== undefined && id !== siteId) throw new HttpError(400, "invalid", `id: ${id} is not the site of this path (${siteId})`);
    const { site, created } = await this.deps.sites.putSite(siteId, body);
    return [created ? 201 : 200, publicSite(site)];
  }

  private async deleteSite(siteId: string): Promise<[number, unknown]> {
    if (!(await this.deps.sites.deleteSite(siteId))) throw new HttpError(404, "not_found", `no site ${siteId}`);
    return [204, null];
  }

  private async listAgents(siteId: string): Promise<[number, unknown]> {
    await this.site(siteId);
    const { store } = this.deps;
    const [agents, loads] = await Promise.all([store.listAgents(siteId), store.agentLoads(siteId)]);
    const result = await Promise.all(
      agents.map(async (a) => ({ jid: a.jid, name: a.name ?? null, presence: await store.getAgentPresence(a.jid), activeChats: loads.get(a.jid)?.chatIds.length ?? 0 })),
    );
    return [200, result];
  }

  private async putAgent(req: IncomingMessage, siteId: string, rawJid: string): Promise<[number, unknown]> {
    const site = await this.site(siteId);
    const jid = validate(bareJidSchema, rawJid, "jid");
    const hasBody = Number(req.headers["content-length"] ?? 0) > 0 || req.headers["transfer-encoding"] !== undefined;
    const body = hasBody ? validate(agentBodySchema, await readJson(req, MAX_BODY)) : {};
    const { agent, created } = await this.deps.sites.putAgent(site, jid, body.name);
    return [created ? 201 : 200, { jid: agent.jid, name: agent.name ?? null }];
  }

  private async deleteAgent(siteId: string, rawJid: string): Promise<[number, unknown]> {
    const site = await this.site(siteId);
    const jid = validate(bareJidSchema, rawJid, "jid");
    if (!(await this.deps.sites.removeAgent(site, jid))) throw new HttpError(404, "not_found", `${jid} is not an agent of ${siteId}`);
    return [204, null];
  }

  private async listVisitors(siteId: string): Promise<[number, unknown]> {
    await this.site(siteId);
    const { store } = this.deps;
    const ids = await store.onlineVisitors(siteId, this.deps.now());
    const visitors = await Promise.all(ids.map((id) => store.getVisitor(id)));
    return [
      200,
      visitors
        .filter((v) => v !== null)
        .map((v) => ({ id: v.id, jid: v.jid, name: visitorDisplayName(v), page: v.page ?? null, since: v.createdAt, chatId: v.chatId ?? null })),
    ];
  }

  private async listChats(siteId: string, url: URL): Promise<[number, unknown]> {
    await this.site(siteId);
    const state = url.searchParams.get("state") ?? "active";
    if (state !== "active" && state !== "queued" && state !== "ended") throw new HttpError(400, "invalid", "state: must be active, queued or ended");
    // Each chat as GET /api/chats/{id} shows it (CONTRACT §3); `messages=false` leaves the
    // transcripts out, for dashboards that poll long lists.
    const messages = url.searchParams.get("messages") ?? "true";
    if (messages !== "true" && messages !== "false") throw new HttpError(400, "invalid", "messages: must be true or false");
    const chats = await this.deps.store.listChats(siteId, state);
    return [200, await Promise.all(chats.map((c) => this.chatObject(c, messages === "true")))];
  }

  private async getChat(chatId: string): Promise<[number, unknown]> {
    const chat = visitorIdOfChat(chatId) ? await this.deps.store.getChat(chatId) : null;
    if (!chat) throw new HttpError(404, "not_found", `no chat ${chatId}`);
    return [200, await this.chatObject(chat, true)];
  }

  private async chatObject(chat: Chat, withMessages: boolean) {
    return chatTranscript(this.deps.store, chat, withMessages);
  }

  private async site(siteId: string): Promise<Site> {
    const site = SITE_ID_PATTERN.test(siteId) ? await this.deps.store.getSite(siteId) : null;
    if (!site) throw new HttpError(404, "not_found", `no site ${siteId}`);
    return site;
  }
}

/** Sites as the API shows them: the webhook secret is write-only. */
function publicSite(site: Site) {
  const { webhookSecret, ...rest } = site;
  return { ...rest, webhookSecret: webhookSecret ? KEEP_SECRET : null };
}

function validate<T>(schema: z.ZodType<T>, value: unknown, field?: string): T {
  const parsed = schema.safeParse(value);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  const path = [field, ...(issue?.path ?? [])].filter((p) => p !== undefined && p !== "").join(".") || "body";
  throw new HttpError(400, "invalid", `${path}: ${issue?.message ?? "invalid"}`);
}

/** A path segment as the client meant it; a malformed escape (`%E0%A4%A`, `%ZZ`) is the client's error, not ours. */
function decodePathSegment(segment: string): string {
  try {
    return decodeURIComponent(segment);
  } catch {
    throw new HttpError(400, "invalid", `path: ${segment} is not valid percent-encoding (UTF-8)`);
  }
}

function digest(token: string): Buffer {
  return createHash("sha256").update(token).digest();
}
