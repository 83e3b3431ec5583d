/**
 * RFC 9457 problem+json errors with stable codes. Handlers throw ApiError; one onError turns it, a
 * database error or anything unexpected into a response that never echoes internal text.
 */
import type { Context } from "hono";
import { z } from "@hono/zod-openapi";

/** One invalid field of a request. */
export interface FieldError {
  path: string;
  message: string;
  code: string;
}

/** A failure to report to the caller as problem+json. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly errors?: FieldError[],
    readonly headers?: Record<string, string>,
  ) {
    super(message);
  }
}

export const problemSchema = z.object({
  type: z.string(),
  title: z.string(),
  status: z.number().int(),
  code: z.string(),
  detail: z.string(),
  request_id: z.string().optional(),
  errors: z.array(z.object({ path: z.string(), message: z.string(), code: z.string() })).optional(),
}).openapi("Problem");

const TITLES: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Content Too Large",
  415: "Unsupported Media Type",
  422: "Unprocessable Content",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable",
};

/** Builds the problem+json response for an ApiError. */
export function problemResponse(c: Context, error: ApiError): Response {
  const requestId = c.get("requestId") as string | undefined;
  const body = {
    type: `https://lead-platform.dev/problems/${error.code.replaceAll("_", "-")}`,
    title: TITLES[error.status] ?? "Error",
    status: error.status,
    code: error.code,
    detail: error.message,
    request_id: requestId,
    ...(error.errors ? { errors: error.errors } : {}),
  };
  const headers = new Headers({ "content-type": "application/problem+json", ...error.headers });
  if (requestId) headers.set("x-request-id", requestId);
  return new Response(JSON.stringify(body), { status: error.status, headers });
}

/** Converts zod issues into field errors ("body.email", "query.limit"). */
export function fieldErrors(issues: z.core.$ZodIssue[], prefix: string): FieldError[] {
  return issues.flatMap((issue) => {
    const base = [prefix, ...issue.path.map(String)].filter(Boolean).join(".");
    if (issue.code === "unrecognized_keys") {
      return issue.keys.map((key) => ({
        path: base ? `${base}.${key}` : key,
        message: `Unknown field "${key}"`,
        code: "unknown_field",
      }));
    }
    return [{ path: base, message: issue.message, code: issue.code }];
  });
}

export const UNSTORABLE_TEXT_MESSAGE =
  "Text may not contain the NUL character (\\u0000) or an unpaired surrogate (\\ud800-\\udfff)";

/**
 * How deep objects and arrays may nest in what the platform stores, counting the body (or the lead) as the
 * first level. Forms, lead ads and settings nest a few levels; PostgreSQL's jsonb parser recurses per level
 * and gives up (stack depth limit exceeded) between 10,000 and 20,000 levels here, and a recursive walk in
 * JavaScript runs out of stack too.
 */
export const MAX_JSON_DEPTH = 64;

/** The first place in a JSON value that the platform cannot store as sent, as a field error's parts. */
export interface UnstorablePlace {
  path: string[];
  code: "invalid_string" | "too_deep" | "reserved_key" | "number_out_of_range";
  message: string;
}

const unstorableText = { code: "invalid_string", message: UNSTORABLE_TEXT_MESSAGE } as const;
const tooDeep = {
  code: "too_deep",
  message: `Objects and arrays may nest at most ${MAX_JSON_DEPTH} levels deep`,
} as const;
const reservedKey = {
  code: "reserved_key",
  message: 'The key "__proto__" is not allowed: validation would drop it',
} as const;
const outOfRange = {
  code: "number_out_of_range",
  message: "A number is beyond what can be stored (about 1.8e308); send it as a string",
} as const;

/**
 * The first place in a parsed JSON value (as JSON.parse made it) that the platform cannot store as sent:
 * - an object or array nested deeper than MAX_JSON_DEPTH;
 * - a key "__proto__", which JSON.parse keeps but zod silently drops from objects and records;
 * - a number JSON.parse made Infinity (1e400), which would be stored as null;
 * - unless `text` is false, a string or object key holding U+0000 or an unpaired UTF-16 surrogate (JSON
 *   allows "\ud800"; jsonb refuses it, and text would silently get U+FFFD instead).
 * Undefined when there is none. It never descends past MAX_JSON_DEPTH, so no body can exhaust its stack.
 */
export function unstorablePlace(value: unknown, text = true, depth = 0): UnstorablePlace | undefined {
  if (typeof value === "string") {
    return text && !storable(value) ? { path: [], ...unstorableText } : undefined;
  }
  if (typeof value === "number") return Number.isFinite(value) ? undefined : { path: [], ...outOfRange };
  if (value === null || typeof value !== "object") return undefined;
  if (depth === MAX_JSON_DEPTH) return { path: [], ...tooDeep };
  for (const [key, inner] of Object.entries(value)) {
    if (key === "__proto__") return { path: [key], ...reservedKey };
    if (text && !storable(key)) return { path: [key], ...unstorableText };
    const below = unstorablePlace(inner, text, depth + 1);
    if (below) return { ...below, path: [key, ...below.path] };
  }
  return undefined;
}

