// `node bench/wakeup-cost.mjs`: the CPU a Node process spends per message when messages
// arrive paced, each one waking it from epoll, at 100, 1,000 and 5,000 msg/s. The process
// is a bare TCP echo server: no ws, no Redis, no XMPP. What it spends per message at a
// low rate and not at a high one is the price of waking up (scheduler, cold caches), which
// every process of a chat message's path pays at every hop. Prints a Markdown table; see
// docs/performance.md, "What limits each number".
import net from "node:net";
import { forkEcho } from "./echo-process.mjs";

const RATES = [100, 1000, 5000];
const SECONDS = 5;
const PAYLOAD = "x".repeat(200);

const echo = await forkEcho();
const socket = net.connect(echo.port, "127.0.0.1");
socket.setNoDelay(true);
socket.on("data", () => {});
await new Promise((resolve) => socket.once("connect", resolve));

/** Sends `rate` msg/s for `seconds`, paced by a 1 ms timer; resolves with the count sent. */
async function paced(rate, seconds) {
  const started = performance.now();
  let sent = 0;
  // Paced sends, one timer tick (≈ 1 ms) apart at most: at 1,000/s and below each message
  // is its own wake-up of the echo process.
  await new Promise((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - started;
      const due = Math.min(rate * seconds, Math.floor((elapsed * rate) / 1000));
      while (sent < due) {
        socket.write(PAYLOAD);
        sent++;
      }
      if (sent >= rate * seconds) resolve();
      else setTimeout(tick, 1);
    };
    tick();
  });
  return sent;
}

// Warm-up, not measured: without it the first rate also pays for V8 compiling the echo's
// code (the 100 msg/s row came out twice as expensive when it ran first).
await paced(5000, 2);

console.log("| rate/s | echo process CPU | per message (user + system) |\n|---|---|---|");
for (const rate of RATES) {
  const before = await echo.cpu();
  const started = performance.now();
  const sent = await paced(rate, SECONDS);
  const after = await echo.cpu();
  const wallMs = performance.now() - started;
  const user = after.user - before.user;
  const system = after.system - before.system;
  const percent = ((user + system) / 1000 / wallMs) * 100;
  console.log(`| ${rate} | ${percent.toFixed(1)}% | ${((user + system) / sent).toFixed(0)} µs (${(user / sent).toFixed(0)} + ${(system / sent).toFixed(0)}) |`);
}
socket.destroy();
echo.kill();
