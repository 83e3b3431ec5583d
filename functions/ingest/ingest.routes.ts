/**
 * The ingest function's contract: the lead item and result schemas, and the OpenAPI description of
 * POST /ingest/leads. The handler parses bodies itself (each batch item is validated on its own, so one bad
 * item does not refuse the others), so these schemas document the route rather than guard it.
 */
import { type OpenAPIHono, z } from "@hono/zod-openapi";
import { problemSchema } from "../_shared/errors.ts";
import { leadFields } from "../_shared/leads.ts";

/** Longest Idempotency-Key; batch items append ":<index>" and external_ref allows 200 characters. */
export const MAX_IDEMPOTENCY_KEY = 150;

/** Sources a key may stamp on a lead; Meta, Sheets and WhatsApp leads arrive through their own functions. */
export const ingestSources = z.enum(["website", "api", "manual"]);

/** One lead as a form or server sends it. Unknown top-level fields are kept in `custom`. */
export const ingestLeadSchema = z.looseObject({
  ...leadFields,
  source: ingestSources.optional().openapi({ description: "Defaults to the key's default_source" }),
}).openapi("IngestLead", {
  description: "Send an email or a phone (E.164, or national with `country`). Null and empty strings " +
    "count as absent. Unknown top-level fields are stored in `custom`; the item as sent is kept as raw_payload",
  example: {
    full_name: "Ada Lovelace",
    email: "ada@example.com",
    phone: "020 7946 0018",
    country: "GB",
    utm_source: "google",
    message: "Please call me after 5pm",
  },
});

/** Field names the lead schema knows; anything else on an item joins `custom`. */
export const KNOWN_FIELDS = new Set(Object.keys(ingestLeadSchema.shape));

const fieldError = z.object({ path: z.string(), message: z.string(), code: z.string() });

export const outcomeSchema = z.enum(["created", "duplicate", "existing", "invalid"]).openapi({
  description: "created: a new lead; duplicate: a new lead linked to an earlier one with the same phone or " +
    "email (duplicate_of); existing: this external_ref or Idempotency-Key was already stored with this same " +
    "lead (nothing new); invalid: refused, see errors (idempotency_key_reused or external_ref_reused when the " +
    "key or ref was already used for a different lead)",
});

export const singleResultSchema = z.object({
  lead_id: z.uuid(),
  outcome: outcomeSchema,
  duplicate_of: z.uuid().nullable(),
}).openapi("IngestResult");

export const batchResultSchema = z.object({
  results: z.array(z.object({
    index: z.number().int(),
    outcome: outcomeSchema,
    lead_id: z.uuid().nullable(),
    duplicate_of: z.uuid().nullable(),
    errors: z.array(fieldError).optional().openapi({ description: 'Paths like "leads[3].phone"' }),
  })),
  summary: z.object({
    created: z.number().int(),
    duplicate: z.number().int(),
    existing: z.number().int(),
    invalid: z.number().int(),
  }),
}).openapi("IngestBatchResult");

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});

const rateLimitHeaders = {
  "RateLimit-Limit": {
    schema: { type: "integer" as const },
    description: "Requests per minute for this key",
  },
  "RateLimit-Remaining": { schema: { type: "integer" as const }, description: "Requests left in the window" },
  "RateLimit-Reset": { schema: { type: "integer" as const }, description: "Seconds until the window resets" },
};

/**
 * Documents the ingest routes and serves the document at /ingest/openapi.json. Paths are relative to the
 * app's base path, which the document generator prepends.
 */
export function documentIngest(app: OpenAPIHono<never>, maxBatch: number) {
  app.openAPIRegistry.registerComponent("securitySchemes", "apiKey", {
    type: "apiKey",
    in: "header",
    name: "X-API-Key",
    description: "A client API key (lap_live_… or lap_test_…); `Authorization: Bearer <key>` works too",
  });
  app.openAPIRegistry.registerPath({
    method: "post",
    path: "/leads",
    tags: ["Ingestion"],
    summary: `Send one lead, or a batch of up to ${maxBatch} as {"leads": [...]}`,
    description: "One lead needs the key scope ingest:single, a batch ingest:batch. Every item is " +
      "validated on its own: invalid items are reported with their errors and the others are stored. " +
      "With an Idempotency-Key header a single lead's external_ref defaults to the key, and each batch " +
      "item's to `<key>:<index>`, so retrying a request never stores a lead twice; the same key or " +
      "external_ref sent with a different lead is refused (422). Browsers may call it " +
      "from the key's allowed_origins only; a request with an Origin header the key does not list is " +
      "refused. The client is always the key's own.",
    security: [{ apiKey: [] }],
    request: {
      headers: z.object({
        "idempotency-key": z.string().max(MAX_IDEMPOTENCY_KEY).optional().openapi({
          description: "Any unique string per submission (1-150 printable characters)",
        }),
      }),
      body: {
        required: true,
        content: {
          "application/json": {
            schema: z.union([
              ingestLeadSchema,
              z.object({ leads: z.array(ingestLeadSchema).min(1).max(maxBatch) }).openapi("IngestBatch"),
            ]),
          },
        },
      },
    },
    responses: {
      200: {
        description: "A batch (each item's outcome), or a single lead that already existed",
        headers: rateLimitHeaders,
        content: { "application/json": { schema: z.union([batchResultSchema, singleResultSchema]) } },
      },
      201: {
        description: "A single lead stored (created, or duplicate of an earlier lead)",
        headers: rateLimitHeaders,
        content: { "application/json": { schema: singleResultSchema } },
      },
      400: problem("The body is not valid JSON"),
      401: problem("missing_api_key, invalid_api_key, api_key_revoked or api_key_expired"),
      403: problem("api_key_scope, origin_not_allowed or client_inactive"),
      413: problem("The body exceeds 5 MB"),
      415: problem("The body is not application/json"),
      422: problem("The lead is invalid, or every lead of the batch is; `errors` lists each field"),
      429: problem("The key's rate limit is exhausted; see Retry-After"),
    },
  });
  app.openAPIRegistry.registerPath({
    method: "options",
    path: "/leads",
    tags: ["Ingestion"],
    summary: "CORS preflight: allowed when some active key lists the Origin",
    responses: { 204: { description: "Allowed, with CORS headers" }, 403: problem("Origin not allowed") },
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Lead Automation Platform Ingestion",
      version: "1.0.0",
      description: "Public lead ingestion for website forms and servers, authenticated by client API keys",
    },
    servers: [{ url: "/functions/v1" }],
  });
}
