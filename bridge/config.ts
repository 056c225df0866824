import { z } from "zod";
import { editDistance } from "./edit-distance.js";
import { parseRateSpec, type RateSpec } from "./rate-limit.js";

// Configuration from the environment (CONTRACT §2), validated in one place with every
// default here. A bad configuration is one error naming each bad variable.

export interface Config {
  xmppService: string;
  xmppDomain: string;
  xmppSecret: string;
  redis: { kind: "memory" } | { kind: "redis"; url: string } | { kind: "cluster"; nodes: { host: string; port: number }[] };
  visitorRate: RateSpec;
  upgradeRate: RateSpec;
  socketRate: RateSpec;
  socketsPerAddress: number;
  httpHost: string;
  httpPort: number;
  adminToken?: string;
  ejabberdApiUrl?: string;
  ejabberdApiAuth?: { user: string; password: string };
  sitesFile?: string;
  visitorGraceMs: number;
  agentGraceMs: number;
  chatIdleMs: number;
  /** How often each visitor socket is pinged; one missed pong closes it at the next ping. */
  heartbeatMs: number;
  /** Stanzas kept in memory for ejabberd while it is unreachable; beyond, the oldest are dropped. */
  xmppQueueMax: number;
  /** Days an ended chat's transcript is kept; 0 keeps transcripts forever. */
  transcriptRetentionDays: number;
  /** Days a visitor who never chats is remembered after their last visit; 0 keeps them forever. */
  visitorRetentionDays: number;
  logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

const optional = z
  .string()
  .optional()
  .transform((s) => (s === undefined || s.trim() === "" ? undefined : s.trim()));
/**
 * A number in a range, said the same way whatever is wrong with it: zod's own messages
 * ("expected number, received NaN" for `15s`) leave the admin guessing the unit.
 */
const numberIn = (min: number, max: number, what: string, { whole = true } = {}) => {
  const error = `must be ${what} from ${min} to ${max}`;
  const number = z.coerce.number<string | undefined>({ error }).min(min, { error }).max(max, { error });
  return (whole ? number.int({ error }) : number).optional();
};
const ms = (fallback: number) => optional.pipe(numberIn(0, 24 * 3600 * 1000, "whole milliseconds")).transform((n) => n ?? fallback);
const hostPort = /^[^\s:,]+:\d{1,5}$/;

const schema = z.object({
  PARLEY_XMPP_SERVICE: optional
    .transform((s) => s ?? "xmpp://127.0.0.1:5275")
    .pipe(z.string().regex(/^xmpp:\/\/[^\s/]+:\d{1,5}\/?$/, "must look like xmpp://host:port")),
  PARLEY_XMPP_DOMAIN: optional
    .transform((s) => s ?? "chat.localhost")
    .pipe(z.string().regex(/^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$/, "must be a lower-case domain name")),
  PARLEY_XMPP_SECRET: optional.pipe(z.string({ error: "is required (the component password of ejabberd_service)" })),
  PARLEY_REDIS_URL: optional.pipe(z.string().regex(/^rediss?:\/\//, "must start with redis:// or rediss://").optional()),
  PARLEY_REDIS_CLUSTER: optional.pipe(
    z
      .string()
      .refine((s) => s.split(",").every((part) => hostPort.test(part.trim())), "must be host:port,host:port,…")
      .optional(),
  ),
  PARLEY_VISITOR_RATE: optional
    .transform((s) => s ?? "5/s burst 20")
    .pipe(z.string().refine((s) => parseRateSpec(s) !== null, 'must look like "5/s burst 20"')),
  PARLEY_UPGRADE_RATE: optional
    .transform((s) => s ?? "20/s burst 100")
    .pipe(z.string().refine((s) => parseRateSpec(s) !== null, 'must look like "20/s burst 100"')),
  PARLEY_SOCKET_RATE: optional
    .transform((s) => s ?? "30/s burst 200")
    .pipe(z.string().refine((s) => parseRateSpec(s) !== null, 'must look like "30/s burst 200"')),
  PARLEY_SOCKETS_PER_ADDRESS: optional.pipe(numberIn(1, 10_000_000, "a whole number of sockets")).transform((n) => n ?? 1000),
  PARLEY_HTTP_HOST: optional.transform((s) => s ?? "127.0.0.1"),
  PARLEY_HTTP_PORT: optional.pipe(numberIn(0, 65535, "a port number")).transform((n) => n ?? 8080),
  // Any token is accepted (main.ts warns about a short one): refusing to start would be worse.
  PARLEY_ADMIN_TOKEN: optional,
  PARLEY_EJABBERD_API_URL: optional.pipe(z.url({ protocol: /^https?$/, error: "must be an http(s) URL" }).optional()),
  PARLEY_EJABBERD_API_AUTH: optional.pipe(z.string().regex(/^[^@:\s]+@[^:\s]+:.+$/, "must be user@host:password").optional()),
  PARLEY_SITES_FILE: optional,
  PARLEY_VISITOR_GRACE_MS: ms(15_000),
  PARLEY_AGENT_GRACE_MS: ms(60_000),
  PARLEY_CHAT_IDLE_MS: ms(30 * 60_000),
  PARLEY_HEARTBEAT_MS: optional.pipe(numberIn(1000, 3600 * 1000, "whole milliseconds")).transform((n) => n ?? 30_000),
  PARLEY_XMPP_QUEUE_MAX: optional.pipe(numberIn(1, 10_000_000, "a whole number of stanzas")).transform((n) => n ?? 200_000),
  PARLEY_TRANSCRIPT_RETENTION_DAYS: optional.pipe(numberIn(0, 36_500, "days", { whole: false })).transform((n) => n ?? 0),
  PARLEY_VISITOR_RETENTION_DAYS: optional.pipe(numberIn(0, 36_500, "days", { whole: false })).transform((n) => n ?? 30),
  PARLEY_LOG_LEVEL: optional
    .transform((s) => s ?? "info")
    .pipe(z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"])),
});

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    // A value can break several checks with the same message (`-1.5` ms): say it once.
    const problems = new Set(parsed.error.issues.map((issue) => `${String(issue.path[0])} ${issue.message}`));
    throw new ConfigError(`invalid configuration: ${[...problems].join("; ")}`);
  }
  const e = parsed.data;
  if (e.PARLEY_REDIS_URL && e.PARLEY_REDIS_CLUSTER) {
    throw new ConfigError("invalid configuration: PARLEY_REDIS_URL and PARLEY_REDIS_CLUSTER are both set; choose one");
  }
  // Credentials for an API Parley would never call: the admin meant to set the URL too.
  if (e.PARLEY_EJABBERD_API_AUTH && !e.PARLEY_EJABBERD_API_URL) {
    throw new ConfigError("invalid configuration: PARLEY_EJABBERD_API_AUTH is set but PARLEY_EJABBERD_API_URL is not; set the URL of ejabberd's mod_http_api too");
  }
  const config: Config = {
    xmppService: e.PARLEY_XMPP_SERVICE,
    xmppDomain: e.PARLEY_XMPP_DOMAIN,
    xmppSecret: e.PARLEY_XMPP_SECRET,
    redis: e.PARLEY_REDIS_URL
      ? { kind: "redis", url: e.PARLEY_REDIS_URL }
      : e.PARLEY_REDIS_CLUSTER
        ? {
            kind: "cluster",
            nodes: e.PARLEY_REDIS_CLUSTER.split(",").map((part) => {
              const [host, port] = part.trim().split(":");
              return { host: host!, port: Number(port) };
            }),
          }
        : { kind: "memory" },
    visitorRate: parseRateSpec(e.PARLEY_VISITOR_RATE)!,
    upgradeRate: parseRateSpec(e.PARLEY_UPGRADE_RATE)!,
    socketRate: parseRateSpec(e.PARLEY_SOCKET_RATE)!,
    socketsPerAddress: e.PARLEY_SOCKETS_PER_ADDRESS,
    httpHost: e.PARLEY_HTTP_HOST,
    httpPort: e.PARLEY_HTTP_PORT,
    visitorGraceMs: e.PARLEY_VISITOR_GRACE_MS,
    agentGraceMs: e.PARLEY_AGENT_GRACE_MS,
    chatIdleMs: e.PARLEY_CHAT_IDLE_MS,
    heartbeatMs: e.PARLEY_HEARTBEAT_MS,
    xmppQueueMax: e.PARLEY_XMPP_QUEUE_MAX,
    transcriptRetentionDays: e.PARLEY_TRANSCRIPT_RETENTION_DAYS,
    visitorRetentionDays: e.PARLEY_VISITOR_RETENTION_DAYS,
    logLevel: e.PARLEY_LOG_LEVEL,
  };
  if (e.PARLEY_ADMIN_TOKEN) config.adminToken = e.PARLEY_ADMIN_TOKEN;
  if (e.PARLEY_EJABBERD_API_URL) config.ejabberdApiUrl = e.PARLEY_EJABBERD_API_URL.replace(/\/+$/, "");
  if (e.PARLEY_EJABBERD_API_AUTH) {
    const colon = e.PARLEY_EJABBERD_API_AUTH.indexOf(":");
    config.ejabberdApiAuth = { user: e.PARLEY_EJABBERD_API_AUTH.slice(0, colon), password: e.PARLEY_EJABBERD_API_AUTH.slice(colon + 1) };
  }
  if (e.PARLEY_SITES_FILE) config.sitesFile = e.PARLEY_SITES_FILE;
  return config;
}

/** Variables of the test suite and benchmarks, which share the prefix but are not the bridge's. */
const TOOLING_VARIABLE = /^PARLEY_(TEST_|FUZZ_|BENCH_|CHROMIUM$)/;
const KNOWN_VARIABLES = Object.keys(schema.shape);

/**
 * `PARLEY_*` variables the bridge does not know, each with the known name it most likely
 * misspells. Not an error (other tools may share the prefix), but a misspelt
 * `PARLEY_REDIS_URL` silently means the in-memory store, so the start-up log says so.
 */
export function unknownVariables(env: Record<string, string | undefined>): { name: string; didYouMean?: string }[] {
  return Object.keys(env)
    .filter((name) => name.startsWith("PARLEY_") && !KNOWN_VARIABLES.includes(name) && !TOOLING_VARIABLE.test(name))
    .sort()
    .map((name) => {
      const [closest] = KNOWN_VARIABLES.map((known) => ({ known, distance: editDistance(name, known) })).sort((a, b) => a.distance - b.distance);
      return closest && closest.distance <= 3 ? { name, didYouMean: closest.known } : { name };
    });
}
