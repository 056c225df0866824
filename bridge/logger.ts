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
      // Errors are logged as `{ err }` (pino's error key, also used for `log.warn(err)`);
      // `error` is covered too, so that a slip of the key does not leak what the serializer hides.
      serializers: { err: serializeError, error: serializeError },
      redact: {
        paths: ["secret", "token", "password", "authorization", "*.secret", "*.token", "*.password", "*.webhookSecret", "headers.authorization"],
        censor: "[redacted]",
      },
    },
    destination,
  );
}

/**
 * Properties that clients attach to their errors and that carry what was being sent:
 * ioredis sets `command: { name, args }` on reply errors (OOM, EXECABORT, a failed script,
 * a connection closed with the command pending), and those args are visitors' and agents'
 * message bodies, webhook secrets and resume tokens; xmpp.js's stanza errors carry the
 * whole error stanza as `element`, which may echo a message body. Dropped at any depth.
 */
const COMMAND_KEYS = new Set(["command", "args", "element"]);
const MAX_DEPTH = 8;

/**
 * pino's standard error serializer (type, message and stack with their causes, own
 * properties), minus the command keys above in the error, in its causes (whose message and
 * stack the standard serializer already folds in), and in errors nested under other keys
 * (ioredis's `previousErrors` of EXECABORT, a cluster's `lastNodeError`).
 */
export function serializeError(value: unknown): unknown {
  return withoutCommands(value, 0, new WeakSet());
}

function withoutCommands(value: unknown, depth: number, seen: WeakSet<object>): unknown {
  if (value === null || typeof value !== "object") return value;
  if (seen.has(value)) return "[Circular]";
  if (depth > MAX_DEPTH) return "[Deep]";
  seen.add(value);
  // Only real errors go through pino's serializer: what it returns is itself error-like,
  // and serializing that again would rename its type to "Object".
  const shown = value instanceof Error ? pino.stdSerializers.err(value) : value;
  if (Array.isArray(shown)) return shown.map((item) => withoutCommands(item, depth + 1, seen));
  const out: Record<string, unknown> = {};
  for (const key in shown) {
    if (COMMAND_KEYS.has(key)) continue;
    const property = (shown as Record<string, unknown>)[key];
    if (property !== undefined) out[key] = withoutCommands(property, depth + 1, seen);
  }
  return out;
}
