/**
 * The ingest function: public lead ingestion with client API keys, for website forms (browsers, CORS per
 * key) and servers. POST /ingest/leads takes one lead or {"leads": [...]}; each item is validated and
 * normalised here; then one database call admits it (key, scope, origin, client status and the key's rate
 * limit) and stores every valid item idempotently (app.ingest_requests, sql/0045_one_call_ingest.sql; as
 * now defined, sql/0049, which leaves each reply to ingest.replies.ts).
 * Requests that arrive while the database is busy share that call (ingest.queue.ts), each with its own reply.
 *
 * Built on OpenAPIHono directly rather than createRouter(): that router answers every preflight with the
 * management API's CORS origins, while ingestion must allow exactly the origins its keys list, and it caps
 * bodies at the API's 1 MB where a full batch needs more (config.toml [ingest]).
 */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import {
  ApiError,
  apiErrorFromDb,
  type FieldError,
  fieldErrors,
  RETRYABLE_SQLSTATES,
  unstorablePlace,
} from "../_shared/errors.ts";
import {
  type Deps,
  errorResponse,
  functionPath,
  isJsonType,
  log,
  readBody,
  requestLogLevel,
  routeNotFound,
  unsupportedMediaType,
  validationHook,
} from "../_shared/http.ts";
import { sha256, toHex } from "../_shared/bytes.ts";
import { normalizeLead } from "../_shared/leads.ts";
import { documentIngest, ingestLeadSchema, KNOWN_FIELDS, MAX_IDEMPOTENCY_KEY } from "./ingest.routes.ts";
import { IngestQueue, type IngestRequest } from "./ingest.queue.ts";
import {
  assembleReplies,
  type IngestCallResult,
  type IngestReply,
  type ItemResult,
} from "./ingest.replies.ts";

interface IngestEnv {
  Variables: {
    requestId: string;
    /** Set once the request's Origin is known to be allowed; the response then carries CORS headers. */
    corsOrigin?: string;
    clientId?: string;
    keyId?: string;
  };
}

const KEY_PATTERN = /^lap_(?:live|test)_[a-z2-7]{8}_[A-Za-z0-9_-]{32,128}$/;
const PRINTABLE = /^[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?$/;
// x-client-info and apikey: supabase-js functions.invoke() sends them from browsers.
const ALLOW_HEADERS =
  "content-type, x-api-key, idempotency-key, authorization, x-request-id, x-client-info, apikey";
const EXPOSE_HEADERS = "x-request-id, retry-after, ratelimit-limit, ratelimit-remaining, ratelimit-reset";
const PREFLIGHT_MAX_AGE = "7200";

const UTF8 = new TextDecoder("utf-8", { fatal: true });
/** A JSON escape of U+0000 or of a surrogate, the only way text PostgreSQL cannot store gets into a body. */
const UNSTORABLE_ESCAPE = /\\u(?:0000|d[89a-f])/i;

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value);

/**
 * The API key from X-API-Key, else from Authorization: Bearer. A bearer that is not a lap_ key (supabase-js
 * sends the project's anon JWT there) does not count as one.
 */
function apiKeyOf(c: Context): string | undefined {
  const header = c.req.header("x-api-key")?.trim();
  if (header) return header;
  const bearer = c.req.header("authorization")?.match(/^Bearer\s+(\S+)\s*$/i)?.[1];
  return bearer?.startsWith("lap_") ? bearer : undefined;
}

/** Forms often send null or "" for fields left empty; those count as absent. Known strings are trimmed. */
function cleanItem(item: Record<string, unknown>): Record<string, unknown> {
  const cleaned: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(item)) {
    if (!KNOWN_FIELDS.has(field)) {
      cleaned[field] = value;
    } else if (typeof value === "string") {
      if (value.trim() !== "") cleaned[field] = value.trim();
    } else if (value !== null) {
      cleaned[field] = value;
    }
  }
  return cleaned;
}

/**
 * Validates and normalises one item into what app.ingest_requests stores, or returns its field errors with
 * paths relative to the body ("phone" for a single lead, "leads[3].phone" in a batch).
 */
