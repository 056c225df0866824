import { once } from "node:events";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createLogger } from "../../bridge/logger.js";
import { XmppLink } from "../../bridge/xmpp-link.js";

// What an admin sees when the component password (or domain) does not match ejabberd's
// ejabberd_service listener: ejabberd 23.01 answers the XEP-0114 handshake with a
// not-authorized stream error, for a wrong password and for an unlisted domain alike.
// A stand-in server answers every handshake that way, as ejabberd does.

const STREAM_OPEN =
  "<?xml version='1.0'?><stream:stream xmlns:stream='http://etherx.jabber.org/streams' xmlns='jabber:component:accept' id='3f2a9c' from='chat.localhost'>";
const REFUSAL = "<stream:error><not-authorized xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></stream:error></stream:stream>";

/** A component listener that refuses every handshake; `handshakes` counts them. */
async function refusingComponentListener(): Promise<{ server: Server; port: number; handshakes: () => number; handshake: EventTarget }> {
  let handshakes = 0;
  const handshake = new EventTarget();
  const server = createServer((socket: Socket) => {
    socket.setEncoding("utf8");
    socket.on("error", () => {});
    socket.on("data", (data: string) => {
      if (data.includes("<stream:stream")) socket.write(STREAM_OPEN);
      if (data.includes("<handshake")) {
        handshakes += 1;
        socket.end(REFUSAL);
        handshake.dispatchEvent(new Event("refused"));
      }
    });
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  return { server, port: (server.address() as AddressInfo).port, handshakes: () => handshakes, handshake };
}

function capturedLogger() {
  const lines: { level: number; msg: string }[] = [];
  const logger = createLogger("debug", { write: (line: string) => void lines.push(JSON.parse(line) as { level: number; msg: string }) });
  return { logger, lines };
}

let cleanup: (() => Promise<void>) | undefined;
afterEach(async () => {
  await cleanup?.();
  cleanup = undefined;
});

describe("a refused component handshake", () => {
  it("is logged once, as an error naming PARLEY_XMPP_SECRET and the domain, however often the retries are refused", async () => {
    const listener = await refusingComponentListener();
    const { logger, lines } = capturedLogger();
    const link = new XmppLink({ service: `xmpp://127.0.0.1:${listener.port}`, domain: "chat.localhost", secret: "not-the-password", logger, backoff: { baseMs: 10, maxMs: 20 } });
    cleanup = async () => {
      await link.stop();
      listener.server.close();
    };
    const thirdRefusal = new Promise<void>((resolve) =>
      listener.handshake.addEventListener("refused", () => {
        if (listener.handshakes() === 3) resolve();
      }),
    );
    link.start();
    await thirdRefusal;
    await link.stop();

    const loud = lines.filter((line) => line.level >= 40);
    expect(loud, JSON.stringify(loud)).toHaveLength(1);
    expect(loud[0]!.level).toBe(50);
    expect(loud[0]!.msg).toContain("PARLEY_XMPP_SECRET");
    expect(loud[0]!.msg).toContain("chat.localhost");
    expect(loud[0]!.msg).toContain("ejabberd_service");
  });
});

describe("an unreachable component listener", () => {
  it("is logged once per attempt, naming PARLEY_XMPP_SERVICE", async () => {
    const { logger, lines } = capturedLogger();
    const closed = await refusingComponentListener();
    closed.server.close(); // nothing listens on that port any more
    await once(closed.server, "close");
    const link = new XmppLink({ service: `xmpp://127.0.0.1:${closed.port}`, domain: "chat.localhost", secret: "s", logger, backoff: { baseMs: 10, maxMs: 20 } });
    cleanup = () => link.stop();
    const attempts = () => lines.filter((line) => line.msg === "connecting to ejabberd").length;
    link.start();
    await expect.poll(attempts).toBeGreaterThanOrEqual(4);
    await link.stop();

    // The first three attempts have failed by the time the fourth starts.
    const starts = lines.flatMap((line, i) => (line.msg === "connecting to ejabberd" ? [i] : []));
    const warnings = lines.slice(0, starts[3]).filter((line) => line.level === 40);
    expect(warnings, JSON.stringify(warnings)).toHaveLength(3);
    for (const warning of warnings) expect(warning.msg).toContain("PARLEY_XMPP_SERVICE");
  });
});
