#!/usr/bin/env node
import { ConfigError, loadConfig, unknownVariables } from "./config.js";
import { createLogger } from "./logger.js";
import { startBridge } from "./main.js";

// `parley` / `npm start`: run the bridge in the foreground until SIGTERM or SIGINT.

async function main(): Promise<void> {
  const config = loadConfig(process.env);
  const logger = createLogger(config.logLevel);
  process.on("unhandledRejection", (reason) => logger.error({ err: reason }, "unhandled rejection"));
  for (const { name, didYouMean } of unknownVariables(process.env)) {
    logger.warn({ variable: name, didYouMean }, `${name} is not a Parley variable and is ignored${didYouMean ? `; did you mean ${didYouMean}?` : ""}`);
  }
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

// A failed start is one line on stderr (CONTRACT §2); a configuration error, from the
// environment or found while starting (sites file, HTTP port), exits 2, anything else 1.
main().catch((err: unknown) => {
  const message = err instanceof Error ? err.message : String(err);
  process.stderr.write(`parley: ${message.replace(/\s*\n\s*/g, " ")}\n`);
  process.exit(err instanceof ConfigError ? 2 : 1);
});