function prepareItem(
  item: unknown,
  index: number,
  options: { batch: boolean; idempotencyKey?: string; mayHoldUnstorable: boolean },
): { payload: Record<string, unknown>; refFromHeader: boolean } | { errors: FieldError[] } {
  const prefix = options.batch ? `leads[${index}]` : "";
  const at = (path: string) => [prefix, path].filter(Boolean).join(".");
  if (!isObject(item)) {
    return { errors: [{ path: prefix, message: "Send each lead as a JSON object", code: "invalid_type" }] };
  }
  // Postgres cannot store U+0000, unpaired surrogates or JSON nested too deep: refuse the item rather than
  // fail the database call. The nesting is always checked, the strings only when the body holds an escape
  // that could make one unstorable.
  const unstorable = unstorablePlace(item, options.mayHoldUnstorable);
  if (unstorable) {
    return {
      errors: [{ path: at(unstorable.path.join(".")), message: unstorable.message, code: unstorable.code }],
    };
  }
  const parsed = ingestLeadSchema.safeParse(cleanItem(item));
  if (!parsed.success) return { errors: fieldErrors(parsed.error.issues, prefix) };
  const known: Record<string, unknown> = {};
  const extra: Record<string, unknown> = {};
  for (const [field, value] of Object.entries(parsed.data)) {
    (KNOWN_FIELDS.has(field) ? known : extra)[field] = value;
  }
  const normalized = normalizeLead(known, extra);
  if ("errors" in normalized) {
    return { errors: normalized.errors.map((error) => ({ ...error, path: at(error.path) })) };
  }
  const { lead } = normalized;
  const externalRef = lead.external_ref ??
    (options.idempotencyKey &&
      (options.batch ? `${options.idempotencyKey}:${index}` : options.idempotencyKey));
  return {
    payload: {
      ...lead,
      index,
      source: parsed.data.source,
      external_ref: externalRef || undefined,
      raw_payload: item,
    },
    refFromHeader: !lead.external_ref && Boolean(externalRef),
  };
}

/**
 * The error of an item whose external_ref, from the body or the Idempotency-Key, names a lead stored from
 * another body. Reusing either for a different lead is the caller's mistake, and answering "existing" would
 * drop that lead without a word; the IETF's Idempotency-Key draft answers it with 422.
 */
function reusedRefError(fromHeader: boolean, at: string): FieldError {
  return fromHeader
    ? {
      path: "header.idempotency-key",
      message:
        "This Idempotency-Key was used for a different lead; resend that lead unchanged or use a new key",
      code: "idempotency_key_reused",
    }
    : {
      path: at,
      message:
        "This external_ref names a different lead; resend that lead unchanged or use a new external_ref",
      code: "external_ref_reused",
    };
}

/** A body with "leads" is a batch; any other object is one lead. Envelope errors leave no items. */
function splitBody(
  body: unknown,
  maxBatch: number,
): { batch: boolean; items: unknown[]; errors: FieldError[] } {
  if (!isObject(body)) {
    const message = 'Send one lead as a JSON object, or a batch as {"leads": [...]}';
    return { batch: false, items: [], errors: [{ path: "", message, code: "invalid_type" }] };
  }
  if (!Object.hasOwn(body, "leads")) return { batch: false, items: [body], errors: [] };
  const { leads, ...rest } = body;
  const errors: FieldError[] = Object.keys(rest).map((field) => ({
    path: field,
    message: `Unknown field "${field}"`,
    code: "unknown_field",
  }));
  if (!Array.isArray(leads)) {
    errors.push({ path: "leads", message: "Send leads as an array", code: "invalid_type" });
  } else if (leads.length === 0 || leads.length > maxBatch) {
    errors.push({
      path: "leads",
      message: `Send between 1 and ${maxBatch} leads (got ${leads.length})`,
      code: leads.length === 0 ? "too_small" : "too_big",
    });
  }
  return { batch: true, items: errors.length ? [] : leads as unknown[], errors };
}

