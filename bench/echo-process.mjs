// A bare TCP echo server in a process of its own, for the machine-cost scripts
// (loopback-cost.mjs, wakeup-cost.mjs): run as a file it serves; imported, `forkEcho`
// starts it and can ask it for its CPU time.
import { fork } from "node:child_process";
import net from "node:net";

const self = new URL(import.meta.url).pathname;

if (process.argv[1] === self) {
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    socket.on("data", (data) => socket.write(data));
  });
  server.listen(0, "127.0.0.1", () => process.send({ port: server.address().port }));
  process.on("message", (request) => {
    if (request === "cpu") process.send(process.cpuUsage());
  });
}

/** Starts the echo process; resolves once it listens. */
export async function forkEcho() {
  const child = fork(self);
  const { port } = await new Promise((resolve) => child.once("message", resolve));
  return {
    port,
    /** The echo process's own CPU time so far, as `process.cpuUsage()` gives it (µs). */
    cpu: () =>
      new Promise((resolve) => {
        child.once("message", resolve);
        child.send("cpu");
      }),
    kill: () => child.kill(),
  };
}
