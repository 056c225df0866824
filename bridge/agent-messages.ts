import type { Element } from "@xmpp/xml";
import { bareJid, parseAddress } from "../stanza-mappers/addressing.js";
import { stanzaErrorCondition, stanzaErrorReply } from "../stanza-mappers/stanza-errors.js";
import { stanzaToAgentEvent } from "../stanza-mappers/stanza-to-agent-event.js";
import { noticeToStanza, receiptToStanza } from "../stanza-mappers/visitor-to-stanza.js";
import type { ChatService } from "./chats.js";
import type { CommandService } from "./commands.js";
import type { KeyedQueue } from "./keyed-queue.js";
import type { Logger } from "./logger.js";
import type { Metrics } from "./metrics.js";
import { agentDisplayName } from "./names.js";
import type { Store } from "./store/types.js";

/**
 * `<message/>` stanzas from agents (CONTRACT §5): to a visitor's JID they become frames on
 * the visitor's sockets; to a desk JID they are desk commands. Unknown visitor →
 * item-not-found; anyone but the chat's agent → forbidden.
 */
export interface AgentMessageDeps {
  store: Store;
  domain: string;
  send(stanza: Element): void;
  chats: ChatService;
  commands: CommandService;
  lanes: KeyedQueue;
  now(): number;
  newId(): string;
  logger: Logger;
  metrics: Metrics;
}

/** Bounces that say the recipient will never take it: sending again would bounce again. */
const PERMANENT_BOUNCES = new Set(["item-not-found", "remote-server-not-found", "forbidden", "not-allowed", "policy-violation", "not-acceptable", "bad-request"]);
/** Bounced visitor messages this process remembers having sent again (each is sent again once). */
const REDELIVERED_BOUNCES_REMEMBERED = 10_000;

export class AgentMessages {
  private readonly log: Logger;
  private readonly redeliveredBounces = new Set<string>();

  constructor(private readonly deps: AgentMessageDeps) {
    this.log = deps.logger.child({ module: "agent-messages" });
  }

  async onMessage(stanza: Element): Promise<void> {
    const { from, to } = stanza.attrs;
    if (!from || !to) return;
    if (stanza.attrs.type === "error") {
      await this.onBounce(stanza, from, to);
      return;
    }
    const address = parseAddress(to, this.deps.domain);
    switch (address.kind) {
      case "desk":
        await this.deps.commands.onDeskMessage(stanza, address.siteId);
        return;
      case "visitor":
        try {
          await this.deps.lanes.run(address.visitorId, () => this.toVisitor(stanza, address.siteId, address.visitorId));
        } catch (err) {
          // Nothing was stored (the store is down): tell the agent's client, which shows the
          // message as failed, rather than drop it silently.
          this.log.warn({ err, visitorId: address.visitorId }, "agent message not delivered");
          if (stanza.getChild("body")) this.deps.send(stanzaErrorReply(stanza, "internal-server-error", "Parley could not store this message; send it again in a moment."));
        }
        return;
      case "component":
        return; // privilege grants and server notices are handled elsewhere; nothing to answer
      case "unknown":
        this.deps.send(stanzaErrorReply(stanza, "item-not-found"));
        return;
    }
  }