/** The problem for a key, scope, origin, client or rate-limit refusal from app.ingest_requests. */
function keyError(reply: Extract<IngestReply, { error: string }>, batch: boolean): ApiError {
  switch (reply.error) {
    case "key_invalid":
      return new ApiError(401, "invalid_api_key", "The API key is not valid");
    case "key_revoked":
      return new ApiError(401, "api_key_revoked", "The API key has been revoked");
    case "key_expired":
      return new ApiError(401, "api_key_expired", "The API key has expired");
    case "scope_missing":
      return new ApiError(
        403,
        "api_key_scope",
        `This API key may not send ${
          batch ? "batches" : "single leads"
        }; it lacks the scope "${reply.scope}"`,
      );
    case "origin_not_allowed":
      return new ApiError(
        403,
        "origin_not_allowed",
        "This API key may not be used from this website's origin",
      );
    case "client_inactive":
      return new ApiError(403, "client_inactive", `Client "${reply.client_id}" is inactive`);
    case "rate_limited":
      return new ApiError(
        429,
        "rate_limited",
        "This API key sent too many requests; retry later",
        undefined,
        {
          "retry-after": String(reply.retry_after),
          "ratelimit-limit": String(reply.limit),
          "ratelimit-remaining": "0",
          "ratelimit-reset": String(reply.retry_after),
        },
      );
    default:
      throw new Error(`Unknown ingest error "${reply.error}"`);
  }
}

/**
 * Database calls in flight at once per instance, the most items one grouped call carries, and the waiting
 * items that justify a second call beside a running one. Each call has a fixed cost, so a second call as
 * soon as one item waits is slower; with a threshold above what ever waits, the database works on one call at
 * a time and the second core idles. Measured on 2 cores with a worker beside (the bench's platform, single
 * leads, 8 s points, the two settings interleaved over four rounds): once 8 wait, 2,297 requests/s (median)
 * at 16 connections against 1,975 once 32 wait (which never happens there: the machine stayed 65% busy), and
 * at 64 connections 3,753 against 3,744. An earlier machine, at 64 connections: 2,032-2,058 once 32 wait,
 * 1,928-1,959 once 24, 1,721-1,845 once 48 and 1,724-1,777 once 250. 500-lead batches at 4 connections
 * gave 6,800 rows/s with two calls at once against 5,700 with one. Three calls at once only made the groups
 * smaller.
 */
export const DEFAULT_QUEUE = { maxCalls: 2, maxItems: 500, overlapItems: 8 };

/**
 * Failures of a grouped call that no request caused: each request sent again alone would meet them too, and
 * would wait out the same lock or statement timeout once more.
 */
const GROUP_WIDE_FAILURES = new Set(["database_unavailable", "lock_timeout", "query_timeout"]);

const keyHashes = new Map<string, string>();

/** Hex SHA-256 of an API key, remembered for the keys seen recently (a form sends the same key every time). */
async function keyHash(key: string): Promise<string> {
  let hash = keyHashes.get(key);
  if (hash === undefined) {
    hash = toHex(await sha256(key));
    if (keyHashes.size >= 10_000) keyHashes.clear();
    keyHashes.set(key, hash);
  }
  return hash;
}

