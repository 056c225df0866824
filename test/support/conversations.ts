import { xml } from "@xmpp/client";
import type { MessageFrame } from "../../stanza-mappers/visitor-protocol.js";
import type { AgentClient } from "./agent-client.js";
import { VisitorClient } from "./visitor-client.js";

const RECEIPTS = "urn:xmpp:receipts";

/**
 * Scripted conversations for multi-process tests: each visitor says `v1…vN` and its agent
 * answers `a1…aN`, each answer after the visitor saw the previous one (one agent's two
 * stanzas within milliseconds may be swapped by ejabberd's balancing across processes,
 * CONTRACT §6, so the agent side is paced as a person would be).
 *
 * A ResilientVisitor behaves like the widget: when its socket drops it reconnects with its
 * token to the next bridge and resends what was not acknowledged (same client ids).
 */
export class ResilientVisitor {
  client!: VisitorClient;
  visitorId = "";
  token = "";
  agentName = "";
  private readonly clients: VisitorClient[] = [];
  readonly resumeTimesMs: number[] = [];
  private bridgeIndex: number;
  private reconnecting: Promise<void> | null = null;

  constructor(
    private readonly bridgeUrls: () => string[],
    private readonly siteId: string,
    firstBridge: number,
  ) {
    this.bridgeIndex = firstBridge;
  }

  get jid(): string {
    return `${this.siteId}.${this.visitorId}@chat.localhost`;
  }

  async connect(): Promise<void> {
    const urls = this.bridgeUrls();
    const url = urls[this.bridgeIndex % urls.length]!;
    const client = await VisitorClient.connect(url, this.siteId, this.token ? { token: this.token } : {});
    this.client = client;
    this.visitorId = client.welcome.visitorId;
    this.token = client.welcome.token;
    if (client.welcome.agent) this.agentName = client.welcome.agent.name;
    this.clients.push(client);
  }

  /**
   * Every connection's view: welcome history plus live message frames, read from what the
   * client recorded since its socket opened (a listener added after the welcome would miss
   * frames that arrived together with it).
   */
  get views(): MessageFrame[][] {
    return this.clients.map((client) => [...client.welcome.history, ...client.frames.all.filter((f): f is MessageFrame => f.type === "message")]);
  }

  /** Called when the socket closed unexpectedly: reconnect to another bridge with the token. */
  private reconnect(): Promise<void> {
    this.reconnecting ??= (async () => {
      const started = Date.now();
      for (let attempt = 0; ; attempt++) {
        this.bridgeIndex += 1;
        try {
          await this.connect();
          this.resumeTimesMs.push(Date.now() - started);
          return;
        } catch (err) {
          if (Date.now() - started > 30_000) throw err;
          await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
        }
      }
    })().finally(() => (this.reconnecting = null));
    return this.reconnecting;
  }

  /** Says `text` with client id `id` until it is acknowledged, reconnecting as needed. */
  async say(text: string, id: string): Promise<void> {
    for (;;) {
      const client = this.client;
      const closed = client.closed.then(() => "closed" as const);
      if (client.ws.readyState === client.ws.OPEN) {
        client.send({ type: "message", id, text });
        const outcome = await Promise.race([client.next("ack", (a) => a.id === id, 20_000), closed]);
        if (outcome !== "closed") return;
      }
      await this.reconnect();
    }
  }

  /** The assigned agent's name, from the joined frame or, after a reconnect, the welcome frame. */
  async agent(timeoutMs = 20_000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (!this.agentName) {
      const client = this.client;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`visitor ${this.visitorId} was never assigned an agent`);
      const outcome = await Promise.race([
        client.next("agent", (f) => f.state === "joined", remaining).then((f) => ({ name: f.name }), () => ({ name: "" })),
        client.closed.then(() => null),
      ]);
      if (outcome === null) await this.reconnect();
      else if (outcome.name) this.agentName = outcome.name;
    }
    return this.agentName;
  }

  /** Waits until some connection's view shows an agent message with this text. */
  async sees(text: string, timeoutMs = 20_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (this.views.some((view) => view.some((m) => m.from === "agent" && m.text === text))) return;
      const client = this.client;
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new Error(`visitor ${this.visitorId} never saw ${text}`);
      const closed = client.closed.then(() => "closed" as const);
      const outcome = await Promise.race([
        client.next("message", (m) => m.from === "agent" && m.text === text, remaining).catch(() => "timeout" as const),
        closed,
      ]);
      if (outcome === "closed") await this.reconnect();
      else if (outcome === "timeout") throw new Error(`visitor ${this.visitorId} never saw ${text}`);
      else return;
    }
  }

  /** Message ids shown twice within one connection (history + live): duplicates a widget would render. */
  duplicatesShown(): number {
    let duplicates = 0;
    for (const view of this.views) duplicates += view.length - new Set(view.map((m) => m.messageId)).size;
    return duplicates;
  }

  /** Distinct stored agent messages (by message id) carrying each text. */
  agentTexts(): Map<string, Set<string>> {
    const texts = new Map<string, Set<string>>();
    for (const m of this.views.flat()) if (m.from === "agent") texts.set(m.text, (texts.get(m.text) ?? new Set()).add(m.messageId));
    return texts;
  }

  async close(): Promise<void> {
    await this.client?.close().catch(() => {});
  }
}

