// The visitor WebSocket: connect, heartbeat, reconnect with backoff. Resending what was
// not acknowledged is the session's job (it knows what is pending); this file only
// reports frames in and the link going down.

import { planReconnect } from "./backoff.js";
import { parseServerFrame, SERVICE_RESTART_CLOSE_CODE, type ClientFrame, type ServerFrame } from "./protocol.js";

export interface ConnectionDeps {
  /** Called before every attempt: the resume token may have changed since the last one. */
  url: () => string;
  onFrame: (frame: ServerFrame) => void;
  /**
   * The socket is gone. "reconnecting": a retry is scheduled soon; "unavailable": the bridge
   * keeps refusing or said the site is gone, so the retries are rare or over.
   */
  onDown: (outlook: "reconnecting" | "unavailable") => void;
  random: () => number;
  WebSocketImpl?: typeof WebSocket;
}

// Mobile networks and proxies silently drop idle sockets; a ping every 25 s keeps them
// open and, left unanswered until the next one, reveals a dead link the browser has
// not noticed. Counting missed pings (not wall time) tolerates background-tab throttling.
const HEARTBEAT_MS = 25_000;

export class Connection {
  private socket: WebSocket | null = null;
  /** Closes since the last welcome: how long the bridge has been refusing or unreachable. */
  private failures = 0;
  /** The bridge said this site is gone: nothing will bring the socket back on this page. */
  private stopped = false;
  /** Not before the first start: a tab waiting for its turn to connect (first-visit.ts) waits on. */
  private started = false;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private heartbeat: ReturnType<typeof setInterval> | undefined;
  private awaitingPong = false;

  constructor(private readonly deps: ConnectionDeps) {}

  start(): void {
    this.started = true;
    clearTimeout(this.retryTimer);
    const Impl = this.deps.WebSocketImpl || WebSocket;
    let socket: WebSocket;
    try {
      socket = new Impl(this.deps.url());
    } catch {
      // Only a malformed URL throws here; retrying cannot fix it, but backing off keeps
      // the behaviour uniform and the page responsive.
      this.afterClose(undefined);
      return;
    }
    this.socket = socket;
    socket.onmessage = (ev) => {
      this.awaitingPong = false;
      if (typeof ev.data !== "string") return;
      const frame = parseServerFrame(ev.data);
      if (!frame) return;
      // Reset the backoff only once the bridge has accepted us, not on TCP open: a site
      // that refuses the upgrade or closes at once must not cause a tight retry loop.
      if (frame.type === "welcome") this.failures = 0;
      this.deps.onFrame(frame);
    };
    socket.onopen = () => {
      this.awaitingPong = false;
      this.heartbeat = setInterval(() => this.beat(), HEARTBEAT_MS);
    };
    socket.onclose = (ev) => this.down(ev.code);
  }

  /** Sends if the socket is open; returns false otherwise (the session resends later). */
  send(frame: ClientFrame): boolean {
    const s = this.socket;
    if (!s || s.readyState !== 1 /* OPEN */) return false;
    s.send(JSON.stringify(frame));
    return true;
  }

  /**
   * Skips the remaining wait, e.g. when the browser reports the network is back or the
   * page becomes visible again; never before the first start, nor after the bridge said
   * the site is gone.
   */
  retryNow(): void {
    if (this.started && !this.socket && !this.stopped) this.start();
  }

  private beat(): void {
    if (this.awaitingPong) {
      this.down(undefined);
      return;
    }
    this.awaitingPong = true;
    this.send({ type: "ping" });
  }

  private down(code: number | undefined): void {
    const s = this.socket;
    if (!s) return;
    // Detach first: after a heartbeat timeout the browser may deliver `close` much later,
    // and that late event must not tear down the socket that replaced this one.
    s.onopen = s.onmessage = s.onclose = null;
    if (s.readyState < 2 /* CONNECTING or OPEN */) s.close();
    this.socket = null;
    clearInterval(this.heartbeat);
    this.afterClose(code);
  }

  private afterClose(code: number | undefined): void {
    // A restart is the bridge's doing, not a sign that it refuses us.
    if (code !== SERVICE_RESTART_CLOSE_CODE) this.failures++;
    const plan = planReconnect(code, this.failures, this.deps.random);
    if (plan.kind === "stop") this.stopped = true;
    else this.retryTimer = setTimeout(() => this.start(), plan.delayMs);
    this.deps.onDown(plan.kind === "retry" ? "reconnecting" : "unavailable");
  }
}
