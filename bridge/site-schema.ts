import { z } from "zod";
import { bareJid } from "../stanza-mappers/addressing.js";
import { isXmlSafe } from "../stanza-mappers/xml-safe-text.js";

// What an admin may say about a site or an agent: shared by the admin API and PARLEY_SITES_FILE.

/** How the admin API shows a webhook secret (it is write-only); PUT back, it keeps the secret. */
export const KEEP_SECRET = "[set]";

/**
 * Admin text that reaches XML (the desk's roster name and group, nicks, notices to agents)
 * or visitors' frames. A character XML cannot carry would make ejabberd drop the whole
 * component stream (not-well-formed) the first time it is sent, so it is refused here.
 */
const xmlSafe = <T extends z.ZodType<string>>(schema: T) =>
  schema.refine(isXmlSafe, { message: "must not contain control characters (other than tab and line breaks), U+FFFE, U+FFFF or unpaired surrogates" });

/** A site's or an agent's display name. */
const displayName = xmlSafe(z.string().trim().min(1).max(100));

/**
 * A page origin the widget may connect from, kept as browsers send it in `Origin`:
 * `https://Example.com/` is stored as `https://example.com`. A path, query or fragment is
 * refused rather than dropped: it says the admin meant something an origin cannot express.
 */
const origin = z
  .string()
  .max(256)
  .transform((s, ctx) => {
    const url = URL.canParse(s.trim()) ? new URL(s.trim()) : null;
    if (url && (url.protocol === "http:" || url.protocol === "https:") && url.pathname === "/" && !url.search && !url.hash && !url.username && !url.password) return url.origin;
    ctx.addIssue({ code: "custom", message: "each origin must be scheme://host[:port] with no path, e.g. https://www.example.com" });
    return z.NEVER;
  });

export const siteBodySchema = z.strictObject({
  name: displayName,
  origins: z.array(origin).max(100).optional(),
  maxChatsPerAgent: z.number().int().min(1).max(1000).optional(),
  answerTimeoutSeconds: z.number().int().min(1).max(86_400).optional(),
  welcome: xmlSafe(z.string().max(1000)).optional(),
  offlineMessage: xmlSafe(z.string().max(1000)).optional(),
  webhookUrl: z.url({ protocol: /^https?$/, error: "must be an http:// or https:// URL" }).max(2048).optional(),
  // A site as GET shows it may be PUT back: "[set]" (what GET shows for a secret) keeps the
  // current secret, null means none; the read-only fields are accepted and ignored.
  // Any length is accepted (the contract sets none); the README advises 32 random bytes.
  webhookSecret: z.union([z.literal(KEEP_SECRET), z.string().min(1).max(256), z.null()]).optional(),
  id: z.string().optional(),
  createdAt: z.number().optional(),
  updatedAt: z.number().optional(),
});
export type SiteBody = z.infer<typeof siteBodySchema>;

export const agentBodySchema = z.strictObject({ name: displayName.optional() });

/** A bare JID: `local@domain`, no resource. Prepared as XMPP servers do (see `bareJid`). */
export const bareJidSchema = z
  .string()
  .max(3071)
  .refine((s) => !s.includes("/"), "must be a bare JID like agent@example.com (no resource)")
  .transform((s) => bareJid(s.trim()))
  .refine((s) => /^[^@/\s"&'<>:]+@[\p{L}\p{N}.-]+$/u.test(s) && isXmlSafe(s), "must be a bare JID like agent@example.com");

export const sitesFileSchema = z.strictObject({
  sites: z.array(
    siteBodySchema.extend({
      id: z.string().regex(/^[a-z0-9][a-z0-9-]{0,31}$/, "must match [a-z0-9][a-z0-9-]{0,31}"),
      agents: z.array(z.union([bareJidSchema, z.strictObject({ jid: bareJidSchema, name: displayName.optional() })])).optional(),
    }),
  ),
});
export type SitesFile = z.infer<typeof sitesFileSchema>;
