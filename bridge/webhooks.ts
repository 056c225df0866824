import { createHash, createHmac } from "node:crypto";
import { backoffDelay } from "./backoff.js";
import type { ChatEvents } from "./chats.js";
import type { Logger } from "./logger.js";
import type { Scheduler } from "./scheduler.js";
import type { Chat, Store } from "./store/types.js";
import { chatTranscript } from "./transcripts.js";

/**
 * Webhooks `chat.ended` and `offline.message` (CONTRACT §6). Each event is stored with
 * its exact body before the first attempt and delivered from the durable timer queue,
 * so retries (capped exponential backoff) send the byte-identical body and survive a
 * restart. `X-Parley-Signature: sha256=<hex HMAC of the body>`; the event id is also the
 * `X-Parley-Delivery` idempotency key, for receivers that must act once per event.
 */
export interface WebhookDeps {
  store: Store;
  scheduler: Pick<Scheduler, "schedule">;
  now(): number;
  logger: Logger;
  fetch?: typeof fetch;
}

const MAX_ATTEMPTS = 15;
const RETRY = { baseMs: 1000, maxMs: 60 * 60 * 1000 };
const TIMEOUT_MS = 10_000;

export class Webhooks implements ChatEvents {
  private readonly log: Logger;

  constructor(private readonly deps: WebhookDeps) {
    this.log = deps.logger.child({ module: "webhooks" });
  }

  /** A chat's `chat.ended` always has the same id: an end finished again after a crash is the same event to a receiver. */
  chatEnded(chat: Chat): Promise<void> {
    return this.enqueue("chat.ended", chat, nameBasedUuid(`chat.ended:${chat.id}`));
  }

  /** One event per visitor message, its id derived from the message: emitted again after a crash, it is the same event. */
  offlineMessage(chat: Chat, messageId: string): Promise<void> {
    return this.enqueue("offline.message", chat, nameBasedUuid(`offline.message:${chat.id}:${messageId}`));
  }

  /** Timer handler: one delivery attempt; returns when to try again, if ever. */
  async deliver(eventId: string, now: number): Promise<{ retryAt: number } | void> {
    const { store } = this.deps;
    const event = await store.getWebhookEvent(eventId);
    if (!event) return;
    const site = await store.getSite(event.siteId);
    if (!site?.webhookUrl) {
      await store.deleteWebhookEvent(eventId);
      return;
    }
    const headers: Record<string, string> = {
      "content-type": "application/json",
      "user-agent": "Parley-Webhooks",
      "x-parley-delivery": event.id,
      "x-parley-event": (JSON.parse(event.body) as { event: string }).event,
    };
    if (site.webhookSecret) headers["x-parley-signature"] = `sha256=${createHmac("sha256", site.webhookSecret).update(event.body).digest("hex")}`;
    let outcome: string;
    try {
      const response = await (this.deps.fetch ?? fetch)(site.webhookUrl, { method: "POST", headers, body: event.body, signal: AbortSignal.timeout(TIMEOUT_MS), redirect: "manual" });
      await response.body?.cancel();
      if (response.status >= 200 && response.status < 300) {
        await store.deleteWebhookEvent(eventId);
        this.log.info({ eventId, siteId: site.id, attempts: event.attempts + 1 }, "webhook delivered");
        return;
      }
      outcome = `HTTP ${response.status}`;
    } catch (err) {
      outcome = err instanceof Error ? err.message : String(err);
    }
    const attempts = event.attempts + 1;
    if (attempts >= MAX_ATTEMPTS) {
      this.log.error({ eventId, siteId: site.id, attempts, outcome }, "webhook given up");
      await store.deleteWebhookEvent(eventId);
      return;
    }
    await store.putWebhookEvent({ ...event, attempts });
    const retryAt = now + backoffDelay(RETRY, attempts - 1, Math.random());
    this.log.warn({ eventId, siteId: site.id, attempts, outcome, retryInMs: retryAt - now }, "webhook failed; will retry");
    return { retryAt };
  }

  private async enqueue(kind: "chat.ended" | "offline.message", chat: Chat, id: string): Promise<void> {
    const { store } = this.deps;
    const site = await store.getSite(chat.siteId);
    if (!site?.webhookUrl) return;
    // Emitted again (an interrupted step finished by another process) while the first is still
    // being delivered: that one keeps its body, so its retries stay byte-identical.
    if (await store.getWebhookEvent(id)) return;
    const body = JSON.stringify({ event: kind, id, siteId: chat.siteId, chat: await chatTranscript(store, chat, true) });
    await store.putWebhookEvent({ id, siteId: chat.siteId, body, attempts: 0 });
    await this.deps.scheduler.schedule("webhook", id, this.deps.now());
  }
}

/** A UUID (RFC 9562 version 8: custom) derived from `name`: the same name, the same id. */
function nameBasedUuid(name: string): string {
  const hex = createHash("sha256").update(name).digest("hex");
  const variant = ((parseInt(hex[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-8${hex.slice(13, 16)}-${variant}${hex.slice(17, 20)}-${hex.slice(20, 32)}`;
}