export interface ConversationResult {
  visitors: ResilientVisitor[];
  /** Bodies each agent received per visitor JID, in arrival order. */
  received: Map<string, string[]>;
  agentUnconfirmed: number;
  agentLost: string[];
}

/** Runs `count` conversations of `messages` each way; `during` runs concurrently (e.g. a kill). */
export async function runConversations(options: {
  bridgeUrls: () => string[];
  siteId: string;
  agents: Map<string, AgentClient>; // by display name
  count: number;
  messages: number;
  tag: string;
  /** Pause between a visitor's messages (ms), to keep conversations going while `during` runs. */
  paceMs?: number;
  onProgress?(visitor: ResilientVisitor, k: number): void;
  /**
   * Agents ask for XEP-0184 receipts. A stanza ejabberd wrote to a process that died is
   * lost by XEP-0114's design, and a missing receipt is how the agent's client tells;
   * such messages are counted (`agentUnconfirmed`, and `agentLost` if the visitor never
   * got them) instead of failing the run.
   */
  receipts?: boolean;
}): Promise<ConversationResult> {
  const { count, messages, tag } = options;
  const visitors: ResilientVisitor[] = [];
  for (let i = 0; i < count; i++) visitors.push(new ResilientVisitor(options.bridgeUrls, options.siteId, i));
  await Promise.all(visitors.map((v) => v.connect()));
  const received = new Map<string, string[]>();
  let agentUnconfirmed = 0;
  const agentLost: string[] = [];

  await Promise.all(
    visitors.map(async (visitor, i) => {
      const text = (k: number) => `${tag} v${i} m${k}`;
      // The first message opens the chat; the joined frame names the agent.
      await visitor.say(text(1), `${tag}-${i}-1`);
      const agent = options.agents.get(await visitor.agent());
      if (!agent) throw new Error(`unknown agent ${visitor.agentName}`);
      const bodies: string[] = [];
      received.set(visitor.jid, bodies);

      const visitorSide = (async () => {
        for (let k = 2; k <= messages; k++) {
          if (options.paceMs) await new Promise((resolve) => setTimeout(resolve, options.paceMs));
          await visitor.say(text(k), `${tag}-${i}-${k}`);
          options.onProgress?.(visitor, k);
        }
      })();
      const agentSide = (async () => {
        // Bodies are recorded in arrival order; the test judges order and duplicates. Waiting
        // for each text (not for the next body) lets a run with failures finish and be measured.
        const got = new Set<string>();
        for (let k = 1; k <= messages; k++) {
          while (!got.has(text(k))) {
            const body = (await agent.nextBody(visitor.jid, (b) => b.startsWith(`${tag} v${i} `), 30_000)).getChildText("body")!;
            bodies.push(body);
            got.add(body);
          }
          const reply = `${tag} a${i} r${k}`;
          if (!options.receipts) {
            await agent.sendMessage(visitor.jid, reply);
            await visitor.sees(reply);
            continue;
          }
          const id = await agent.sendMessage(visitor.jid, reply, [xml("request", { xmlns: RECEIPTS })]);
          const receipt = await agent.messages.next((m) => m.getChild("received", RECEIPTS)?.attrs.id === id, "a receipt", 5000).catch(() => null);
          if (receipt) {
            await visitor.sees(reply);
          } else {
            agentUnconfirmed += 1;
            await visitor.sees(reply, 3000).catch(() => agentLost.push(reply));
          }
        }
      })();
      await Promise.all([visitorSide, agentSide]);
    }),
  );
  return { visitors, received, agentUnconfirmed, agentLost };
}
