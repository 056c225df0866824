import { readFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { WebSocketServer, type WebSocket } from "ws";
import type { ClientFrame, MessageFrame, ServerFrame } from "../../widget/src/protocol.js";

// A stand-in for the bridge's HTTP side, just enough of CONTRACT §4 to drive the widget
// in a real browser: serves /widget.js and /demo?site=…, and speaks the visitor protocol
// at /visitor, with the test deciding what the "agent" says and when acks go out.

interface Visitor {
  id: string;
  token: string;
  siteId: string;
  history: MessageFrame[];
  agent: string | null;
  sockets: Set<WebSocket>;
}

export interface FakeBridgeOptions {
  widgetJs: string;
  demoHtml: string;
  /** siteId → whether an agent is online; other site ids get 404 like the bridge. */
  sites: Record<string, { agentsOnline: boolean; welcome?: string }>;
  /** More pages to serve: path → body and headers (e.g. a shop page with a strict CSP). */
  pages?: Record<string, { html: string; headers?: Record<string, string> }>;
}

export class FakeBridge {
  /** Every frame the widget sent, in arrival order. */
  readonly received: ClientFrame[] = [];
  /** Every `token` query parameter the widget connected with ("" for none). */
  readonly connectTokens: string[] = [];
  /** When true, messages are stored but not acknowledged until releaseAcks(). */
  holdAcks = false;
  private held: { visitor: Visitor; frame: Extract<ClientFrame, { type: "message" }> }[] = [];
  /** When true, welcomes wait for releaseWelcomes(): a connection the widget made but the bridge has not answered yet. */
  holdWelcomes = false;
  private heldWelcomes: (() => void)[] = [];
  private readonly visitors = new Map<string, Visitor>();
  private seq = 0;
  private waiters: (() => void)[] = [];

  private constructor(
    private readonly http: Server,
    private readonly wss: WebSocketServer,
    private readonly opts: FakeBridgeOptions,
  ) {}

  static async start(opts: FakeBridgeOptions): Promise<FakeBridge> {
    const http = createServer();
    const wss = new WebSocketServer({ noServer: true });
    const fake = new FakeBridge(http, wss, opts);
    http.on("request", (req, res) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (url.pathname === "/widget.js") {
        res.writeHead(200, { "content-type": "text/javascript; charset=utf-8" }).end(opts.widgetJs);
      } else if (url.pathname === "/demo" && url.searchParams.get("site") && /^[a-z0-9-]+$/.test(url.searchParams.get("site")!)) {
        res.writeHead(200, { "content-type": "text/html; charset=utf-8" }).end(opts.demoHtml.replaceAll("{{SITE_ID}}", url.searchParams.get("site")!));
      } else if (opts.pages?.[url.pathname]) {
        const page = opts.pages[url.pathname]!;
        res.writeHead(200, { "content-type": "text/html; charset=utf-8", ...page.headers }).end(page.html);
      } else {
        res.writeHead(404).end();
      }
    });
    http.on("upgrade", (req, socket, head) => {
      const url = new URL(req.url ?? "/", "http://x");
      const siteId = url.searchParams.get("site") ?? "";
      if (url.pathname !== "/visitor" || !opts.sites[siteId]) {
        socket.end("HTTP/1.1 404 Not Found\r\n\r\n");
        return;
      }
      wss.handleUpgrade(req, socket, head, (ws) => fake.accept(ws, siteId, url.searchParams.get("token") ?? ""));
    });
    await new Promise<void>((resolve) => http.listen(0, "127.0.0.1", resolve));
    return fake;
  }

  get origin(): string {
    return `http://127.0.0.1:${(this.http.address() as AddressInfo).port}`;
  }

  /** Sends a frame to every open socket of every visitor (tests use one visitor). */
  toVisitors(frame: ServerFrame): void {
    for (const v of this.visitors.values()) {
      if (frame.type === "message") v.history.push(frame);
      if (frame.type === "agent") v.agent = frame.state === "joined" ? frame.name : null;
      for (const ws of v.sockets) ws.send(JSON.stringify(frame));
    }
  }

  agentSays(name: string, text: string): void {
    this.toVisitors({ type: "message", messageId: this.nextId("m"), from: "agent", name, text, ts: Date.now() });
  }

  releaseWelcomes(): void {
    this.holdWelcomes = false;
    for (const send of this.heldWelcomes.splice(0)) send();
  }

  /** How many distinct visitors connected (resumed ones count once). */
  get visitorCount(): number {
    return new Set([...this.visitors.values()].map((v) => v.id)).size;
  }

  releaseAcks(): void {
    const held = this.held;
    this.held = [];
    for (const h of held) this.store(h.visitor, h.frame);
  }

  /** Closes every visitor socket, e.g. with 1012 as the bridge does on restart, or 4404 for a deleted site. */
  closeAll(code: number, reason = "restart"): void {
    for (const v of this.visitors.values()) for (const ws of v.sockets) ws.close(code, reason);
  }

  /** Resolves with the first received frame (past or future) matching `match`. */
  async waitFor<T extends ClientFrame["type"]>(
    type: T,
    match: (f: Extract<ClientFrame, { type: T }>) => boolean = () => true,
    timeoutMs = 10_000,
  ): Promise<Extract<ClientFrame, { type: T }>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.framesOf(type).find(match);
      if (hit) return hit;
      if (Date.now() > deadline) throw new Error(`no ${type} frame arrived; got ${JSON.stringify(this.received)}`);
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
  }

  framesOf<T extends ClientFrame["type"]>(type: T): Extract<ClientFrame, { type: T }>[] {
    return this.received.filter((f): f is Extract<ClientFrame, { type: T }> => f.type === type);
  }

  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    this.http.closeAllConnections();
    await new Promise<void>((resolve) => this.http.close(() => resolve()));
  }

  private accept(ws: WebSocket, siteId: string, token: string): void {
    this.connectTokens.push(token);
    const known = this.visitors.get(token);
    const resumed = known !== undefined && known.siteId === siteId;
    const visitor: Visitor = resumed
      ? known
      : { id: this.nextId("v"), token: this.nextId("tok"), siteId, history: [], agent: null, sockets: new Set() };
    this.visitors.set(visitor.token, visitor);
    visitor.sockets.add(ws);
    ws.on("close", () => visitor.sockets.delete(ws));
    ws.on("message", (data) => {
      const frame = JSON.parse(String(data)) as ClientFrame;
      this.received.push(frame);
      if (frame.type === "message") {
        if (this.holdAcks) this.held.push({ visitor, frame });
        else this.store(visitor, frame);
      }
      if (frame.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
      for (const wake of this.waiters.splice(0)) wake();
    });
    const welcome: ServerFrame = {
      type: "welcome",
      visitorId: visitor.id,
      token: visitor.token,
      resumed,
      agentsOnline: this.opts.sites[siteId]!.agentsOnline,
      agent: visitor.agent ? { name: visitor.agent } : null,
      history: visitor.history,
      ...(this.opts.sites[siteId]!.welcome ? { welcome: this.opts.sites[siteId]!.welcome } : {}),
    };
    if (this.holdWelcomes) this.heldWelcomes.push(() => ws.send(JSON.stringify(welcome)));
    else ws.send(JSON.stringify(welcome));
  }

  /** Stores once per client id and acks every time, like the bridge (CONTRACT §4). */
  private store(visitor: Visitor, frame: Extract<ClientFrame, { type: "message" }>): void {
    let stored = visitor.history.find((m) => m.id === frame.id);
    if (!stored) {
      stored = { type: "message", messageId: this.nextId("m"), from: "visitor", name: "", text: frame.text, ts: Date.now(), id: frame.id };
      visitor.history.push(stored);
    }
    const ack: ServerFrame = { type: "ack", id: frame.id, messageId: stored.messageId, ts: stored.ts };
    for (const ws of visitor.sockets) if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(ack));
  }

  private nextId(prefix: string): string {
    return `${prefix}-${++this.seq}`;
  }
}

export function readWidgetAssets(root: URL): { widgetJs: string; demoHtml: string } {
  return {
    widgetJs: readFileSync(new URL("dist/widget.js", root), "utf8"),
    demoHtml: readFileSync(new URL("widget/demo.html", root), "utf8"),
  };
}
