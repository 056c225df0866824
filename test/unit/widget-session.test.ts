import { describe, expect, it } from "vitest";
import type { MessageFrame, ServerFrame, WelcomeFrame } from "../../widget/src/protocol.js";
import { initialState, persisted, showsOfflineForm, step, withOtherTabs, type SessionEvent, type SessionState } from "../../widget/src/session.js";

const welcome = (over: Partial<WelcomeFrame> = {}): WelcomeFrame => ({
  type: "welcome",
  visitorId: "v1",
  token: "tok-1",
  resumed: false,
  agentsOnline: true,
  agent: null,
  history: [],
  ...over,
});

const agentMsg = (messageId: string, text: string, ts = 1000): MessageFrame => ({
  type: "message",
  messageId,
  from: "agent",
  name: "Alice",
  text,
  ts,
});

const frame = (f: ServerFrame): SessionEvent => ({ type: "frame", frame: f });

/** Runs events in order; returns the final state and every frame sent on the way. */
function run(events: SessionEvent[], from: SessionState = initialState(null)) {
  let state = from;
  const out = [];
  for (const e of events) {
    const r = step(state, e);
    state = r.state;
    out.push(...r.out);
  }
  return { state, out };
}

describe("widget session", () => {
  it("renders the history of a welcome and goes online", () => {
    const { state } = run([
      frame(welcome({ resumed: true, agent: { name: "Alice" }, history: [agentMsg("m1", "Hello!"), { ...agentMsg("m2", "Hi"), from: "visitor", name: "", id: "c1" }] })),
    ]);
    expect(state.link).toBe("online");
    expect(state.token).toBe("tok-1");
    expect(state.agent).toBe("Alice");
    expect(state.lines.map((l) => [l.from, l.text, l.delivery])).toEqual([
      ["agent", "Hello!", undefined],
      ["visitor", "Hi", "delivered"],
    ]);
  });

  it("holds a message typed before the welcome and sends it once connected", () => {
    const { state, out } = run([{ type: "send", id: "c1", text: "anyone there?", ts: 5 }]);
    expect(out).toEqual([]);
    expect(state.lines[0]).toMatchObject({ id: "c1", delivery: "pending" });
    expect(run([frame(welcome())], state).out).toEqual([{ type: "message", id: "c1", text: "anyone there?" }]);
  });

  it("marks a message delivered when the bridge acknowledges it", () => {
    const { state, out } = run([frame(welcome()), { type: "send", id: "c1", text: "hi", ts: 5 }, frame({ type: "ack", id: "c1", messageId: "m9", ts: 77 })]);
    expect(out).toEqual([{ type: "message", id: "c1", text: "hi" }]);
    expect(state.lines).toEqual([expect.objectContaining({ id: "c1", messageId: "m9", ts: 77, delivery: "delivered" })]);
  });

  it("resends unacknowledged messages with the same id after reconnecting", () => {
    const { state, out } = run([
      frame(welcome()),
      { type: "send", id: "c1", text: "first", ts: 1 },
      { type: "send", id: "c2", text: "second", ts: 2 },
      frame({ type: "ack", id: "c1", messageId: "m1", ts: 3 }),
      { type: "disconnected" },
      { type: "send", id: "c3", text: "while away", ts: 4 },
      frame(welcome({ resumed: true })),
    ]);
    expect(out.slice(2)).toEqual([
      { type: "message", id: "c2", text: "second" },
      { type: "message", id: "c3", text: "while away" },
    ]);
    expect(state.lines.map((l) => l.delivery)).toEqual(["delivered", "pending", "pending"]);
  });

  it("treats a pending message found in the resumed history as delivered, without resending", () => {
    const stored: MessageFrame = { type: "message", messageId: "m5", from: "visitor", name: "", text: "hello", ts: 9, id: "c1" };
    const { state, out } = run([
      frame(welcome()),
      { type: "send", id: "c1", text: "hello", ts: 1 },
      { type: "disconnected" },
      frame(welcome({ resumed: true, history: [stored] })),
    ]);
    expect(out).toEqual([{ type: "message", id: "c1", text: "hello" }]);
    expect(state.lines).toEqual([expect.objectContaining({ id: "c1", messageId: "m5", delivery: "delivered" })]);
  });

  it("adds only the messages missed while disconnected when the session resumes", () => {
    const { state } = run([
      frame(welcome({ history: [agentMsg("m1", "one")] })),
      frame({ type: "agent", state: "joined", name: "Alice" }),
      { type: "disconnected" },
      frame(welcome({ resumed: true, history: [agentMsg("m1", "one"), agentMsg("m2", "two")] })),
    ]);
    expect(state.lines.map((l) => l.text)).toEqual(["one", "Alice joined the chat", "two"]);
  });

  it("starts over from the server's history when the token was not recognised", () => {
    const { state } = run([
      frame(welcome({ history: [agentMsg("m1", "old")] })),
      { type: "send", id: "c1", text: "unsent", ts: 1 },
      { type: "disconnected" },
      frame(welcome({ token: "tok-2", resumed: false })),
    ]);
    expect(state.token).toBe("tok-2");
    expect(state.lines.map((l) => l.text)).toEqual(["unsent"]);
  });

  it("de-duplicates the visitor's own message echoed from another tab by id", () => {
    const echo: MessageFrame = { type: "message", messageId: "m7", from: "visitor", name: "", text: "hi", ts: 8, id: "c1" };
    const { state } = run([
      frame(welcome()),
      { type: "send", id: "c1", text: "hi", ts: 1 },
      frame(echo),
      frame({ type: "ack", id: "c1", messageId: "m7", ts: 8 }),
      frame(echo),
    ]);
    expect(state.lines).toEqual([expect.objectContaining({ id: "c1", messageId: "m7", delivery: "delivered" })]);
  });

  it("shows a message sent from another tab of the same visitor", () => {
    const { state } = run([
      frame(welcome()),
      frame({ type: "message", messageId: "m7", from: "visitor", name: "", text: "from tab 2", ts: 8, id: "other" }),
    ]);
    expect(state.lines).toEqual([expect.objectContaining({ text: "from tab 2", delivery: "delivered" })]);
    expect(state.unread).toBe(0);
  });

  it("ignores a message it already shows by messageId", () => {
    const { state } = run([frame(welcome({ history: [agentMsg("m1", "hi")] })), frame(agentMsg("m1", "hi"))]);
    expect(state.lines).toHaveLength(1);
  });

  it("counts unread agent messages while collapsed and clears them when opened", () => {
    const collapsed = run([frame(welcome()), frame(agentMsg("m1", "a")), frame({ ...agentMsg("m2", "b"), from: "system" })]);
    expect(collapsed.state.unread).toBe(2);
    const opened = run([{ type: "toggle", expanded: true }, frame(agentMsg("m3", "c"))], collapsed.state);
    expect(opened.state.unread).toBe(0);
  });

  it("tracks the queue position until an agent joins", () => {
    const queued = run([frame(welcome()), frame({ type: "queue", position: 3 }), frame({ type: "queue", position: 2 })]);
    expect(queued.state.queuePosition).toBe(2);
    const joined = run([frame({ type: "agent", state: "joined", name: "Bob" })], queued.state);
    expect(joined.state).toMatchObject({ queuePosition: null, agent: "Bob" });
    expect(joined.state.lines.at(-1)).toMatchObject({ kind: "notice", text: "Bob joined the chat" });
  });

  it("shows the agent typing until their message arrives", () => {
    const typing = run([frame(welcome()), frame({ type: "typing", state: "composing", name: "Alice" })]);
    expect(typing.state.agentTyping).toBe("Alice");
    expect(run([frame(agentMsg("m1", "done"))], typing.state).state.agentTyping).toBeNull();
    expect(run([frame({ type: "typing", state: "paused", name: "Alice" })], typing.state).state.agentTyping).toBeNull();
  });

  it("forgets the agent when the chat ends or the agent leaves", () => {
    const chatting = run([frame(welcome({ agent: { name: "Alice" } }))]);
    expect(run([frame({ type: "ended" })], chatting.state).state.agent).toBeNull();
    expect(run([frame({ type: "agent", state: "left", name: "Alice" })], chatting.state).state.agent).toBeNull();
  });

  describe("offline mode", () => {
    it("offers the offline form when no agent is online", () => {
      const { state } = run([frame(welcome({ agentsOnline: false }))]);
      expect(showsOfflineForm(state)).toBe(true);
    });

    it("sends identify, then the message, and then shows the conversation", () => {
      const { state, out } = run([
        frame(welcome({ agentsOnline: false })),
        { type: "identify", name: "Ann", email: "ann@example.com" },
        { type: "send", id: "c1", text: "Call me back", ts: 1 },
      ]);
      expect(out).toEqual([
        { type: "identify", name: "Ann", email: "ann@example.com" },
        { type: "message", id: "c1", text: "Call me back" },
      ]);
      expect(showsOfflineForm(state)).toBe(false);
    });

    it("leaves out a blank name instead of sending an empty field", () => {
      const { out } = run([frame(welcome({ agentsOnline: false })), { type: "identify", name: "  ", email: "ann@example.com" }]);
      expect(out).toEqual([{ type: "identify", email: "ann@example.com" }]);
    });

    it("switches back to the composer when an agent comes online", () => {
      const { state } = run([frame(welcome({ agentsOnline: false })), frame({ type: "availability", agentsOnline: true })]);
      expect(showsOfflineForm(state)).toBe(false);
    });
  });

  it("sends the current page on every welcome and each page change once", () => {
    const { out } = run([
      { type: "page", url: "https://shop.example/", title: "Home" },
      frame(welcome()),
      { type: "page", url: "https://shop.example/", title: "Home" },
      { type: "page", url: "https://shop.example/#/cart", title: "Cart" },
      { type: "disconnected" },
      frame(welcome({ resumed: true })),
    ]);
    expect(out).toEqual([
      { type: "page", url: "https://shop.example/", title: "Home" },
      { type: "page", url: "https://shop.example/#/cart", title: "Cart" },
      { type: "page", url: "https://shop.example/#/cart", title: "Cart" },
    ]);
  });

  it("re-identifies an offline visitor after reconnecting", () => {
    const { out } = run([
      frame(welcome({ agentsOnline: false })),
      { type: "identify", name: "Ann", email: "ann@example.com" },
      { type: "disconnected" },
      frame(welcome({ resumed: true, agentsOnline: false })),
    ]);
    expect(out.filter((f) => f.type === "identify")).toHaveLength(2);
  });

  it("marks a refused message failed and resends it only on retry", () => {
    const refused = run([
      frame(welcome()),
      { type: "send", id: "c1", text: "spam", ts: 1 },
      frame({ type: "error", code: "rate_limited", message: "slow down", id: "c1" }),
      { type: "disconnected" },
      frame(welcome({ resumed: true })),
    ]);
    expect(refused.state.lines[0]?.delivery).toBe("failed");
    expect(refused.out).toHaveLength(1);
    const retried = run([{ type: "retry", id: "c1" }], refused.state);
    expect(retried.out).toEqual([{ type: "message", id: "c1", text: "spam" }]);
    expect(retried.state.lines[0]?.delivery).toBe("pending");
  });

  it("drops typing frames while disconnected rather than queueing them", () => {
    expect(run([{ type: "typing", state: "composing" }]).out).toEqual([]);
    expect(run([frame(welcome()), { type: "typing", state: "composing" }]).out).toEqual([{ type: "typing", state: "composing" }]);
  });

  it("hides the typing indicator when the connection drops", () => {
    const { state } = run([frame(welcome()), frame({ type: "typing", state: "composing", name: "Alice" }), { type: "disconnected" }]);
    expect(state).toMatchObject({ agentTyping: null, link: "reconnecting" });
  });

  it("becomes unavailable when the connection rests or stops, holds what the visitor writes, and sends it once welcomed again", () => {
    const { state, out } = run([frame(welcome()), frame({ type: "typing", state: "composing", name: "Alice" }), { type: "unavailable" }, { type: "send", id: "c1", text: "hello?", ts: 1 }]);
    expect(state).toMatchObject({ link: "unavailable", agentTyping: null });
    expect(out).toEqual([]);
    const back = run([frame(welcome({ resumed: true }))], state);
    expect(back.state.link).toBe("online");
    expect(back.out).toEqual([{ type: "message", id: "c1", text: "hello?" }]);
  });

  it("persists the token and unsent messages, and restores them as pending", () => {
    const { state } = run([
      frame(welcome()),
      { type: "send", id: "c1", text: "sent", ts: 1 },
      frame({ type: "ack", id: "c1", messageId: "m1", ts: 2 }),
      { type: "send", id: "c2", text: "unsent", ts: 3 },
      { type: "toggle", expanded: true },
    ]);
    const saved = persisted(state);
    expect(saved).toEqual({ token: "tok-1", pending: [{ id: "c2", text: "unsent", ts: 3 }], identity: null, expanded: true, unread: 0, seen: "m1" });
    const restored = initialState(saved);
    expect(restored.lines).toEqual([expect.objectContaining({ id: "c2", delivery: "pending" })]);
    expect(restored.expanded).toBe(true);
  });

  it("after a reload, puts unacknowledged messages after the history, or in it when it holds them", () => {
    const reloaded = initialState({ token: "tok-1", pending: [{ id: "c1", text: "stored before the drop", ts: 250 }, { id: "c2", text: "never stored", ts: 300 }], identity: null, expanded: true });
    const history: MessageFrame[] = [
      agentMsg("m1", "hello", 100),
      { type: "message", messageId: "m2", from: "visitor", name: "Visitor 7", text: "question", ts: 150, id: "c0" },
      { type: "message", messageId: "m3", from: "visitor", name: "Visitor 7", text: "stored before the drop", ts: 250, id: "c1" },
      agentMsg("m4", "answer", 260),
    ];
    const { state, out } = run([frame(welcome({ resumed: true, history }))], reloaded);
    expect(state.lines.map((l) => [l.text, l.delivery ?? null])).toEqual([
      ["hello", null],
      ["question", "delivered"],
      ["stored before the drop", "delivered"],
      ["answer", null],
      ["never stored", "pending"],
    ]);
    expect(out.filter((f) => f.type === "message")).toEqual([{ type: "message", id: "c2", text: "never stored" }]);
  });

  it("keeps the site's greeting from the welcome", () => {
    expect(run([frame(welcome({ welcome: "Welcome to Acme! Ask us anything." }))]).state.siteWelcome).toBe("Welcome to Acme! Ask us anything.");
    expect(run([frame(welcome())]).state.siteWelcome).toBeNull();
  });

  it("counts what agents wrote while the tab was away as unread: after a reconnect and on the next page", () => {
    const collapsed = run([frame(welcome({ history: [agentMsg("1000-0", "first", 1000)] })), frame(agentMsg("2000-0", "second", 2000))]);
    expect(collapsed.state.unread).toBe(1);
    // The connection drops; an agent writes meanwhile; the resumed history holds it.
    const history = [agentMsg("1000-0", "first", 1000), agentMsg("2000-0", "second", 2000), agentMsg("3000-0", "while away", 3000)];
    const back = run([{ type: "disconnected" }, frame(welcome({ resumed: true, history }))], collapsed.state);
    expect(back.state.unread).toBe(2);
    // The visitor goes to another page; an agent writes during the navigation.
    const saved = persisted(back.state);
    expect(saved).toMatchObject({ unread: 2, seen: "3000-0" });
    const nextPage = run([frame(welcome({ resumed: true, history: [...history, agentMsg("4000-0", "during navigation", 4000)] }))], initialState(saved));
    expect(nextPage.state.unread).toBe(3);
    // An open box has nothing unread, and a first visit counts nothing it had never shown.
    expect(run([frame(welcome({ resumed: true, history }))], initialState({ ...saved, expanded: true })).state.unread).toBe(0);
    expect(run([frame(welcome({ resumed: true, history }))]).state.unread).toBe(0);
  });

  it("forgets a queue position on a welcome: a chat still waiting gets a queue frame after it", () => {
    const waiting = run([frame(welcome()), frame({ type: "queue", position: 2 })]);
    expect(waiting.state.queuePosition).toBe(2);
    expect(run([{ type: "disconnected" }, frame(welcome({ resumed: true }))], waiting.state).state.queuePosition).toBeNull();
  });

  it("sends a message the bridge could not store (unavailable) again on the next welcome, also after a reload", () => {
    const refused = run([frame(welcome()), { type: "send", id: "c1", text: "hello?", ts: 1 }, frame({ type: "error", code: "unavailable", message: "try again", id: "c1" })]);
    expect(refused.state.lines[0]?.delivery).toBe("failed");
    const back = run([{ type: "disconnected" }, frame(welcome({ resumed: true }))], refused.state);
    expect(back.out.filter((f) => f.type === "message")).toEqual([{ type: "message", id: "c1", text: "hello?" }]);
    expect(back.state.lines[0]?.delivery).toBe("pending");
    const saved = persisted(refused.state);
    expect(saved.pending).toEqual([{ id: "c1", text: "hello?", ts: 1 }]);
    expect(run([frame(welcome({ resumed: true }))], initialState(saved)).out.filter((f) => f.type === "message")).toEqual([{ type: "message", id: "c1", text: "hello?" }]);
  });

  it("drops a typing indicator that went stale (the agent's client dropped without \"paused\")", () => {
    const typing = run([frame(welcome()), frame({ type: "typing", state: "composing", name: "Alice" })]);
    expect(typing.state.agentTyping).toBe("Alice");
    expect(run([{ type: "typing-stale" }], typing.state).state.agentTyping).toBeNull();
  });

  it("keeps another tab's unsent message when this tab stores its own state", () => {
    const tabA = run([frame(welcome()), { type: "send", id: "a1", text: "from A", ts: 5 }]);
    const tabB = run([frame(welcome()), { type: "send", id: "b1", text: "from B", ts: 7 }]);
    // A stored its state; B writes next: A's unsent message must survive it.
    const afterB = withOtherTabs(persisted(tabB.state), persisted(tabA.state), tabB.state);
    expect(afterB.pending).toEqual([{ id: "a1", text: "from A", ts: 5 }, { id: "b1", text: "from B", ts: 7 }]);
    // Once B has seen A's message stored (its echo carries the id), it is not kept any more.
    const echoed = run([frame({ type: "message", messageId: "m9", from: "visitor", name: "Visitor 1", text: "from A", ts: 6, id: "a1" })], tabB.state);
    expect(withOtherTabs(persisted(echoed.state), afterB, echoed.state).pending).toEqual([{ id: "b1", text: "from B", ts: 7 }]);
  });

  it("keeps the token another tab stored while this tab has none yet, and its own once it has one", () => {
    const first = run([frame(welcome({ token: "tok-A" }))]);
    const waiting = run([{ type: "page", url: "https://shop.example/", title: "Shop" }]);
    expect(withOtherTabs(persisted(waiting.state), persisted(first.state), waiting.state).token).toBe("tok-A");
    const welcomed = run([frame(welcome({ token: "tok-B" }))], waiting.state);
    expect(withOtherTabs(persisted(welcomed.state), persisted(first.state), welcomed.state).token).toBe("tok-B");
  });
});
