#!/usr/bin/env node
import { ConfigError, loadConfig } from "./config.js";
import { createLogger } from "./logger.js";
import { startBridge } from "./main.js";

// `parley` / `npm start`: run the bridge in the foreground until SIGTERM or SIGINT.

async function main(): Promise<void> {
  let config;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`parley: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = createLogger(config.logLevel);
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled rejection"));
  const bridge = await startBridge(config, logger);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, "signal received");
    bridge.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        logger.error({ err }, "unclean stop");
        process.exit(1);
      },
    );
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

main().catch((err: unknown) => {
  process.stderr.write(`parley: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
