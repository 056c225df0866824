import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RedisStore } from "../../bridge/store/redis-store.js";
import { startStack, type Stack } from "../support/stack.js";

// A site deleted in the store while one of its chats stayed open: the process handling the
// DELETE died between deleting the site and ending its chats, or another process, whose
// site cache had not yet seen the deletion, started the chat. Once the visitor is gone
// past the idle timeout (here 1.5 s, longer than the 1 s site cache), the chat ends as any
// other: the agent's roster item goes, the transcript is kept.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"], store: "redis", env: { PARLEY_CHAT_IDLE_MS: "1500", PARLEY_VISITOR_GRACE_MS: "200" } });
});
afterAll(async () => {
  await stack?.stop();
});

describe("a deleted site's leftover chat", () => {
  it("ends once its visitor is gone past the idle timeout", async () => {
    const { agent, visitor, visitorJid, chatId } = await stack.openChat("crashy", "agent1", "hello");

    const direct = new RedisStore({ url: stack.redis!.url });
    expect(await direct.deleteSite("crashy")).toBe(true); // and nothing else: no chat ended
    await direct.close();
    await visitor.close();

    await expect.poll(async () => (await agent.roster()).map((item) => item.attrs.jid), { timeout: 15_000 }).not.toContain(visitorJid);
    expect((await stack.api("GET", `/api/chats/${chatId}`)).body).toMatchObject({ state: "ended", messages: [expect.objectContaining({ text: "hello" })] });
  });
});
