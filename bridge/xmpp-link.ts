import { EventEmitter } from "node:events";
import { component, type Component, type IqContext } from "@xmpp/component";
import type { Element } from "@xmpp/xml";
import { isAnswerFrom } from "../stanza-mappers/iq-answers.js";
import { backoffDelay, type BackoffSpec } from "./backoff.js";
import type { Logger } from "./logger.js";
import { corkForThisTurn } from "./write-batching.js";

/**
 * The only user of @xmpp/component (XEP-0114). It owns the connection to ejabberd:
 * - reconnects with capped exponential backoff and jitter (instead of xmpp.js's fixed 1 s),
 *   capped at 3 s so that the bridge is back within seconds of ejabberd's listener;
 * - keeps an ordered outbound queue while disconnected and flushes it, in order, first;
 * - tells the caller when a stanza has been written to the socket (`send` resolves `true`),
 *   which is what the durable outbox waits for before marking a visitor message relayed, or
 *   dropped from a full queue (`false`), so that the caller can send it again later;
 * - fixes two xmpp.js 0.13 traps: Nagle (≈44 ms per round trip) and UTF-8 sequences
 *   split across TCP reads; and survives input that makes its parser throw.
 *
 * Events: `online`, `offline`, `message` (Element), `presence` (Element).
 */
export interface XmppLinkOptions {
  service: string;
  domain: string;
  secret: string;
  logger: Logger;
  backoff?: BackoffSpec;
  /** Outbound stanzas kept while disconnected; beyond it the oldest are dropped (and logged). */
  maxQueued?: number;
}

interface Outbound {
  stanza: Element;
  /** `true` once written to the socket, `false` when dropped from a full queue. */
  settle(written: boolean): void;
}

/** Returns the child of the result, `true` for an empty result, or an `<error/>` element. */
export type IqHandler = (ctx: IqContext) => Element | true | Promise<Element | true>;

export class XmppLink extends EventEmitter {
  private readonly entity: Component;
  private readonly log: Logger;
  private readonly backoff: BackoffSpec;
  private readonly maxQueued: number;
  private readonly queue: Outbound[] = [];
  /** Requests awaiting their answer, with whom they went to: only that entity (or its server) may answer. */
  private readonly pendingIqs = new Map<string, { to: string; resolve(el: Element | null): void; reject(err: Error): void; timer: NodeJS.Timeout }>();
  private attempt = 0;
  /** Stanzas dropped from the full queue since the last connection (logged once per outage). */
  private droppedWhileOffline = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private stopped = true;
  private connected = false;
  /** Whether ejabberd refused the handshake since the last time the stream was up (logged once per streak). */
  private handshakeRefused = false;
  /** The last error `onError` logged: a failed connect reports it twice (the `error` event, then the rejection). */
  private lastLoggedError: unknown;
  reconnects = 0;

  constructor(private readonly options: XmppLinkOptions) {
    super();
    this.log = options.logger.child({ module: "xmpp-link" });
    this.backoff = options.backoff ?? { baseMs: 250, maxMs: 3_000 };
    this.maxQueued = options.maxQueued ?? 200_000;
    this.entity = component({ service: options.service, domain: options.domain, password: options.secret });
    this.entity.reconnect.stop();
    this.guardParser();

    this.entity.on("connect", () => {
      const socket = this.entity.socket;
      socket?.setNoDelay(true);
      socket?.setEncoding("utf8");
    });
    this.entity.on("online", () => this.onOnline());
    this.entity.on("disconnect", () => this.onDisconnect());
    this.entity.on("error", (err: Error) => this.onError(err));
    this.entity.on("stanza", (stanza: Element) => {
      if (stanza.name === "message") this.emit("message", stanza);
      else if (stanza.name === "presence") this.emit("presence", stanza);
      else if (stanza.name === "iq" && (stanza.attrs.type === "result" || stanza.attrs.type === "error")) this.onIqAnswer(stanza);
    });
  }

  get online(): boolean {
    return this.connected;
  }

