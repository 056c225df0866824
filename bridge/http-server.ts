import { once } from "node:events";
import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { join } from "node:path";
import { SITE_ID_PATTERN } from "../stanza-mappers/addressing.js";
import type { AdminApi } from "./admin-api.js";
import { ConfigError } from "./config.js";
import { HttpError, sendError, sendJson } from "./http-util.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { packageRoot } from "./package-root.js";
import type { VisitorGateway } from "./visitor-gateway.js";

/**
 * One HTTP listener for everything visitors and admins reach (CONTRACT §2): the widget,
 * the demo page, the visitor WebSocket, the admin API, health and metrics.
 */
export interface HttpDeps {
  gateway: VisitorGateway;
  adminApi: AdminApi;
  metrics: Metrics;
  health(): Promise<{ ok: boolean; parts: Record<string, unknown> }>;
  logger: Logger;
}

export function createHttpServer(deps: HttpDeps): Server {
  const log = deps.logger.child({ module: "http" });
  // Node enforces the timeouts below only when it checks, every 30 s by default: a client
  // trickling its headers (slowloris) held a socket for up to 40 s instead of 10, and no
  // other limit applies before the headers are complete. Checked every second, they hold.
  const server = createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      // An HttpError is an answer (a missing asset is a 404), anything else our fault.
      if (err instanceof HttpError) log.debug({ err, url: req.url }, "request refused");
      else log.error({ err, url: req.url }, "request failed");
      if (!res.headersSent) sendError(res, err instanceof HttpError ? err : new HttpError(500, "internal", "internal error"));
      else res.destroy();
    });
  });
  // Slow or half-open clients must not hold sockets forever.
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 5_000;

  server.on("upgrade", (req, socket, head) => {
    const url = new URL(req.url ?? "/", "http://parley.invalid");
    if (url.pathname !== "/visitor") {
      socket.end("HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      return;
    }
    deps.gateway.handleUpgrade(req, socket, head, url).catch((err: unknown) => {
      log.error({ err }, "upgrade failed");
      socket.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://parley.invalid");
    if (url.pathname === "/api" || url.pathname.startsWith("/api/")) return deps.adminApi.handle(req, res, url);
    if (req.method !== "GET" && req.method !== "HEAD") return sendError(res, new HttpError(405, "method_not_allowed", "only GET here"));
    switch (url.pathname) {
      case "/healthz": {
        const { ok, parts } = await deps.health();
        return sendJson(res, ok ? 200 : 503, { status: ok ? "ok" : "degraded", ...parts });
      }
      case "/metrics": {
        const body = await deps.metrics.registry.metrics();
        res.writeHead(200, { "content-type": deps.metrics.registry.contentType });
        res.end(body);
        return;
      }
      case "/widget.js":
        return sendAsset(res, "dist/widget.js", "text/javascript; charset=utf-8");
      case "/demo": {
        const siteId = url.searchParams.get("site") ?? "";
        // The id goes into HTML unescaped, so only well-formed ids are accepted.
        if (!SITE_ID_PATTERN.test(siteId)) return sendError(res, new HttpError(400, "invalid", "site: must match [a-z0-9][a-z0-9-]{0,31}"));
        const page = (await readAsset("widget/demo.html")).toString("utf8").replaceAll("{{SITE_ID}}", siteId);
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" });
        res.end(page);
        return;
      }
      case "/":
        res.writeHead(302, { location: "/demo?site=demo" }).end();
        return;
      default:
        return sendError(res, new HttpError(404, "not_found", `nothing at ${url.pathname}`));
    }
  }

  async function sendAsset(res: ServerResponse, path: string, type: string): Promise<void> {
    const body = await readAsset(path);
    res.writeHead(200, { "content-type": type, "content-length": body.length, "cache-control": "public, max-age=300", "access-control-allow-origin": "*" });
    res.end(body);
  }

  return server;
}

/**
 * Binds the server. The usual failures are the operator's to fix, so they are
 * configuration errors naming the variable (CONTRACT §2), not `listen EADDRINUSE …`.
 */
export async function listen(server: Server, host: string, port: number): Promise<void> {
  server.listen(port, host);
  try {
    await once(server, "listening");
  } catch (err) {
    const problem = listenProblem((err as NodeJS.ErrnoException).code, host, port);
    if (problem) throw new ConfigError(`invalid configuration: ${problem}`, { cause: err });
    throw err;
  }
}

function listenProblem(code: string | undefined, host: string, port: number): string | null {
  switch (code) {
    case "EADDRINUSE":
      return `PARLEY_HTTP_PORT ${port} is already in use on ${host}`;
    case "EACCES":
      return `PARLEY_HTTP_PORT ${port} may not be bound by this user on ${host} (ports below 1024 need privileges)`;
    case "EADDRNOTAVAIL":
      return `PARLEY_HTTP_HOST ${host} is not an address of this machine`;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      return `PARLEY_HTTP_HOST ${host} does not resolve to an address`;
    default:
      return null;
  }
}

async function readAsset(path: string): Promise<Buffer> {
  try {
    return await readFile(join(packageRoot.dir, path));
  } catch {
    throw new HttpError(404, "not_built", `${path} is missing: run npm run build`);
  }
}
