// The floor for session setup and idle memory: a bare `ws` server in a process of its own,
// doing only what every visitor session needs whatever the product — accept the TCP
// connection, parse the HTTP upgrade, answer the handshake, send one text frame — with the
// same `ws` options as the bridge's gateway and the 101 and the frame in one write, as the
// bridge sends them. No Redis, no session, no limits. bench/main.ts forks it with the size
// of the bridge's welcome frame and opens the same number of sessions against it.
import { createServer } from "node:http";
import { WebSocketServer } from "ws";

const welcome = JSON.stringify({ type: "welcome", padding: "x".repeat(Math.max(0, Number(process.argv[2] ?? 200) - 32)) });
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, skipUTF8Validation: true });
wss.on("headers", (_headers, req) => req.socket.cork());
const server = createServer((_req, res) => res.writeHead(404).end());
server.on("upgrade", (req, socket, head) => {
  socket.on("error", () => socket.destroy());
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.send(welcome);
    socket.uncork();
  });
});
server.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }));
process.on("message", (request) => {
  if (request === "gc") {
    globalThis.gc?.();
    process.send({ gc: true });
  }
});