  get queued(): number {
    return this.queue.length;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.connect();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.retryTimer);
    if (this.entity.status !== "offline") await this.entity.stop().catch(() => {});
  }

  /**
   * Sends now if online; otherwise queues in order for the next connection. Resolves `true`
   * once the stanza is written to the socket (after a reconnect, if need be), `false` if it
   * was dropped because the queue overflowed while ejabberd was unreachable; never rejects.
   */
  send(stanza: Element): Promise<boolean> {
    return new Promise<boolean>((settle) => {
      const outbound = { stanza, settle };
      if (!this.connected || this.queue.length > 0) this.enqueue(outbound);
      else this.write(outbound);
    });
  }

  /**
   * Sends an IQ (whose id the caller made unique) and waits for its answer, which may
   * arrive here or, forwarded by another process, through `settleIq`. Rejects at once
   * while offline, with an `IqError` carrying the condition on an error answer.
   */
  async request(iq: Element, timeoutMs: number): Promise<Element | null> {
    if (!this.connected) throw new Error("xmpp link is offline");
    const { id, to } = iq.attrs;
    if (!id || !to) throw new Error("an IQ request needs an id and a to");
    return new Promise<Element | null>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingIqs.delete(id);
        reject(new IqError("remote-server-timeout", `no answer to IQ ${id} within ${timeoutMs} ms`, false));
      }, timeoutMs);
      this.pendingIqs.set(id, { to, resolve, reject, timer });
      void this.send(iq); // resolves once written; never rejects
    });
  }

  /**
   * Settles a request of this process with an answer received here or by another process;
   * false if it answers no request of this process. An answer with the right id from
   * someone other than the entity asked is ignored: ids are guessable, senders are not.
   */
  settleIq(answer: { id: string; type: "result" | "error"; condition?: string; from?: string }, stanza: Element | null = null): boolean {
    const pending = this.pendingIqs.get(answer.id);
    if (!pending) return false;
    if (!isAnswerFrom(pending.to, answer.from)) {
      this.log.debug({ id: answer.id, from: answer.from, expected: pending.to }, "IQ answer from another sender than the one asked ignored");
      return false;
    }
    this.pendingIqs.delete(answer.id);
    clearTimeout(pending.timer);
    if (answer.type === "result") pending.resolve(stanza);
    else pending.reject(new IqError(answer.condition ?? "undefined-condition", `IQ ${answer.id} failed: ${answer.condition ?? "error"}`));
    return true;
  }

  private onIqAnswer(stanza: Element): void {
    const id = stanza.attrs.id;
    if (!id) return;
    const type = stanza.attrs.type as "result" | "error";
    const condition = type === "error" ? stanza.getChild("error")?.getChildElements()[0]?.name : undefined;
    const answer = { id, type, ...(condition ? { condition } : {}), ...(stanza.attrs.from ? { from: stanza.attrs.from } : {}) };
    // Not ours: ejabberd balanced it here; whoever asked is told (see main.ts).
    if (!this.settleIq(answer, stanza)) this.emit("foreign-iq-answer", answer);
  }

  onIqGet(ns: string, name: string, handler: IqHandler): void {
    this.entity.iqCallee.get(ns, name, handler);
  }

  onIqSet(ns: string, name: string, handler: IqHandler): void {
    this.entity.iqCallee.set(ns, name, handler);
  }

  private async connect(): Promise<void> {
    if (this.stopped) return;
    try {
      this.log.debug({ xmppService: this.options.service, attempt: this.attempt }, "connecting to ejabberd");
      await this.entity.connect(this.options.service);
      await this.entity.open({ domain: this.options.domain });
    } catch (err) {
      if (err !== this.lastLoggedError) this.log.warn({ err, xmppService: this.options.service }, "could not open the component stream (PARLEY_XMPP_SERVICE); retrying");
      // A refused connection ends in a socket close, which schedules the retry; a
      // failure after the socket opened may not, so make sure it is closed.
      if (this.entity.socket) this.entity.socket.destroy();
      else this.scheduleRetry();
    }
  }

  /**
   * A refused handshake is a configuration mistake, not a network hiccup: ejabberd 23.01
   * answers `not-authorized` both to a wrong password and to a domain its
   * `ejabberd_service` listener does not list. Said once, naming the variables, instead of
   * a bare "not-authorized" with a stack trace at every retry.
   */
  private onError(err: Error): void {
    if ((err as { condition?: unknown }).condition !== "not-authorized") {
      this.lastLoggedError = err;
      if (this.connected) this.log.warn({ err }, "xmpp connection error");
      else this.log.warn({ err, xmppService: this.options.service }, "could not open the component stream (PARLEY_XMPP_SERVICE); retrying");
      return;
    }
    if (this.handshakeRefused) return;
    this.handshakeRefused = true;
    const { domain, service } = this.options;
    this.log.error(
      { xmppService: service, domain, condition: "not-authorized" },
      `ejabberd refused the component handshake: PARLEY_XMPP_SECRET must be the password of ${domain} (PARLEY_XMPP_DOMAIN) under the hosts of the ejabberd_service listener at ${service}; retrying`,
    );
  }

  private onOnline(): void {
    this.connected = true;
    this.handshakeRefused = false;
    if (this.attempt > 0 || this.reconnects > 0) this.reconnects += 1;
    this.attempt = 0;
    this.log.info({ domain: this.options.domain, queued: this.queue.length }, "component online");
    if (this.droppedWhileOffline > 0) {
      this.log.error({ dropped: this.droppedWhileOffline }, "stanzas dropped from the full outbound queue meanwhile (visitor messages among them are sent again)");
      this.droppedWhileOffline = 0;
    }
    // Flush everything queued, in order, before new stanzas (send() queues while the queue is non-empty).
    while (this.queue.length > 0 && this.connected) this.write(this.queue.shift()!);
    this.emit("online");
  }

  private onDisconnect(): void {
    const wasConnected = this.connected;
    this.connected = false;
    if (wasConnected) {
      if (this.stopped) this.log.info("component stream closed");
      else this.log.warn({ queued: this.queue.length }, "component offline");
      this.emit("offline");
    }
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.backoff, this.attempt, Math.random());
    this.attempt += 1;
    this.log.debug({ delay, attempt: this.attempt }, "reconnect scheduled");
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }

  private write(outbound: Outbound): void {
    if (this.entity.socket) corkForThisTurn(this.entity.socket);
    this.entity.send(outbound.stanza).then(() => outbound.settle(true), (err: unknown) => {
      // The socket went away mid-write. What the kernel had not taken is re-queued; what it
      // had taken is beyond our reach (XEP-0114 has no acknowledgements).
      this.log.warn({ err }, "stanza write failed; queued for the next connection");
      this.enqueue(outbound);
    });
  }

  private enqueue(outbound: Outbound): void {
    this.queue.push(outbound);
    if (this.queue.length > this.maxQueued) {
      // The sender learns it, and sends a visitor message again once ejabberd is back (outbox.ts).
      this.queue.shift()!.settle(false);
      if (this.droppedWhileOffline++ === 0) this.log.error({ maxQueued: this.maxQueued }, "outbound queue full while ejabberd is unreachable; dropping the oldest stanzas");
    }
  }

  /**
   * xmpp.js lets parser exceptions (an undefined entity such as `&bogus;`) escape from the
   * socket's data handler, which kills the process. Treat them as a broken stream instead.
   */
  private guardParser(): void {
    const original = this.entity._onData.bind(this.entity);
    this.entity._onData = (data: unknown) => {
      try {
        original(data);
      } catch (err) {
        this.log.error({ err }, "unparseable input from ejabberd; reconnecting");
        this.entity.socket?.destroy();
      }
    };
  }
}

/** An IQ request that got an error answer (`answered`), or none in time. */
export class IqError extends Error {
  override name = "IqError";
  constructor(
    readonly condition: string,
    message: string,
    readonly answered = true,
  ) {
    super(message);
  }
}
