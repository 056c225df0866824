// `node bench/loopback-cost.mjs`: the CPU one loopback TCP round trip costs on this machine
// (a write and a read in each of two Node processes), the floor under every hop of a chat
// message. Prints one line; see docs/performance.md, "What limits each number".
import net from "node:net";
import { forkEcho } from "./echo-process.mjs";

const ROUND_TRIPS = 20_000;
const PAYLOAD = "x".repeat(100);

const echo = await forkEcho();
const socket = net.connect(echo.port, "127.0.0.1");
socket.setNoDelay(true);
await new Promise((resolve) => socket.once("connect", resolve));
const cpuBefore = process.cpuUsage();
const started = performance.now();
let done = 0;
await new Promise((resolve) => {
  socket.on("data", () => (++done === ROUND_TRIPS ? resolve() : socket.write(PAYLOAD)));
  socket.write(PAYLOAD);
});
const cpu = process.cpuUsage(cpuBefore);
const wallUs = ((performance.now() - started) * 1000) / ROUND_TRIPS;
const us = (n) => (n / ROUND_TRIPS).toFixed(1);
console.log(`${ROUND_TRIPS} loopback round trips: client CPU ${us(cpu.user + cpu.system)} µs each (user ${us(cpu.user)}, system ${us(cpu.system)}), wall ${wallUs.toFixed(1)} µs`);
socket.destroy();
echo.kill();
