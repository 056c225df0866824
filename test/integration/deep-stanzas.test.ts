import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// Any Jabber account can send a stanza nested thousands of elements deep (a few dozen KB,
// well under max_stanza_size). With the Erlang default scheduler stack, ejabberd 23.01
// died of a segfault parsing one at ~5,000 levels, taking every agent and Parley's
// component stream with it; ejabberd-config sets +sss 2048 (see private-ejabberd.sh).

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["mallory"] });
});
afterAll(async () => {
  await stack?.stop();
});

it("survives a message nested 10,000 elements deep to a visitor, and answers it", async () => {
  await stack.api("PUT", "/api/sites/deep", { name: "Deep" });
  const visitor = await stack.visitor("deep");
  const mallory = await stack.agent("mallory");
  const deep = "<x>".repeat(10_000) + "</x>".repeat(10_000);
  // Written raw: xmpp.js would serialize the element recursively.
  mallory.xmpp.socket!.write(`<message type="chat" to="deep.${visitor.welcome.visitorId}@chat.localhost" id="deep1"><body>hi</body>${deep}</message>`);
  const answer = await mallory.messages.next((m) => m.attrs.id === "deep1", "the answer to the deep message");
  expect(answer.attrs.type).toBe("error");
  expect(answer.getChild("error")?.getChild("forbidden")).toBeDefined();
  expect(stack.bridge.link.online).toBe(true);
  expect((await fetch(new URL("/healthz", stack.bridge.httpUrl))).status).toBe(200);
});
