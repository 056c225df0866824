import { createHmac } from "node:crypto";
import { createServer, type IncomingHttpHeaders } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";
import { waitUntil } from "../support/wait.js";

// CONTRACT §5/§6: with no agent online a chat is in offline mode; each visitor message is
// reported by webhook `offline.message`, signed, with the transcript so far.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["agent1"] });
});
afterAll(async () => {
  await stack?.stop();
});

it("reports each message of an offline chat by a signed offline.message webhook", async () => {
  const received: { headers: IncomingHttpHeaders; body: string }[] = [];
  const receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk: Buffer) => (body += chunk.toString()));
    req.on("end", () => {
      received.push({ headers: req.headers, body });
      res.writeHead(204).end();
    });
  });
  receiver.listen(0, "127.0.0.1");
  await new Promise((resolve) => receiver.once("listening", resolve));
  try {
    const secret = "offline-secret-0123456789";
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
    await stack.api("PUT", "/api/sites/after-hours", { name: "After Hours", webhookUrl: url, webhookSecret: secret, offlineMessage: "We are closed; we will write back." });
    await stack.api("PUT", "/api/sites/after-hours/agents/agent1@localhost", {}); // registered, never logged in

    const visitor = await stack.visitor("after-hours");
    visitor.send({ type: "identify", name: "Ada", email: "ada@example.com" });
    await visitor.say("Do you ship to Norway?");
    await visitor.next("message", (m) => m.from === "system" && m.text === "We are closed; we will write back.");
    await waitUntil("the first offline.message webhook", () => received.length === 1);
    await visitor.say("Order 1234, please.");
    await waitUntil("the second offline.message webhook", () => received.length === 2);

    const events = received.map(({ headers, body }) => {
      expect(headers["x-parley-signature"]).toBe(`sha256=${createHmac("sha256", secret).update(body).digest("hex")}`);
      expect(headers["x-parley-event"]).toBe("offline.message");
      const event = JSON.parse(body);
      expect(event.id).toBe(headers["x-parley-delivery"]);
      return event;
    });
    expect(events[0].id).not.toBe(events[1].id);
    expect(events[1]).toMatchObject({ event: "offline.message", siteId: "after-hours", chat: { state: "queued", agent: null, visitor: { name: "Ada", email: "ada@example.com" } } });
    expect(events.map((e) => e.chat.messages.filter((m: { from: string }) => m.from === "visitor").map((m: { text: string }) => m.text))).toEqual([
      ["Do you ship to Norway?"],
      ["Do you ship to Norway?", "Order 1234, please."],
    ]);
  } finally {
    receiver.close();
  }
});
