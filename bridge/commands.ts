import type { Element } from "@xmpp/xml";
import { bareJid } from "../stanza-mappers/addressing.js";
import { oneLine } from "../stanza-mappers/agent-facing-text.js";
import { stanzaErrorReply } from "../stanza-mappers/stanza-errors.js";
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
  "!name <name> — save the visitor's name (kept across visits)",
  "!email <address> — save the visitor's email (kept across visits)",
  "!transfer <agent jid> — hand the chat to another agent of this site",
  "!end — end the chat",
  "!block — end the chat and refuse this visitor's later messages",
  "!help — this text",
].join("\n");

const DESK_HELP = [
  "[parley] Commands to the desk contact:",
  "!queue — visitors waiting for an agent",
  "!visitors — visitors on the site now",
  "!busy — take no new chats (your IM status stays as it is)",
  "!available — take new chats again",
  "!help — this text",
].join("\n");

/** Any body starting with `!` is a command (see parseCommand): one that names none gets the help. */
function unknownCommand(name: string, help: string): string {
  const what = name ? `Unknown command !${name}` : 'Write the command right after the "!", e.g. !help';
  return `[parley] ${what}\n${help}`;
}

/** Lines of `!queue` and `!visitors` at most: a chat message, not a report. */
const LISTED_AT_MOST = 50;
const EMAIL = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;

export class CommandService {
  private readonly log: Logger;

  constructor(private readonly deps: CommandDeps) {
    this.log = deps.logger.child({ module: "commands" });
  }

  async onAgentCommand(command: AgentCommand): Promise<void> {
    this.log.debug({ command: command.name, chatId: command.chat.id }, "agent command");
    this.reply(command.visitor.jid, command.agentJid, await this.run(command));
  }

  /** Runs a command of the visitor's chat and returns the answer (also used by ad-hoc commands). */
  async run(command: Omit<AgentCommand, "stanza">): Promise<string> {
    const { visitor } = command;
    switch (command.name) {
      case "help":
        return VISITOR_HELP;
      case "info":
        return this.info(visitor, command.chat);
      case "note":
        return this.note(command);
      case "end":
        return (await this.deps.chats.end(command.site, visitor, command.chat)) ? "[parley] Chat ended." : "[parley] This chat has already ended.";
      case "transfer":
        return this.transfer(command);
      case "name":
      case "email":
        return this.saveContact(command);
      case "block":
        await this.deps.store.updateVisitor(visitor.id, { blocked: true });
        await this.deps.chats.end(command.site, visitor, command.chat);
        return "[parley] Visitor blocked: the chat is over and their later messages are refused.";
      default:
        return unknownCommand(command.name, VISITOR_HELP);
    }
  }