/** Builds the ingest function's app with its dependencies, for production and tests alike. */
export function createIngestApp(deps: Deps, queueOptions = DEFAULT_QUEUE) {
  const { sql } = deps;
  const { max_batch: maxBatch, max_body_bytes: maxBodyBytes } = deps.config.ingest;
  const send = async (requests: IngestRequest[]) => {
    const keys = requests.map(({ key_hash, origin, scope }) => ({ key_hash, origin, scope }));
    // Text, which the database parses only when some request's key is admitted.
    const items = JSON.stringify(requests.map((request) => request.items));
    for (let attempt = 1;; attempt++) {
      try {
        const [{ call }] = await sql<{ call: IngestCallResult }[]>`
          select app.ingest_requests(${sql.json(keys)}, ${items}) as call`;
        return assembleReplies(call);
      } catch (error) {
        const code = String((error as { code?: string }).code);
        if (attempt < 3 && RETRYABLE_SQLSTATES.has(code)) {
          log("warn", "ingest retried", { sqlstate: code, attempt, requests: requests.length });
          continue;
        }
        throw error;
      }
    }
  };
  const queue = new IngestQueue<IngestReply>(
    send,
    queueOptions,
    (error) => GROUP_WIDE_FAILURES.has(apiErrorFromDb(error)?.code ?? ""),
  );
  const app = new OpenAPIHono<IngestEnv>({ defaultHook: validationHook, getPath: functionPath }).basePath(
    "/ingest",
  ) as unknown as OpenAPIHono<IngestEnv>;

  // Request id, CORS headers for allowed origins, and one JSON log line per request.
  app.use("*", async (c, next) => {
    const requestId = c.req.header("x-request-id")?.slice(0, 100) || crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    await next();
    c.header("x-request-id", requestId);
    c.header("vary", "Origin", { append: true });
    const origin = c.get("corsOrigin");
    if (origin) {
      c.header("access-control-allow-origin", origin);
      c.header("access-control-expose-headers", EXPOSE_HEADERS);
    }
    log(requestLogLevel(c.res.status), "request", {
      request_id: requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
      client_id: c.get("clientId"),
      api_key_id: c.get("keyId"),
      origin: c.req.header("origin"),
    });
  });

  documentIngest(app as unknown as OpenAPIHono<never>, maxBatch);

  // CORS preflight: it carries no key, so an origin passes when some active key lists it; the POST that
  // follows is checked against its own key.
  app.options("/leads", async (c) => {
    const origin = c.req.header("origin");
    if (!origin) return c.body(null, 204, { allow: "POST, OPTIONS" });
    const [row] = origin.length <= 300
      ? await sql<{ allowed: boolean }[]>`select app.origin_allowed(${origin}) as allowed`
      : [{ allowed: false }];
    if (!row.allowed) {
      throw new ApiError(403, "origin_not_allowed", "No API key accepts requests from this origin");
    }
    c.set("corsOrigin", origin);
    return c.body(null, 204, {
      "access-control-allow-methods": "POST",
      "access-control-allow-headers": ALLOW_HEADERS,
      "access-control-max-age": PREFLIGHT_MAX_AGE,
    });
  });

  app.post("/leads", async (c) => {
    const key = apiKeyOf(c);
    if (!key) {
      throw new ApiError(401, "missing_api_key", "Send the API key in X-API-Key (or Authorization: Bearer)");
    }
    if (!KEY_PATTERN.test(key)) throw new ApiError(401, "invalid_api_key", "The API key is not valid");
    if (!isJsonType(c.req.header("content-type") ?? "")) throw unsupportedMediaType();
    const idempotencyKey = c.req.header("idempotency-key")?.trim();
    const idempotencyErrors: FieldError[] = idempotencyKey !== undefined &&
        (idempotencyKey.length > MAX_IDEMPOTENCY_KEY || !PRINTABLE.test(idempotencyKey))
      ? [{
        path: "header.idempotency-key",
        message: `Use 1-${MAX_IDEMPOTENCY_KEY} printable ASCII characters`,
        code: "invalid_idempotency_key",
      }]
      : [];

    const raw = await readBody(c.req.raw, maxBodyBytes);
    let body: unknown;
    let mayHoldUnstorable = false;
    try {
      const text = UTF8.decode(raw);
      // Only JSON escapes can put such text in: the body is strict UTF-8, and JSON refuses raw U+0000.
      mayHoldUnstorable = UNSTORABLE_ESCAPE.test(text);
      body = JSON.parse(text);
    } catch {
      throw new ApiError(400, "malformed_json", "The request body is not valid JSON");
    }

    const { batch, items, errors: envelopeErrors } = splitBody(body, maxBatch);
    const requestErrors = [...idempotencyErrors, ...envelopeErrors];
    const results: (ItemResult | undefined)[] = [];
    const payloads: Record<string, unknown>[] = [];
    // The valid items whose external_ref came from the Idempotency-Key header.
    const refsFromHeader = new Set<number>();
    if (requestErrors.length === 0) {
      items.forEach((item, index) => {
        const prepared = prepareItem(item, index, { batch, idempotencyKey, mayHoldUnstorable });
        if ("errors" in prepared) {
          results[index] = {
            index,
            outcome: "invalid",
            lead_id: null,
            duplicate_of: null,
            errors: prepared.errors,
          };
        } else {
          payloads.push(prepared.payload);
          if (prepared.refFromHeader) refsFromHeader.add(index);
        }
      });
    }

    // One call authenticates the key (also when nothing is valid, so a bad key is refused before any
    // validation detail is shown) and stores every valid item.
    const scope = batch ? "ingest:batch" : "ingest:single";
    const origin = c.req.header("origin") ?? null;
    const reply = await queue.submit({
      key_hash: await keyHash(key),
      origin,
      scope,
      items: payloads,
    });
    if (reply.error !== undefined) {
      // Refusals after the origin check passed are readable by the page that sent the request.
      if (origin && (reply.error === "client_inactive" || reply.error === "rate_limited")) {
        c.set("corsOrigin", origin);
      }
      throw keyError(reply, batch);
    }
    c.set("clientId", reply.client_id);
    c.set("keyId", reply.key_id);
    if (origin) c.set("corsOrigin", origin);
    // Passed explicitly: headers set with c.header() before a throw do not reach the error response.
    const rateHeaders = {
      "ratelimit-limit": String(reply.rate_limit.limit),
      "ratelimit-remaining": String(reply.rate_limit.remaining),
      "ratelimit-reset": String(reply.rate_limit.reset),
    };
    const invalid = (detail: string, errors: FieldError[] | undefined) =>
      new ApiError(422, "validation_failed", detail, errors, rateHeaders);

    if (requestErrors.length) throw invalid("The request has invalid fields", requestErrors);
    for (const stored of reply.results) {
      const errors = stored.errors?.map((error) => ({
        ...error,
        path: batch ? `leads[${stored.index}].${error.path}` : error.path,
      }));
      results[stored.index] = stored.reused
        ? {
          index: stored.index,
          outcome: "invalid",
          lead_id: null,
          duplicate_of: null,
          errors: [
            reusedRefError(
              refsFromHeader.has(stored.index),
              batch ? `leads[${stored.index}].external_ref` : "external_ref",
            ),
          ],
        }
        : {
          index: stored.index,
          outcome: stored.outcome,
          lead_id: stored.lead_id ?? null,
          duplicate_of: stored.duplicate_of ?? null,
          ...(errors ? { errors } : {}),
        };
    }
    if (results.length !== items.length || results.some((result) => result === undefined)) {
      throw new Error(`ingest_requests answered ${reply.results.length} of ${payloads.length} items`);
    }
    const done = results as ItemResult[];

    if (!batch) {
      const [result] = done;
      if (result.outcome === "invalid") {
        throw invalid("The lead has invalid fields", result.errors);
      }
      return c.json(
        { lead_id: result.lead_id, outcome: result.outcome, duplicate_of: result.duplicate_of },
        result.outcome === "existing" ? 200 : 201,
        rateHeaders,
      );
    }
    const summary = { created: 0, duplicate: 0, existing: 0, invalid: 0 };
    for (const result of done) summary[result.outcome]++;
    if (summary.invalid === done.length) {
      throw invalid("Every lead of the batch is invalid", done.flatMap((result) => result.errors ?? []));
    }
    return c.json({ results: done, summary }, 200, rateHeaders);
  });

  app.all("/leads", (c) => {
    throw new ApiError(405, "method_not_allowed", `Use POST to send leads, not ${c.req.method}`, undefined, {
      allow: "POST, OPTIONS",
    });
  });

  app.notFound(routeNotFound);
  app.onError(errorResponse);

  return app;
}
