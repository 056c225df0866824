import { parse } from "ltx";
import { describe, expect, it } from "vitest";
import { AgentMessages, type AgentMessageDeps } from "../../bridge/agent-messages.js";
import { createLogger } from "../../bridge/logger.js";
import { createMetrics } from "../../bridge/metrics.js";

// A message Parley sent that the server could not deliver comes back as type="error": an
// operator must see it, without the body it carries back. A visitor's message bounced by
// an agent's session that went away (ejabberd's stream management, when the agent logs in
// anew before the old session's resume wait ends) is sent once more: it was acknowledged.

/** A dependency a bounce must not touch. */
const untouched = new Proxy({}, { get: (_target, key) => { throw new Error(`a bounce used ${String(key)}`); } });

function agentMessages() {
  const lines: string[] = [];
  const metrics = createMetrics(async () => ({}));
  const sent: unknown[] = [];
  const redelivered: [string, string[]][] = [];
  const handler = new AgentMessages({
    store: untouched,
    chats: { redeliver: async (visitorId: string, ids: string[]) => void redelivered.push([visitorId, ids]) },
    commands: untouched,
    lanes: { run: (_key: string, task: () => Promise<void>) => task() },
    domain: "chat.localhost",
    send: (stanza) => void sent.push(stanza),
    now: () => 0,
    newId: () => "id",
    logger: createLogger("info", { write: (line: string) => void lines.push(line) }),
    metrics,
  } as AgentMessageDeps);
  return { handler, lines, metrics, sent, redelivered };
}

describe("bounced messages", () => {
  it("are logged at warn with from, to and condition but not the body, counted by condition, and not answered", async () => {
    const { handler, lines, metrics, sent } = agentMessages();
    await handler.onMessage(
      parse(
        '<message type="error" id="m1" from="ghost@localhost" to="acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost"><body>the visitor\'s words</body><error type="cancel"><service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>',
      ),
    );
    expect(lines).toHaveLength(1);
    expect(JSON.parse(lines[0]!)).toMatchObject({ level: 40, from: "ghost@localhost", to: "acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost", condition: "service-unavailable" });
    expect(lines[0]).not.toContain("the visitor's words");
    expect(await metrics.registry.getSingleMetricAsString("parley_message_bounces_total")).toContain('parley_message_bounces_total{condition="service-unavailable"} 1');
    expect(sent).toEqual([]); // never answer an error (RFC 6120 §8.3.1)
  });

  it("send a bounced visitor message once more, once, unless the bounce says it never can be delivered", async () => {
    const { handler, redelivered } = agentMessages();
    const bounce = (id: string, condition: string) =>
      parse(
        `<message type="error" id="${id}" from="ann@localhost" to="acme.q7m2x4tb3wr5czn6v2aqd7hsek@chat.localhost"><body>hi</body><error type="cancel"><${condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/></error></message>`,
      );
    await handler.onMessage(bounce("1700000000000-0", "service-unavailable"));
    await handler.onMessage(bounce("1700000000000-0", "service-unavailable")); // bounced again: not a loop
    await handler.onMessage(bounce("1700000000001-0", "item-not-found")); // no such account
    expect(redelivered).toEqual([["q7m2x4tb3wr5czn6v2aqd7hsek", ["1700000000000-0"]]]);
  });
});
