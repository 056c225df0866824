import { z } from "zod";
import type { Agent, Site } from "./types.js";

// Stored JSON carries a version and is validated when read: a value written by an older
// or newer Parley, or damaged by hand, is reported instead of flowing on as a bad cast.

const STORE_VERSION = 1;

const siteSchema = z.object({
  v: z.literal(STORE_VERSION),
  id: z.string(),
  name: z.string(),
  origins: z.array(z.string()),
  maxChatsPerAgent: z.number().int(),
  answerTimeoutSeconds: z.number().int().optional(),
  welcome: z.string().optional(),
  offlineMessage: z.string().optional(),
  webhookUrl: z.string().optional(),
  webhookSecret: z.string().optional(),
  createdAt: z.number(),
  updatedAt: z.number(),
});

const agentSchema = z.object({ v: z.literal(STORE_VERSION), jid: z.string(), name: z.string().optional(), addedAt: z.number() });

export class StoredValueError extends Error {
  override name = "StoredValueError";
}

function decode<T>(schema: z.ZodType<T>, what: string, raw: string): T {
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (cause) {
    throw new StoredValueError(`stored ${what} is not JSON`, { cause });
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) throw new StoredValueError(`stored ${what} is invalid: ${parsed.error.issues[0]?.message}`);
  return parsed.data;
}

export const encodeSite = (site: Site) => JSON.stringify({ v: STORE_VERSION, ...site });
export const decodeSite = (raw: string): Site => {
  const { v: _v, ...site } = decode(siteSchema, "site", raw);
  return site;
};
export const encodeAgent = (agent: Agent) => JSON.stringify({ v: STORE_VERSION, ...agent });
export const decodeAgent = (raw: string): Agent => {
  const { v: _v, ...agent } = decode(agentSchema, "agent", raw);
  return agent;
};
