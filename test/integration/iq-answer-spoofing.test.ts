import xml from "@xmpp/xml";
import { afterAll, beforeAll, expect, it } from "vitest";
import { startStack, type Stack } from "../support/stack.js";

// Any Jabber user can send the component an IQ result with an id of their choosing, and
// Parley's ids are guessable (`<process id>-<counter>`; /healthz shows the process id). An
// answer counts only from the entity asked (RFC 6120 §8.1.2.1) or its server.

let stack: Stack;

beforeAll(async () => {
  stack = await startStack({ agents: ["slow", "mallory"] });
});
afterAll(async () => {
  await stack?.stop();
});

it("ignores an answer to its IQ from anyone but the entity asked", async () => {
  const slow = await stack.agent("slow");
  const mallory = await stack.agent("mallory");
  let answer!: () => void;
  const answered = new Promise<void>((resolve) => (answer = resolve));
  slow.xmpp.iqCallee.get("urn:example:slow", "query", async () => {
    await answered;
    return xml("query", { xmlns: "urn:example:slow" });
  });

  const id = `${stack.bridge.processId}-spoof1`;
  let settledWith: string | undefined;
  const request = stack.bridge.link
    .request(xml("iq", { type: "get", from: stack.ejabberd.componentDomain, to: `${slow.jid}/test`, id }, xml("query", { xmlns: "urn:example:slow" })), 20_000)
    .then((result) => (settledWith = result?.attrs.from));

  // Mallory answers first, with the right id; then a ping: ejabberd delivers her stanzas
  // to the component in order, so once its answer is back the forged one was handled.
  await mallory.xmpp.send(xml("iq", { type: "result", to: stack.ejabberd.componentDomain, id }));
  await mallory.xmpp.iqCaller.get(xml("ping", { xmlns: "urn:xmpp:ping" }), stack.ejabberd.componentDomain);
  expect(settledWith).toBeUndefined();

  answer();
  await request;
  expect(settledWith).toBe(`${slow.jid}/test`);
  await mallory.stop();
  await slow.stop();
});
