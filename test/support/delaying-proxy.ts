import { createServer, connect, type Socket } from "node:net";

/**
 * A TCP proxy on 127.0.0.1 in front of `target` that can slow down what clients send, in
 * order: what a longer network path does to one connection and not to another (loopback
 * alone delivers the bytes of two connections in the order they were written).
 */
export interface DelayingProxy {
  readonly port: number;
  /** From now on, what clients write reaches the target this much later (replies are not delayed). */
  delayClientBytes(ms: number): void;
  close(): Promise<void>;
}

export async function startDelayingProxy(target: { host: string; port: number }): Promise<DelayingProxy> {
  let delayMs = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target.port, target.host);
    for (const socket of [client, upstream]) {
      sockets.add(socket);
      socket.on("close", () => sockets.delete(socket));
      socket.on("error", () => {
        client.destroy();
        upstream.destroy();
      });
    }
    // Same delay for every chunk, and timers of one delay fire in order: the byte order holds.
    client.on("data", (chunk) => (delayMs > 0 ? setTimeout(() => upstream.write(chunk), delayMs) : upstream.write(chunk)));
    upstream.pipe(client);
    client.on("close", () => upstream.destroy());
    upstream.on("close", () => client.destroy());
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("proxy has no port");
  return {
    port: address.port,
    delayClientBytes(ms) {
      delayMs = ms;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
