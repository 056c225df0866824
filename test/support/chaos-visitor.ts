import type { MessageFrame } from "../../stanza-mappers/visitor-protocol.js";
import type { SeededRandom } from "./seeded-random.js";
import { VisitorClient } from "./visitor-client.js";

/**
 * A visitor for chaos scenarios: one or more tabs, each a socket that behaves like the
 * widget — when it closes (its bridge was killed, or the test navigates it away), it
 * reconnects with the visitor's token to a bridge picked at random, and a message is sent
 * again with the same client id until it is acknowledged. Everything each connection showed
 * is kept for the invariants (welcome history plus live message frames).
 */
export interface AckedMessage {
  clientId: string;
  text: string;
  messageId: string;
  /** Bridges the message was sent to (a duplicate at the agent is allowed only if one of them was killed). */
  bridges: Set<string>;
  /** How many times it was sent (the same client id each time). */
  attempts: number;
}

export interface TabConnection {
  bridge: string;
  /** Welcome history, then every live message frame. */
  view(): MessageFrame[];
  /** When the welcome arrived. */
  openedAt: number;
  historyLength: number;
}

/** How long a visitor keeps trying to get one message acknowledged, or a tab reconnected. */
const GIVE_UP_MS = 40_000;

export class ChaosTab {
  client: VisitorClient | null = null;
  readonly connections: TabConnection[] = [];
  private reconnecting: Promise<void> | null = null;

  constructor(
    private readonly visitor: ChaosVisitor,
    private readonly pickBridge: () => string,
  ) {}

  get bridge(): string {
    return this.connections.at(-1)?.bridge ?? "";
  }

  async connect(token?: string): Promise<void> {
    const bridge = this.pickBridge();
    const client = await VisitorClient.connect(bridge, this.visitor.siteId, token ? { token } : {});
    // Read from the client's record of every frame: frames that came in the same read as the
    // welcome were already handled when `connect` resolved, so a listener added now would miss them.
    const view = () => [...client.welcome.history, ...client.frames.all.filter((f): f is MessageFrame => f.type === "message")];
    this.connections.push({ bridge, view, openedAt: Date.now(), historyLength: client.welcome.history.length });
    this.client = client;
    void client.closed.then(() => {
      if (!this.visitor.stopped) this.reconnect().catch((err: Error) => this.visitor.failures.push(`tab could not reconnect: ${err.message}`));
    });
    this.visitor.adopt(client.welcome.visitorId, client.welcome.token);
  }

  /** Resolves once the tab has an open socket again. */
  ready(): Promise<void> {
    if (this.client && this.client.ws.readyState === this.client.ws.OPEN) return Promise.resolve();
    return this.reconnect();
  }

  /** The page was left and opened again (or the network blipped): close, then resume elsewhere. */
  async navigate(): Promise<void> {
    await this.client?.close();
    await this.ready();
  }

  private reconnect(): Promise<void> {
    this.reconnecting ??= (async () => {
      const started = Date.now();
      for (let attempt = 0; ; attempt++) {
        try {
          await this.connect(this.visitor.token);
          return;
        } catch (err) {
          // A bridge just killed, or Redis restarting (upgrades refused): the widget's backoff.
          if (this.visitor.stopped || Date.now() - started > GIVE_UP_MS) throw err;
          await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
        }
      }
    })().finally(() => (this.reconnecting = null));
    return this.reconnecting;
  }
}

export class ChaosVisitor {
  readonly tabs: ChaosTab[] = [];
  readonly acked: AckedMessage[] = [];
  /** What went wrong on the visitor's side (a tab that never came back), for the report. */
  readonly failures: string[] = [];
  visitorId = "";
  token = "";
  stopped = false;
  private sent = 0;

  constructor(
    /** Every text this visitor sends starts with `${tag}:`, so a misrouted one is recognisable anywhere. */
    readonly tag: string,
    readonly siteId: string,
    private readonly random: SeededRandom,
    pickBridge: () => string,
    tabCount: number,
  ) {
    for (let i = 0; i < tabCount; i++) this.tabs.push(new ChaosTab(this, pickBridge));
  }

  get jid(): string {
    return `${this.siteId}.${this.visitorId}@chat.localhost`;
  }

  adopt(visitorId: string, token: string): void {
    if (this.visitorId && visitorId !== this.visitorId) throw new Error(`visitor ${this.tag} resumed as another visitor (${this.visitorId} → ${visitorId})`);
    this.visitorId = visitorId;
    this.token = token;
  }

  /** First tab as a new visitor, the others resuming its token (each on a bridge of its own pick). */
  async open(): Promise<void> {
    await this.tabs[0]!.connect();
    for (const tab of this.tabs.slice(1)) await tab.connect(this.token);
  }

  /** Sends the next message from a random tab until it is acknowledged; resolves to its text. */
  async sayNext(): Promise<string> {
    const k = ++this.sent;
    const text = `${this.tag}:m${String(k).padStart(2, "0")}`;
    const clientId = `${this.tag}-${k}`;
    const bridges = new Set<string>();
    const started = Date.now();
    for (let attempt = 0; ; attempt++) {
      if (Date.now() - started > GIVE_UP_MS) throw new Error(`visitor ${this.tag}: ${clientId} never acknowledged`);
      const tab = this.random.pick(this.tabs);
      await tab.ready();
      const client = tab.client!;
      bridges.add(tab.bridge);
      const ack = client.next("ack", (a) => a.id === clientId, 10_000).catch(() => null);
      const refused = client.next("error", (e) => e.id === clientId, 10_000).catch(() => null);
      client.send({ type: "message", id: clientId, text });
      const outcome = await Promise.race([ack, refused, client.closed.then(() => null)]);
      if (outcome?.type === "ack") {
        this.acked.push({ clientId, text, messageId: outcome.messageId, bridges, attempts: attempt + 1 });
        return text;
      }
      // Refused (`unavailable` while Redis restarts), unanswered, or the socket closed: the
      // widget sends it again after a pause.
      await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
    }
  }

  async close(): Promise<void> {
    this.stopped = true;
    await Promise.all(this.tabs.map((t) => t.client?.close().catch(() => {})));
  }
}