  async onDeskMessage(stanza: Element, siteId: string): Promise<void> {
    const { store } = this.deps;
    const sender = bareJid(stanza.attrs.from!);
    const site = await store.getSite(siteId);
    if (!site) {
      // No such desk (a deleted site, a typo): said, as for an unknown visitor, when it had something to say.
      if (stanza.getChildText("body")?.trim()) this.deps.send(stanzaErrorReply(stanza, "item-not-found"));
      return;
    }
    const agents = await store.listAgents(siteId);
    if (!agents.some((a) => a.jid === sender)) return; // only the site's agents talk to its desk
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
      case "busy":
      case "available":
        await store.setAgentBusy(sender, command.name === "busy");
        if (command.name === "available") await this.deps.chats.drainQueue(site);
        reply(command.name === "busy" ? "[parley] You get no new chats until you send !available." : "[parley] You get new chats again.");
        return;
      case "help":
        reply(DESK_HELP);
        return;
      default:
        reply(unknownCommand(command.name, DESK_HELP));
    }
  }

  private info(visitor: Visitor, chat: Chat): string {
    const waited = chat.assignedAt ? Math.round((chat.assignedAt - chat.startedAt) / 1000) : Math.round((this.deps.now() - chat.startedAt) / 1000);
    // Each field is the visitor's to choose: one line each, or they could write lines of their own here.
    return [
      `[parley] ${visitorDisplayName(visitor)}`,
      `email: ${visitor.email ? oneLine(visitor.email) : "—"}`,
      `page: ${visitor.page ? oneLine(`${visitor.page.title} ${visitor.page.url}`).trim() : "—"}`,
      `referrer: ${visitor.referrer ? oneLine(visitor.referrer) : "—"}`,
      `user agent: ${visitor.userAgent ? oneLine(visitor.userAgent) : "—"}`,
      `pages seen: ${visitor.pagesSeen ?? 0}`,
      `previous chats: ${Math.max(0, (visitor.chatCount ?? 1) - 1)}`,
      `chat: ${chat.id}`,
      `waited: ${waited} s`,
    ].join("\n");
  }

  private async saveContact(command: Omit<AgentCommand, "stanza">): Promise<string> {
    const { store, chats } = this.deps;
    const value = command.args.trim();
    if (command.name === "email" ? !EMAIL.test(value) : value.length === 0 || value.length > 128) {
      return `[parley] Usage: !${command.name} <${command.name === "email" ? "address" : "name"}>`;
    }
    const visitor = await store.updateVisitor(command.visitor.id, command.name === "email" ? { email: value } : { name: value });
    if (visitor && command.name === "name") {
      // The roster item shows the new name.
      await chats.renameInRoster(command.site, visitor, command.agentJid);
    }
    return `[parley] Saved ${command.name}: ${value}`;
  }

  private async note(command: Omit<AgentCommand, "stanza">): Promise<string> {
    if (!command.args) return "[parley] Usage: !note <text>";
    await this.deps.store.appendMessage(command.visitor.id, {
      chatId: command.chat.id,
      from: "note",
      name: command.chat.agentName ?? agentDisplayName(undefined, command.agentJid),
      text: command.args,
      ts: this.deps.now(),
    });
    return "[parley] Note saved to the transcript.";
  }

  private async transfer(command: Omit<AgentCommand, "stanza">): Promise<string> {
    const { store, chats } = this.deps;
    const { site, visitor, chat } = command;
    const target = bareJid(command.args);
    const agents = await store.listAgents(site.id);
    const agentList = `Agents: ${agents.map((a) => a.jid).join(", ")}`;
    if (!target) return `[parley] Usage: !transfer <agent jid>. ${agentList}`;
    const targetAgent = agents.find((a) => a.jid === target);
    if (!targetAgent) return `[parley] ${target} is not an agent of ${site.name}. ${agentList}`;
    if (target === command.agentJid) return "[parley] This chat is already yours.";
    // Only to someone who can answer now: an agent away, busy or offline would leave the visitor waiting.
    const presence = await chats.routingPresence(target);
    if (presence !== "available") return `[parley] ${agentDisplayName(targetAgent, target)} is ${presence === "dnd" ? "busy" : presence}: a chat can only be transferred to an available agent.`;
    const moved = await chats.transfer(site, visitor, chat, target);
    return moved ? `[parley] Chat transferred to ${agentDisplayName(targetAgent, target)}.` : "[parley] The transfer did not happen: the chat changed meanwhile.";
  }

  private async queueText(site: Site): Promise<string> {
    const queued = await this.deps.store.queuedChats(site.id);
    if (queued.length === 0) return "[parley] Nobody is waiting.";
    const now = this.deps.now();
    const lines = await Promise.all(
      queued.slice(0, LISTED_AT_MOST).map(async (chatId, i) => {
        const chat = await this.deps.store.getChat(chatId);
        const visitor = chat && (await this.deps.store.getVisitor(chat.visitorId));
        const waiting = chat ? ` — waiting ${Math.round((now - chat.startedAt) / 1000)} s` : "";
        return `${i + 1}. ${visitor ? visitorDisplayName(visitor) : (chat?.visitorId ?? chatId)}${waiting}`;
      }),
    );
    const more = queued.length > LISTED_AT_MOST ? `\n… and ${queued.length - LISTED_AT_MOST} more` : "";
    return `[parley] ${queued.length} waiting:\n${lines.join("\n")}${more}`;
  }

  private async visitorsText(site: Site): Promise<string> {
    const ids = await this.deps.store.onlineVisitors(site.id, this.deps.now());
    if (ids.length === 0) return "[parley] No visitors on the site right now.";
    const visitors = await Promise.all(ids.slice(0, LISTED_AT_MOST).map((id) => this.deps.store.getVisitor(id)));
    const lines = visitors
      .filter((v): v is Visitor => v !== null)
      .map((v) => `${visitorDisplayName(v)} (${v.jid}) — ${v.page ? oneLine(v.page.title || v.page.url) : "no page yet"}`);
    return `[parley] ${ids.length} on the site:\n${lines.join("\n")}`;
  }

  private reply(from: string, to: string, text: string): void {
    this.deps.send(noticeToStanza({ from, to, id: this.deps.newId(), text }));
  }
}