const storable = (text: string) => !text.includes("\0") && text.isWellFormed();

/** Postgres error codes that mean the request, not the server, was at fault. */
const DB_ERRORS: Record<string, [number, string]> = {
  "42501": [403, "forbidden"], // insufficient_privilege, including row-level security refusals
  "23505": [409, "conflict"], // unique_violation
  "23503": [422, "invalid_reference"], // foreign_key_violation
  "23514": [422, "constraint_violation"], // check_violation
  "23502": [422, "missing_value"], // not_null_violation
  "22P02": [422, "invalid_value"], // invalid_text_representation (a malformed uuid, say)
  "22007": [422, "invalid_value"], // invalid_datetime_format
  "22008": [422, "invalid_value"], // datetime_field_overflow
  "22001": [422, "value_too_long"], // string_data_right_truncation
  // A NUL in text (character_not_in_repertoire) or jsonb (untranslatable_character) that validation missed.
  "22021": [422, "invalid_character"],
  "22P05": [422, "invalid_character"],
  "P0002": [404, "not_found"], // no_data_found
};

/**
 * Deadlocks and serialisation failures: the database rolled the whole transaction back because it met a
 * concurrent one, so sending the request again is safe and usually succeeds.
 */
export const RETRYABLE_SQLSTATES = new Set(["40P01", "40001"]);

/**
 * The database could not be reached, refused the connection or dropped it: SQLSTATE class 08 (connection
 * exception), too_many_connections, the server shutting down or starting up, and the connection errors of
 * postgres.js and of the socket. The request can be sent again once the database is back.
 */
const UNAVAILABLE_CODES = new Set([
  "53300",
  "57P01",
  "57P02",
  "57P03",
  "CONNECT_TIMEOUT",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECTION_ENDED",
  "ECONNREFUSED",
  "ECONNRESET",
  "EHOSTUNREACH",
  "ENOTFOUND",
  "ETIMEDOUT",
]);

/** A 503 the caller may send again after `seconds`. */
function retryLater(code: string, detail: string, seconds: number): ApiError {
  return new ApiError(503, code, detail, undefined, { "retry-after": String(seconds) });
}

/**
 * Maps a postgres.js error raised by a constraint, trigger, policy, a concurrent transaction, a lost
 * connection, a statement or lock timeout to an ApiError, or returns undefined for errors that are the server's
 * fault. Only messages we raise ourselves (P0001-style `raise exception` with an errcode) are shown;
 * constraint texts are replaced by a generic sentence.
 */
export function apiErrorFromDb(error: unknown): ApiError | undefined {
  if (!(error instanceof Error) || !("code" in error)) return undefined;
  const code = String((error as { code: unknown }).code);
  if (UNAVAILABLE_CODES.has(code) || /^08[0-9A-Z]{3}$/.test(code)) {
    return retryLater("database_unavailable", "The database is unreachable; retry shortly", 5);
  }
  if (RETRYABLE_SQLSTATES.has(code)) {
    return retryLater("concurrent_change", "The request met a concurrent change; send it again", 1);
  }
  if (code === "57014") {
    // query_canceled: a statement timeout (db.ts), or an operator cancelling the query.
    return retryLater(
      "query_timeout",
      "The database did not finish the request in time; retry shortly, or narrow it (filters, page size)",
      5,
    );
  }
  if (code === "55P03") {
    // lock_not_available: a lock wait past lock_timeout (app.ingest_requests sets one, sql/0046).
    return retryLater(
      "lock_timeout",
      "Another operation holds the records this request needs; retry shortly",
      5,
    );
  }
  const mapped = DB_ERRORS[code];
  if (!mapped) return undefined;
  const [status, apiCode] = mapped;
  const dbError = error as Error & { constraint_name?: string; where?: string; routine?: string };
  // Messages from our own `raise exception` are written for users; PL/pgSQL raises carry routine exec_stmt_raise.
  const ownMessage = dbError.routine === "exec_stmt_raise";
  const generic: Record<string, string> = {
    forbidden: "You are not allowed to do this",
    conflict: "A record with the same unique value already exists",
    invalid_reference: "A referenced record does not exist",
    constraint_violation: "A value is not allowed",
    missing_value: "A required value is missing",
    invalid_value: "A value has the wrong format",
    value_too_long: "A value is too long",
    invalid_character: UNSTORABLE_TEXT_MESSAGE,
    not_found: "Not found",
  };
  const detail = ownMessage ? dbError.message : generic[apiCode];
  const errors = dbError.constraint_name
    ? [{ path: dbError.constraint_name, message: detail, code: apiCode }]
    : undefined;
  return new ApiError(status, apiCode, detail, errors);
}
