import { pino, type Logger } from "pino";

export type { Logger };

// One root logger; modules take `child({ module })`. Message bodies and secrets are
// never logged at info: bodies only appear under `text` at trace, and these paths are
// redacted wherever they occur.
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: "parley" },
      redact: {
        paths: ["secret", "token", "password", "authorization", "*.secret", "*.token", "*.password", "*.webhookSecret", "headers.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}
