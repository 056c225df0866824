import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Redis } from "ioredis";
import { afterAll, beforeAll, expect, it } from "vitest";
import { RedisStore } from "../../bridge/store/redis-store.js";
import { startStack, type Stack } from "../support/stack.js";
import { waitUntil } from "../support/wait.js";

// A chat's end is several steps (state, the agent's slot, the roster item, the visitor's
// `ended`, the webhook). If the process stops after the first, another one finishes the
// rest from a durable timer written before it: the slot is not leaked, the webhook not lost.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], store: "redis" });
});
afterAll(async () => {
  await stack?.stop();
});

it("finishes a chat's end that stopped after the chat was marked ended", async () => {
  const webhooks: string[] = [];
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      webhooks.push(body);
      res.writeHead(204).end();
    });
  });
  receiver.listen(0, "127.0.0.1");
  await new Promise((resolve) => receiver.once("listening", resolve));
  const redis = new Redis(stack.redis!.url);
  // The first release of an agent's slot fails, as if the process had died right before it.
  const release = RedisStore.prototype.releaseAgent;
  let failures = 0;
  RedisStore.prototype.releaseAgent = async function (this: RedisStore, ...args) {
    if (failures++ === 0) throw new Error("process stopped here");
    return release.apply(this, args);
  };
  try {
    const { agent, visitor, visitorJid, chatId } = await stack.openChat("halt", "agent1", "hello");
    await stack.api("PUT", "/api/sites/halt", { name: "halt", webhookUrl: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook` });
    await agent.sendMessage(visitorJid, "!end");
    await waitUntil("the chat to be marked ended", async () => (await stack.api("GET", `/api/chats/${chatId}`)).body.state === "ended");
    expect(failures).toBe(1);
    expect(visitor.frames.pending((f) => f.type === "ended")).toEqual([]);

    // Another process's scheduler would fire it a minute later; bring it forward.
    const [timer] = (await redis.zrange("parley:timers", "0", "-1")).filter((id) => id.startsWith(`finish-end:${chatId}|`));
    expect(timer).toBeDefined();
    await redis.zadd("parley:timers", 0, timer!);

    await visitor.next("ended");
    await expect.poll(async () => ((await stack.api("GET", "/api/sites/halt/agents")).body as { activeChats: number }[])[0]!.activeChats).toBe(0);
    await agent.rosterPushes.next((item) => item.attrs.jid === visitorJid && item.attrs.subscription === "remove", "the visitor's roster item removed");
    await waitUntil("the chat.ended webhook", async () => webhooks.length > 0);
    expect(JSON.parse(webhooks[0]!)).toMatchObject({ event: "chat.ended", chat: { id: chatId, state: "ended" } });
    await waitUntil("the finish-end timer to be gone", async () => (await redis.zrange("parley:timers", "0", "-1")).every((id) => !id.startsWith("finish-end:")));
  } finally {
    RedisStore.prototype.releaseAgent = release;
    redis.disconnect();
    receiver.close();
  }
});