  private async toVisitor(stanza: Element, siteId: string, visitorId: string, retried = false): Promise<void> {
    const started = performance.now();
    const { store, chats } = this.deps;
    const sender = bareJid(stanza.attrs.from!);
    const event = stanzaToAgentEvent(stanza);
    if (event.kind === "too-long") {
      // Nothing is stored and no receipt goes out: the agent's client shows the message as
      // failed, and the text says why (RFC 6120 §8.3.3.12).
      this.log.debug({ visitorId, maxChars: event.maxChars }, "agent message over the length limit refused");
      this.deps.send(stanzaErrorReply(stanza, "policy-violation", `Messages to visitors are limited to ${event.maxChars} characters (fewer in scripts that take more bytes: ${event.maxBytes} bytes in all); this one was not delivered. Send it in parts.`));
      return;
    }
    // Sites and agents come from the site cache: no round trip.
    const [site, agents] = await Promise.all([store.getSite(siteId), store.listAgents(siteId)]);
    const agent = agents.find((a) => a.jid === sender);

    if (event.kind === "text" && site) {
      // The hot path: the agent answers their own active chat. Authorize, store and publish
      // in one step; anything else (unknown visitor, a chat to take over) is decided below.
      const outcome = await store.appendAgentMessage({
        visitorId,
        siteId,
        agentJid: sender,
        fallbackName: agentDisplayName(agent, sender),
        text: event.text,
        ts: this.deps.now(),
        publisher: chats.processId,
      });
      if (outcome.kind === "appended") {
        chats.deliverStored(visitorId, outcome.message);
        await chats.agentAnswered(outcome.chat);
        // Stored durably: the visitor gets it now or on their return (CONTRACT §5).
        this.answerReceipt(stanza, outcome.visitor.jid, event.receiptRequested);
        this.deps.metrics.messages.inc({ direction: "out" });
        this.deps.metrics.stanzaLatency.observe({ direction: "out" }, (performance.now() - started) / 1000);
        return;
      }
    }

    const current = await store.visitorWithChat(visitorId);
    const visitor = current?.visitor;
    if (!visitor || visitor.siteId !== siteId) {
      this.deps.send(stanzaErrorReply(stanza, "item-not-found"));
      return;
    }
    if (event.kind === "drop") {
      this.log.debug({ reason: event.reason, visitorId }, "agent stanza dropped");
      return;
    }
    let chat = current.chat;
    const carriesText = event.kind === "text" || event.kind === "command";

    // An agent of the site who answers a queued or offline chat takes it (see ChatService.takeOver).
    if (site && chat && agent && chat.agentJid !== sender && carriesText && (chat.state === "queued" || chat.state === "offline" || chat.state === "new")) {
      if (await chats.takeOver(site, visitor, chat, sender)) chat = await store.getChat(chat.id);
    }
    if (!site || !chat || chat.agentJid !== sender || chat.state !== "active") {
      if (carriesText) this.deps.send(stanzaErrorReply(stanza, "forbidden", "You are not the agent of this visitor's chat."));
      return;
    }

    switch (event.kind) {
      case "chat-state":
        await chats.publish(visitor.id, { type: "typing", state: event.state, name: chat.agentName ?? agentDisplayName(agent, sender) });
        return;
      case "encrypted":
        this.deps.send(
          noticeToStanza({
            from: visitor.jid,
            to: sender,
            id: this.deps.newId(),
            text: "[parley] This message was end-to-end encrypted (OMEMO/OpenPGP), so the visitor cannot read it. Turn encryption off for this contact and send it again.",
          }),
        );
        return;
      case "command":
        await this.deps.commands.onAgentCommand({ stanza, site, visitor, chat, agentJid: sender, name: event.name, args: event.args });
        this.answerReceipt(stanza, visitor.jid, event.receiptRequested);
        return;
      case "text":
        // The chat was just taken over (assigned above), or changed under us: once more.
        if (retried) throw new Error("the chat kept changing while storing the agent's message");
        await this.toVisitor(stanza, siteId, visitorId, true);
        return;
    }
  }

  /**
   * A message Parley sent came back undelivered (RFC 6120 §8.3): never answered (§8.3.1),
   * but an operator must see it, e.g. an agent whose account does not exist. The body it
   * may carry back is the visitor's text and is not logged.
   */
  private async onBounce(stanza: Element, from: string, to: string): Promise<void> {
    const condition = stanzaErrorCondition(stanza);
    this.log.warn({ from, to, condition }, "message bounced");
    this.deps.metrics.messageBounces.inc({ condition });
    // A visitor's message (acknowledged: CONTRACT §6) that reached an agent's session which
    // then went away: ejabberd's stream management bounces what it held when the agent logs
    // in anew before the old session's resume wait ends. Sent once more, to wherever the
    // chat is now; once per message, so that a bounce that would repeat cannot loop.
    const address = parseAddress(to, this.deps.domain);
    const messageId = stanza.attrs.id;
    if (address.kind !== "visitor" || !messageId || !stanza.getChild("body") || PERMANENT_BOUNCES.has(condition)) return;
    if (this.redeliveredBounces.has(messageId)) return;
    this.redeliveredBounces.add(messageId);
    if (this.redeliveredBounces.size > REDELIVERED_BOUNCES_REMEMBERED) this.redeliveredBounces.delete(this.redeliveredBounces.values().next().value!);
    await this.deps.lanes.run(address.visitorId, () => this.deps.chats.redeliver(address.visitorId, [messageId]));
  }

  private answerReceipt(stanza: Element, visitorJid: string, requested: boolean): void {
    if (!requested || !stanza.attrs.id) return;
    this.deps.send(receiptToStanza({ from: visitorJid, to: stanza.attrs.from!, id: this.deps.newId(), receiptFor: stanza.attrs.id }));
  }
}
