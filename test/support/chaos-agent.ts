import { xml } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { AgentClient, bare } from "./agent-client.js";

const RECEIPTS = "urn:xmpp:receipts";

/**
 * An agent for chaos scenarios: logs in again by itself whenever its connection drops
 * (ejabberd restarting) unless the test dropped it on purpose, and keeps everything it
 * received across its connections. `onVisitorBody` lets the scenario answer; answers ask for
 * XEP-0184 receipts, and a receipt marks the answer as stored by Parley.
 */
export interface ReceivedBody {
  from: string;
  body: string;
  /** Carries a XEP-0203 delay: redelivered by a survivor, or kept offline by ejabberd. */
  delayed: boolean;
  /** The stanza's id (Parley's message id: a copy has the same one). */
  id: string | undefined;
  /** When it arrived (ms), and in which of the agent's logins (1 = the first). */
  at: number;
  session: number;
}

export interface SentReply {
  visitorJid: string;
  text: string;
  confirmed: boolean;
}

export class ChaosAgent {
  client: AgentClient | null = null;
  readonly received: ReceivedBody[] = [];
  readonly replies = new Map<string, SentReply>();
  /** Called for every body from a visitor's JID (never for `[parley]` lines). */
  onVisitorBody: (agent: ChaosAgent, from: string, body: string) => void = () => {};
  stopped = false;
  /** How many logins so far: ejabberd resends what an ended session had not acknowledged. */
  sessions = 0;
  private away = false;
  private connecting: Promise<void> | null = null;

  constructor(
    readonly name: string,
    readonly username: string,
    private readonly port: () => number,
    private readonly password: string,
    private readonly componentDomain: string,
  ) {}

  get jid(): string {
    return `${this.username}@localhost`;
  }

  get online(): boolean {
    return this.client?.xmpp.status === "online";
  }

  /** Adopts a client already logged in (the deployment's). */
  adopt(client: AgentClient): void {
    this.client = client;
    this.sessions += 1;
    for (const stanza of client.messages.all) this.onStanza(stanza);
    client.xmpp.on("stanza", (stanza: Element) => {
      if (stanza.is("message")) this.onStanza(stanza);
    });
    client.xmpp.on("disconnect", () => {
      if (!this.away && !this.stopped) void this.ready();
    });
  }

  /** Resolves once logged in (again), trying while ejabberd is away. */
  ready(): Promise<void> {
    if (this.online) return Promise.resolve();
    this.connecting ??= (async () => {
      for (let attempt = 0; !this.stopped; attempt++) {
        try {
          this.client?.xmpp.removeAllListeners("disconnect");
          await this.client?.stop();
          this.adopt(await AgentClient.connect({ port: this.port(), username: this.username, password: this.password }));
          return;
        } catch {
          await new Promise((resolve) => setTimeout(resolve, Math.min(100 * 2 ** attempt, 1000)));
        }
      }
    })().finally(() => (this.connecting = null));
    return this.connecting;
  }

  /** Drops the connection without a goodbye (a phone losing its network) for `downMs`, then logs in again. */
  async dropFor(downMs: number): Promise<void> {
    this.away = true;
    this.client?.drop();
    await new Promise((resolve) => setTimeout(resolve, downMs));
    this.away = false;
    await this.ready();
  }

  /** Sends `text` to the visitor asking for a receipt; a send that fails (connection down) is not counted. */
  async reply(visitorJid: string, text: string): Promise<void> {
    const client = this.client;
    if (!client || !this.online) return;
    const id = `${this.username}-${this.replies.size + 1}`;
    try {
      await client.sendMessage(visitorJid, text, [xml("request", { xmlns: RECEIPTS })], { id });
      this.replies.set(id, { visitorJid, text, confirmed: false });
    } catch {
      // The connection dropped under us: the agent's client shows it as not sent.
    }
  }

  async command(visitorJid: string, text: string): Promise<void> {
    if (!this.online) return;
    await this.client!.sendMessage(visitorJid, text).catch(() => {});
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.connecting?.catch(() => {});
    await this.client?.stop();
  }

  private onStanza(stanza: Element): void {
    if (stanza.attrs.type === "error") return;
    const receipt = stanza.getChild("received", RECEIPTS);
    if (receipt) {
      const reply = this.replies.get(receipt.attrs.id as string);
      if (reply) reply.confirmed = true;
    }
    const body = stanza.getChildText("body");
    const from = bare(stanza.attrs.from as string);
    // Visitors' JIDs are `site.visitor@domain`; the desk is `site@domain`.
    if (body === null || !from.endsWith(`@${this.componentDomain}`) || !from.split("@")[0]!.includes(".")) return;
    if (body.startsWith("[parley]")) return;
    this.received.push({ from, body, delayed: stanza.getChild("delay", "urn:xmpp:delay") !== undefined, id: stanza.attrs.id as string | undefined, at: Date.now(), session: this.sessions });
    this.onVisitorBody(this, from, body);
  }
}
