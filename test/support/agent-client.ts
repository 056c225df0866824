import { client, xml, type Client } from "@xmpp/client";
import type { Element } from "@xmpp/xml";
import { Inbox } from "./inbox.js";

/**
 * An agent's Jabber client: a real XMPP c2s client (@xmpp/client, SCRAM login, stream
 * management, roster pushes answered) so that tests see exactly what Gajim or
 * Conversations would.
 */
export class AgentClient {
  readonly messages = new Inbox<Element>();
  readonly presences = new Inbox<Element>();
  readonly rosterPushes = new Inbox<Element>();
  readonly jid: string;

  private constructor(
    readonly xmpp: Client,
    readonly username: string,
    readonly host: string,
  ) {
    this.jid = `${username}@${host}`;
    xmpp.on("stanza", (stanza: Element) => {
      if (stanza.is("message")) this.messages.push(stanza);
      if (stanza.is("presence")) this.presences.push(stanza);
    });
    xmpp.iqCallee.set("jabber:iq:roster", "query", (ctx) => {
      for (const item of ctx.element.getChildren("item")) this.rosterPushes.push(item);
      return true;
    });
    xmpp.on("error", () => {}); // a dropped connection in a test is intended
  }

  static async connect(options: { port: number; host?: string; username: string; password: string; resource?: string; show?: string }): Promise<AgentClient> {
    const host = options.host ?? "localhost";
    const xmpp = client({ service: `xmpp://127.0.0.1:${options.port}`, domain: host, username: options.username, password: options.password, resource: options.resource ?? "test" });
    xmpp.reconnect.stop();
    xmpp.on("connect", () => {
      xmpp.socket?.setNoDelay(true);
      xmpp.socket?.setEncoding("utf8");
    });
    const agent = new AgentClient(xmpp, options.username, host);
    await xmpp.start();
    await agent.setPresence(options.show);
    return agent;
  }

  async setPresence(show?: string, status?: string): Promise<void> {
    await this.xmpp.send(xml("presence", {}, show ? xml("show", {}, show) : null, status ? xml("status", {}, status) : null));
  }

  async sendMessage(to: string, body: string | null, extra: Element[] = [], attrs: Record<string, string> = {}): Promise<string> {
    const id = attrs.id ?? `m${Math.random().toString(36).slice(2)}`;
    await this.xmpp.send(xml("message", { type: "chat", to, id, ...attrs }, body === null ? null : xml("body", {}, body), ...extra));
    return id;
  }

  /** The next chat message with a body from `from` (bare JID compare). */
  nextBody(from: string, match: (body: string) => boolean = () => true, timeoutMs?: number): Promise<Element> {
    return this.messages.next(
      (m) => m.attrs.type !== "error" && bare(m.attrs.from) === from && m.getChildText("body") !== null && match(m.getChildText("body")!),
      `a message from ${from}`,
      timeoutMs,
    );
  }

  async roster(): Promise<Element[]> {
    const result = await this.xmpp.iqCaller.get(xml("query", { xmlns: "jabber:iq:roster" }));
    return result.getChildren("item");
  }

  /**
   * Acknowledges (XEP-0198) every stanza received so far and waits until ejabberd has read
   * the ack, so that a later drop leaves ejabberd nothing to send again to the next session
   * (our mod_stream_mgmt config resends what a timed-out session never acknowledged).
   */
  async acknowledgeAll(): Promise<void> {
    const sm = (this.xmpp as unknown as { streamManagement: { enabled: boolean; inbound: number } }).streamManagement;
    if (!sm.enabled) return;
    await this.xmpp.send(xml("a", { xmlns: "urn:xmpp:sm:3", h: String(sm.inbound) }));
    await this.roster(); // answered after the ack was read: a c2s session reads its input in order
  }

  /** Closes the TCP connection without sending unavailable presence (a dropped phone). */
  drop(): void {
    this.xmpp.socket?.destroy();
  }

  async stop(): Promise<void> {
    if (this.xmpp.status === "online") await this.xmpp.stop().catch(() => {});
    else this.xmpp.socket?.destroy();
  }
}

export function bare(jid: string | undefined): string {
  return (jid ?? "").split("/")[0]!.toLowerCase();
}
