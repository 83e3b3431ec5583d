import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, problem, timestamp } from "../routing.ts";

/** Scopes a key can hold: single-lead and batch ingestion. */
export const API_KEY_SCOPES = ["ingest:single", "ingest:batch"] as const;

/** Sources an ingestion key may stamp on its leads. */
export const INGEST_SOURCES = ["website", "api", "manual"] as const;

/** Longest grace period a rotated key may keep working: one week. */
export const MAX_ROTATION_GRACE_SECONDS = 604_800;

/**
 * An exact browser origin as the Origin header sends it: scheme, lowercase host, and a port only when it is
 * not the scheme's default. `new URL(value).origin === value` accepts exactly those.
 */
export const originSchema = z.string().max(300).refine((value) => {
  try {
    const url = new URL(value);
    return (url.protocol === "https:" || url.protocol === "http:") && url.origin === value;
  } catch {
    return false;
  }
}, {
  message: "Use an exact origin such as https://www.example.com (scheme and host, no path or trailing slash)",
}).openapi({ example: "https://www.example.com" });

export const apiKeySchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  name: z.string(),
  environment: z.enum(["live", "test"]),
  prefix: z.string().openapi({ description: "Public part of the key, shown in lists to tell keys apart" }),
  scopes: z.array(z.enum(API_KEY_SCOPES)),
  allowed_origins: z.array(z.string()).openapi({
    description: "Browser origins that may use the key; empty means server-to-server only",
  }),
  rate_limit_per_minute: z.number().int(),
  default_source: z.enum(INGEST_SOURCES),
  expires_at: timestamp.nullable(),
  revoked_at: timestamp.nullable(),
  last_used_at: timestamp.nullable().openapi({ description: "Updated at most once a minute" }),
  replaced_by: z.uuid().nullable().openapi({ description: "The key this one was rotated into" }),
  created_at: timestamp,
  status: z.enum(["active", "expired", "revoked"]),
}).openapi("ApiKey");

const secretField = {
  secret: z.string().openapi({
    description:
      "The full key (lap_<environment>_<prefix>_<secret>). Shown only in this response; store it now",
    example: "lap_live_k3x9q2ab_4fJ0c0bq2kQeYt8b3m1Zx0s9Lw7vHq3p5e2TnR6yUaA",
  }),
};

export const createdApiKeySchema = apiKeySchema.extend(secretField).openapi("CreatedApiKey");

export const rotatedApiKeySchema = apiKeySchema.extend({
  ...secretField,
  previous: apiKeySchema.openapi({
    description: "The old key, with the end of its grace period as expires_at",
  }),
}).openapi("RotatedApiKey");

const clientParams = z.object({ clientId: clientIdSchema });
const keyParams = z.object({ clientId: clientIdSchema, keyId: z.uuid() });

const unique = <T>(values: T[]) => [...new Set(values)];

export const createApiKey = apiRoute({
  method: "post",
  path: "/clients/{clientId}/api-keys",
  tags: ["API keys"],
  summary: "Create an ingestion API key; the secret is shown once",
  permission: "api_keys.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        name: z.string().trim().min(1).max(100),
        environment: z.enum(["live", "test"]).default("live"),
        scopes: z.array(z.enum(API_KEY_SCOPES)).min(1).max(API_KEY_SCOPES.length * 2).default([
          ...API_KEY_SCOPES,
        ]).transform(unique),
        allowed_origins: z.array(originSchema).max(50).default([]).transform(unique).openapi({
          description: "Exact origins of the websites whose forms post with this key (CORS); " +
            "leave empty for a key used only from servers",
        }),
        rate_limit_per_minute: z.number().int().min(1).max(1_000_000).default(600),
        default_source: z.enum(INGEST_SOURCES).default("website").openapi({
          description: "Source of leads that do not send one",
        }),
        expires_at: z.iso.datetime({ offset: true }).refine(
          (value) => Date.parse(value) > Date.now(),
          "Use a time in the future",
        ).optional(),
      }),
      "The key's name and settings",
    ),
  },
  responses: { 201: jsonResponse(createdApiKeySchema, "Created; `secret` is not retrievable later") },
});

export const listApiKeys = apiRoute({
  method: "get",
  path: "/clients/{clientId}/api-keys",
  tags: ["API keys"],
  summary: "List a client's API keys, newest first (never their secrets)",
  permission: "api_keys.manage",
  request: { params: clientParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(apiKeySchema) }), "Every key, revoked ones too") },
});

export const revokeApiKey = apiRoute({
  method: "post",
  path: "/clients/{clientId}/api-keys/{keyId}/revoke",
  tags: ["API keys"],
  summary: "Revoke an API key at once (revoking twice keeps the first time)",
  permission: "api_keys.manage",
  request: { params: keyParams },
  responses: { 200: jsonResponse(apiKeySchema, "The revoked key") },
});

export const rotateApiKey = apiRoute({
  method: "post",
  path: "/clients/{clientId}/api-keys/{keyId}/rotate",
  tags: ["API keys"],
  summary: "Replace an API key with a new secret and the same settings; the old one works for a grace period",
  permission: "api_keys.manage",
  request: {
    params: keyParams,
    body: {
      required: false,
      description: "The grace period (default 0: the old key stops at once)",
      content: {
        "application/json": {
          schema: z.strictObject({
            grace_seconds: z.number().int().min(0).max(MAX_ROTATION_GRACE_SECONDS).default(0).openapi({
              description: "Seconds the old key keeps working (0-604800)",
            }),
          }),
        },
      },
    },
  },
  responses: {
    201: jsonResponse(rotatedApiKeySchema, "The new key with its secret, shown once, and the old key"),
    409: problem("The key is revoked, expired or already rotated"),
  },
});

export const routes = [createApiKey, listApiKeys, revokeApiKey, rotateApiKey];
