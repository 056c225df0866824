import type { Element } from "@xmpp/xml";
import { bareJid } from "../stanza-mappers/addressing.js";
import { parseCommand } from "../stanza-mappers/stanza-to-agent-event.js";
import { noticeToStanza } from "../stanza-mappers/visitor-to-stanza.js";
import type { ChatService } from "./chats.js";
import type { Logger } from "./logger.js";
import { agentDisplayName, visitorDisplayName } from "./names.js";
import type { Chat, Site, Store, Visitor } from "./store/types.js";

/**
 * Agent commands (CONTRACT §5): a body starting with `!` in a visitor's chat window, or
 * sent to a site's desk contact. Answers come from the same JID and start with
 * `[parley]`; nothing here is ever shown to the visitor.
 */
export interface CommandDeps {
  store: Store;
  deskJid(siteId: string): string;
  send(stanza: Element): void;
  chats: ChatService;
  now(): number;
  newId(): string;
  logger: Logger;
}

export interface AgentCommand {
  stanza: Element;
  site: Site;
  visitor: Visitor;
  chat: Chat;
  agentJid: string;
  name: string;
  args: string;
}

const VISITOR_HELP = [
  "[parley] Commands in a visitor's chat:",
  "!info — who the visitor is and where they are",
  "!note <text> — add a note to the transcript (the visitor never sees it)",
  "!transfer <agent jid> — hand the chat to another agent of this site",
  "!end — end the chat",
  "!help — this text",
].join("\n");

const DESK_HELP = [
  "[parley] Commands to the desk contact:",
  "!queue — visitors waiting for an agent",
  "!visitors — visitors on the site now",
  "!help — this text",
].join("\n");

export class CommandService {
  private readonly log: Logger;

  constructor(private readonly deps: CommandDeps) {
    this.log = deps.logger.child({ module: "commands" });
  }

  async onAgentCommand(command: AgentCommand): Promise<void> {
    const { visitor, agentJid } = command;
    const reply = (text: string) => this.reply(visitor.jid, agentJid, text);
    this.log.debug({ command: command.name, chatId: command.chat.id }, "agent command");
    switch (command.name) {
      case "help":
        reply(VISITOR_HELP);
        return;
      case "info":
        reply(this.info(visitor, command.chat));
        return;
      case "note":
        await this.note(command, reply);
        return;
      case "end":
        reply((await this.deps.chats.end(command.site, visitor, command.chat)) ? "[parley] Chat ended." : "[parley] This chat has already ended.");
        return;
      case "transfer":
        await this.transfer(command, reply);
        return;
      default:
        reply(`[parley] Unknown command !${command.name}.\n${VISITOR_HELP}`);
    }
  }

  async onDeskMessage(stanza: Element, siteId: string): Promise<void> {
    const { store } = this.deps;
    const sender = bareJid(stanza.attrs.from!);
    const site = await store.getSite(siteId);
    const agents = site ? await store.listAgents(siteId) : [];
    if (!site || !agents.some((a) => a.jid === sender)) return; // only the site's agents talk to its desk
    const command = parseCommand(stanza.getChildText("body") ?? "");
    if (!command) {
      if (stanza.getChildText("body")?.trim()) this.reply(this.deps.deskJid(siteId), sender, DESK_HELP);
      return;
    }
    const reply = (text: string) => this.reply(this.deps.deskJid(siteId), sender, text);
    switch (command.name) {
      case "queue":
        reply(await this.queueText(site));
        return;
      case "visitors":
        reply(await this.visitorsText(site));
        return;
      case "help":
        reply(DESK_HELP);
        return;
      default:
        reply(`[parley] Unknown command !${command.name}.\n${DESK_HELP}`);
    }
  }

  private info(visitor: Visitor, chat: Chat): string {
    const waited = chat.assignedAt ? Math.round((chat.assignedAt - chat.startedAt) / 1000) : Math.round((this.deps.now() - chat.startedAt) / 1000);
    return [
      `[parley] ${visitorDisplayName(visitor)}`,
      `email: ${visitor.email ?? "—"}`,
      `page: ${visitor.page ? `${visitor.page.title} ${visitor.page.url}`.trim() : "—"}`,
      `referrer: ${visitor.referrer ?? "—"}`,
      `user agent: ${visitor.userAgent ?? "—"}`,
      `chat: ${chat.id}`,
      `waited: ${waited} s`,
    ].join("\n");
  }

  private async note(command: AgentCommand, reply: (text: string) => void): Promise<void> {
    if (!command.args) {
      reply("[parley] Usage: !note <text>");
      return;
    }
    await this.deps.store.appendMessage(command.visitor.id, {
      chatId: command.chat.id,
      from: "note",
      name: command.chat.agentName ?? agentDisplayName(undefined, command.agentJid),
      text: command.args,
      ts: this.deps.now(),
    });
    reply("[parley] Note saved to the transcript.");
  }

  private async transfer(command: AgentCommand, reply: (text: string) => void): Promise<void> {
    const { store, chats } = this.deps;
    const { site, visitor, chat } = command;
    const target = bareJid(command.args);
    const agents = await store.listAgents(site.id);
    const targetAgent = agents.find((a) => a.jid === target);
    if (!target || !targetAgent) {
      reply(`[parley] ${target || "(nobody)"} is not an agent of ${site.name}. Agents: ${agents.map((a) => a.jid).join(", ")}`);
      return;
    }
    if (target === command.agentJid) {
      reply("[parley] This chat is already yours.");
      return;
    }
    const moved = await chats.transfer(site, visitor, chat, target);
    reply(moved ? `[parley] Chat transferred to ${agentDisplayName(targetAgent, target)}.` : "[parley] The transfer did not happen: the chat changed meanwhile.");
  }

  private async queueText(site: Site): Promise<string> {
    const queued = (await this.deps.store.listChats(site.id, "queued")).filter((c) => c.state === "queued");
    if (queued.length === 0) return "[parley] Nobody is waiting.";
    const now = this.deps.now();
    const lines = await Promise.all(
      queued.map(async (chat, i) => {
        const visitor = await this.deps.store.getVisitor(chat.visitorId);
        return `${i + 1}. ${visitor ? visitorDisplayName(visitor) : chat.visitorId} — waiting ${Math.round((now - chat.startedAt) / 1000)} s`;
      }),
    );
    return `[parley] ${queued.length} waiting:\n${lines.join("\n")}`;
  }

  private async visitorsText(site: Site): Promise<string> {
    const ids = await this.deps.store.onlineVisitors(site.id, this.deps.now());
    if (ids.length === 0) return "[parley] No visitors on the site right now.";
    const visitors = await Promise.all(ids.slice(0, 50).map((id) => this.deps.store.getVisitor(id)));
    const lines = visitors
      .filter((v): v is Visitor => v !== null)
      .map((v) => `${visitorDisplayName(v)} (${v.jid}) — ${v.page ? v.page.title || v.page.url : "no page yet"}`);
    return `[parley] ${ids.length} on the site:\n${lines.join("\n")}`;
  }

  private reply(from: string, to: string, text: string): void {
    this.deps.send(noticeToStanza({ from, to, id: this.deps.newId(), text }));
  }
}
