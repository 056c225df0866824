import { z } from "zod";
import { agentBodySchema, siteBodySchema } from "./site-schema.js";

/**
 * The admin API described as OpenAPI 3.1 (served at GET /api/openapi.json, no token
 * needed). Request bodies come from the same zod schemas that validate them.
 */
export function openApiDocument(version: string): object {
  const error = { $ref: "#/components/schemas/Error" };
  const responses = (ok: object, ...codes: number[]) => ({
    ...ok,
    ...Object.fromEntries(codes.map((code) => [String(code), { description: STATUS[code], content: { "application/json": { schema: error } } }])),
  });
  const json = (schema: object, description = "OK") => ({ description, content: { "application/json": { schema } } });
  const siteId = { name: "siteId", in: "path", required: true, schema: { type: "string", pattern: "^[a-z0-9][a-z0-9-]{0,31}$" } };
  const jid = { name: "jid", in: "path", required: true, schema: { type: "string" }, description: "bare JID of the agent" };

  return {
    openapi: "3.1.0",
    info: { title: "Parley admin API", version, description: "Sites, agents, visitors and chats. Authorization: Bearer $PARLEY_ADMIN_TOKEN." },
    security: [{ bearer: [] }],
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        SiteBody: z.toJSONSchema(siteBodySchema, { io: "input" }),
        AgentBody: z.toJSONSchema(agentBodySchema, { io: "input" }),
        Site: { type: "object", required: ["id", "name", "origins", "maxChatsPerAgent"], properties: { id: { type: "string" }, name: { type: "string" }, origins: { type: "array", items: { type: "string" } }, maxChatsPerAgent: { type: "integer" }, answerTimeoutSeconds: { type: "integer" }, welcome: { type: "string" }, offlineMessage: { type: "string" }, webhookUrl: { type: "string" }, webhookSecret: { type: ["string", "null"], description: '"[set]" or null: the secret is write-only' }, createdAt: { type: "integer" }, updatedAt: { type: "integer" } } },
        Agent: { type: "object", properties: { jid: { type: "string" }, name: { type: ["string", "null"] }, presence: { enum: ["available", "away", "dnd", "xa", "offline"] }, activeChats: { type: "integer" } } },
        Visitor: { type: "object", properties: { id: { type: "string" }, jid: { type: "string" }, name: { type: "string" }, page: { type: ["object", "null"] }, since: { type: "integer" }, chatId: { type: ["string", "null"] } } },
        Message: { type: "object", properties: { id: { type: "string" }, from: { enum: ["visitor", "agent", "system", "note"] }, name: { type: "string" }, text: { type: "string" }, ts: { type: "integer", description: "ms since epoch" } } },
        Chat: { type: "object", properties: { id: { type: "string" }, siteId: { type: "string" }, state: { enum: ["active", "queued", "ended"] }, offline: { type: "boolean" }, visitor: { type: "object" }, agent: { type: ["object", "null"] }, startedAt: { type: "integer" }, endedAt: { type: ["integer", "null"] }, messages: { type: "array", items: { $ref: "#/components/schemas/Message" } } } },
        Error: { type: "object", properties: { error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" } } } } },
      },
    },
    paths: {
      "/api/sites": { get: { summary: "List sites", responses: responses({ 200: json({ type: "array", items: { $ref: "#/components/schemas/Site" } }) }, 401, 503) } },
      "/api/sites/{siteId}": {
        parameters: [siteId],
        put: { summary: "Create or update a site", requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/SiteBody" } } } }, responses: responses({ 200: json({ $ref: "#/components/schemas/Site" }, "Updated"), 201: json({ $ref: "#/components/schemas/Site" }, "Created") }, 400, 401) },
        get: { summary: "Get a site", responses: responses({ 200: json({ $ref: "#/components/schemas/Site" }) }, 401, 404) },
        delete: {
          summary: "Delete a site",
          description: "Its open chats end (visitors are told, agents' roster items removed); its visitors' sockets are closed (4404, \"site deleted\") at their next frame or within two heartbeats; transcripts stay until retention.",
          responses: responses({ 204: { description: "Deleted" } }, 401, 404),
        },
      },
      "/api/sites/{siteId}/agents": { parameters: [siteId], get: { summary: "List agents with presence and active chats", responses: responses({ 200: json({ type: "array", items: { $ref: "#/components/schemas/Agent" } }) }, 401, 404) } },
      "/api/sites/{siteId}/agents/{jid}": {
        parameters: [siteId, jid],
        put: { summary: "Add or update an agent", requestBody: { required: false, content: { "application/json": { schema: { $ref: "#/components/schemas/AgentBody" } } } }, responses: responses({ 200: json({ type: "object" }), 201: json({ type: "object" }, "Created") }, 400, 401, 404) },
        delete: { summary: "Remove an agent", description: "Their active chats on the site move to another available agent, or to the queue.", responses: responses({ 204: { description: "Removed" } }, 401, 404) },
      },
      "/api/sites/{siteId}/visitors": { parameters: [siteId], get: { summary: "Visitors online now", responses: responses({ 200: json({ type: "array", items: { $ref: "#/components/schemas/Visitor" } }) }, 401, 404) } },
      "/api/sites/{siteId}/chats": {
        parameters: [siteId, { name: "state", in: "query", schema: { enum: ["active", "queued", "ended"], default: "active" } }, { name: "messages", in: "query", description: "false: leave each chat's messages out", schema: { enum: ["true", "false"], default: "true" } }],
        get: { summary: "Chats of a site, each with its transcript", responses: responses({ 200: json({ type: "array", items: { $ref: "#/components/schemas/Chat" } }) }, 400, 401, 404) },
      },
      "/api/chats/{chatId}": { parameters: [{ name: "chatId", in: "path", required: true, schema: { type: "string" } }], get: { summary: "A chat with its transcript", responses: responses({ 200: json({ $ref: "#/components/schemas/Chat" }) }, 401, 404) } },
    },
  };
}

const STATUS: Record<number, string> = { 400: "Invalid request; the message names the field", 401: "Missing or wrong token", 404: "Unknown", 409: "Conflict", 503: "Admin API disabled (no PARLEY_ADMIN_TOKEN), or the store is not answering" };
