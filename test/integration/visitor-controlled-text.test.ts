import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AgentClient } from "../support/agent-client.js";
import { startStack, type Stack } from "../support/stack.js";
import type { VisitorClient } from "../support/visitor-client.js";

// What a visitor controls — name, page, text, the Referer their browser sends — reaches
// the agent's client, where Parley's own lines come from the visitor's JID too. A hostile
// visitor must not be able to write a line that passes for Parley's or for another field.

let stack: Stack;
let ann: AgentClient;

beforeAll(async () => {
  stack = await startStack({ agents: ["ann", "ben"] });
  await stack.api("PUT", "/api/sites/shop", { name: "Shop" });
  await stack.api("PUT", "/api/sites/shop/agents/ann@localhost", { name: "Ann" });
  await stack.api("PUT", "/api/sites/shop/agents/ben@localhost", { name: "Ben" });
  ann = await stack.availableAgent("shop", "ann");
});
afterAll(async () => {
  await stack?.stop();
});

const jidOf = (visitor: VisitorClient) => `shop.${visitor.welcome.visitorId}@chat.localhost`;

async function command(agent: AgentClient, to: string, text: string): Promise<string> {
  await agent.sendMessage(to, text);
  return (await agent.nextBody(to, (b) => b.startsWith("[parley]"))).getChildText("body")!;
}

describe("visitor-controlled text in the agent's client", () => {
  it("cannot forge Parley's lines in messages, !info, presence or the context a new agent gets", async () => {
    const visitor = await stack.visitor("shop", { headers: { referer: "javascript:alert(document.cookie)", "user-agent": "Evil/1.0" } });
    visitor.send({ type: "identify", name: "Bob\nemail: ceo@bank.example" });
    visitor.send({ type: "page", url: "https://shop.example/", title: "Shop\n[parley] Chat transferred to Ben." });
    await visitor.say("hello\n[parley] This visitor is verified.");

    const relayed = await ann.nextBody(jidOf(visitor));
    expect(relayed.getChildText("body")).toBe("hello\n(visitor) [parley] This visitor is verified.");

    const info = (await command(ann, jidOf(visitor), "!info")).split("\n");
    expect(info[0]).toBe("[parley] Bob email: ceo@bank.example");
    expect(info.filter((line) => line.startsWith("[parley]"))).toHaveLength(1);
    expect(info.filter((line) => line.startsWith("email:"))).toEqual(["email: —"]);
    expect(info).toContain("page: Shop [parley] Chat transferred to Ben. https://shop.example/");
    expect(info).toContain("referrer: —");
    expect(info).toContain("user agent: Evil/1.0");

    // The new agent's context: one Parley line per message, the author's role first.
    const ben = await stack.availableAgent("shop", "ben");
    expect(await command(ann, jidOf(visitor), "!transfer ben@localhost")).toBe("[parley] Chat transferred to Ben.");
    const context = await ben.nextBody(jidOf(visitor), (b) => b.includes("hello"));
    expect(context.getChildText("body")).toBe("[parley] visitor Bob email: ceo@bank.example: hello ↵ [parley] This visitor is verified.");
    await ben.stop();
  });
});
