import { randomBytes } from "node:crypto";
import WebSocket from "ws";
import type { ServerFrame } from "../../stanza-mappers/visitor-protocol.js";
import { Inbox } from "./inbox.js";

type WelcomeFrame = Extract<ServerFrame, { type: "welcome" }>;

/** A visitor's browser tab, speaking the WebSocket protocol of CONTRACT §4. */
export class VisitorClient {
  readonly frames = new Inbox<ServerFrame>();
  readonly closed: Promise<{ code: number; reason: string }>;
  welcome!: WelcomeFrame;
  private counter = 0;
  /**
   * Client ids are deduplicated per visitor, across tabs: two tabs of one visitor must never
   * pick the same id (with a counter and a timestamp alone, two tabs sending their n-th
   * message within the same millisecond did, and the second message was taken for a resend).
   */
  private readonly idPrefix = randomBytes(6).toString("hex");

  private constructor(readonly ws: WebSocket) {
    ws.on("message", (data) => this.frames.push(JSON.parse(String(data)) as ServerFrame));
    this.closed = new Promise((resolve) => ws.on("close", (code, reason) => resolve({ code, reason: String(reason) })));
  }

  /**
   * `localAddress`: the source address (127.0.0.2… to be a client the per-address limits
   * count; 127.0.0.1 is not). `maxPayload`: the largest frame this client accepts; a larger
   * one closes the socket (1009), as a client enforcing the protocol's 16 KiB would.
   */
  static async connect(httpUrl: string, siteId: string, options: { token?: string; origin?: string; headers?: Record<string, string>; localAddress?: string; maxPayload?: number } = {}): Promise<VisitorClient> {
    const url = new URL("/visitor", httpUrl.replace(/^http/, "ws"));
    url.searchParams.set("site", siteId);
    if (options.token) url.searchParams.set("token", options.token);
    const ws = new WebSocket(url, {
      ...(options.origin ? { origin: options.origin } : {}),
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.localAddress ? { localAddress: options.localAddress } : {}),
      ...(options.maxPayload ? { maxPayload: options.maxPayload } : {}),
    });
    const client = new VisitorClient(ws);
    await new Promise<void>((resolve, reject) => {
      ws.once("open", () => resolve());
      ws.once("error", reject);
      ws.once("unexpected-response", (_req, res) => reject(Object.assign(new Error(`upgrade refused: ${res.statusCode}`), { status: res.statusCode })));
    });
    client.welcome = (await client.next("welcome")) as WelcomeFrame;
    return client;
  }

  /** The next frame of this type (and matching `match`, if given). */
  next<K extends ServerFrame["type"]>(type: K, match: (f: Extract<ServerFrame, { type: K }>) => boolean = () => true, timeoutMs?: number) {
    return this.frames.next((f) => f.type === type && match(f as Extract<ServerFrame, { type: K }>), `a ${type} frame`, timeoutMs) as Promise<
      Extract<ServerFrame, { type: K }>
    >;
  }

  send(frame: unknown): void {
    this.ws.send(typeof frame === "string" ? frame : JSON.stringify(frame));
  }

  /** Sends a chat message and waits until the bridge acknowledges it as stored. */
  async say(text: string, id = `${this.idPrefix}-${++this.counter}`) {
    this.send({ type: "message", id, text });
    return this.next("ack", (a) => a.id === id);
  }

  stop(): Promise<void> {
    return this.close();
  }

  async close(): Promise<void> {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close();
    await this.closed;
  }
}
