/**
 * HTTP plumbing shared by every function: the app factory with its middleware (request id, JSON logs,
 * CORS, body limits, content types, per-IP rate limit) and the single error handler.
 */
import { OpenAPIHono, z } from "@hono/zod-openapi";
import type { Context, MiddlewareHandler } from "hono";
import { cors } from "hono/cors";
import { HTTPException } from "hono/http-exception";
import { getPath } from "hono/utils/url";
import type { Caller } from "./auth.ts";
import type { Config } from "./config.ts";
import type { Sql } from "./db.ts";
import { ApiError, apiErrorFromDb, fieldErrors, problemResponse, unstorablePlace } from "./errors.ts";

/** What every function needs: settings and the database. */
export interface Deps {
  config: Config;
  sql: Sql;
}

/** What the local stack passes beside each request (functions/main/app.ts). */
export interface FunctionBindings {
  /** The client's address, from the socket: the local stack's stand-in for Supabase's X-Forwarded-For. */
  clientAddress?: string;
}

/** Context variables set by the middleware below. */
export interface AppEnv {
  Bindings: FunctionBindings;
  Variables: {
    requestId: string;
    caller: Caller;
    deps: Deps;
  };
}

const LEVELS = { info: 0, warn: 1, error: 2 } as const;
const minimumLevel = LEVELS[(Deno.env.get("LOG_LEVEL") ?? "info") as keyof typeof LEVELS] ?? 0;

/** Writes one JSON line per event (from LOG_LEVEL up); the request id ties a request's lines together. */
export function log(level: keyof typeof LEVELS, message: string, fields: Record<string, unknown> = {}) {
  if (LEVELS[level] < minimumLevel) return;
  const line = JSON.stringify({ time: new Date().toISOString(), level, message, ...fields });
  if (level === "error") console.error(line);
  else console.log(line);
}

/** The level of a request's log line: a 503 the caller may retry is a warning, any other 5xx an error. */
export function requestLogLevel(status: number): keyof typeof LEVELS {
  return status === 503 ? "warn" : status >= 500 ? "error" : "info";
}

/** The client address: the local stack's socket address, else the first X-Forwarded-For hop Supabase's edge sets. */
export function clientIp(c: Context): string {
  return (c.env as FunctionBindings | undefined)?.clientAddress ||
    c.req.header("x-forwarded-for")?.split(",")[0].trim() || c.req.header("x-real-ip") || "unknown";
}

const LOCAL_PREFIX = "/functions/v1/";

/**
 * The path a function routes on: the request's, less the /functions/v1 the local stack serves functions
 * under (Supabase's edge strips it before a function sees the request). Routing on it lets the local stack
 * hand each request over as it came; copying it under a new URL, body stream and headers included, cost
 * about a third of the ingest function's CPU per request.
 */
export function functionPath(request: Request): string {
  const path = getPath(request);
  return path.startsWith(LOCAL_PREFIX) ? path.slice(LOCAL_PREFIX.length - 1) : path;
}

/** Sets RateLimit headers and throws 429 with Retry-After when the bucket is exhausted. */
export function applyRateLimit(
  c: Context,
  limit: number,
  hit: { allowed: boolean; remaining: number; reset_seconds: number },
) {
  c.header("ratelimit-limit", String(limit));
  c.header("ratelimit-remaining", String(hit.remaining));
  c.header("ratelimit-reset", String(hit.reset_seconds));
  if (!hit.allowed) {
    throw new ApiError(429, "rate_limited", "Too many requests; retry later", undefined, {
      "retry-after": String(hit.reset_seconds),
      "ratelimit-limit": String(limit),
      "ratelimit-remaining": "0",
      "ratelimit-reset": String(hit.reset_seconds),
    });
  }
}

/** Counts a hit per client IP before any other work, shared across instances through the database. */
export function ipRateLimit(deps: Deps): MiddlewareHandler<AppEnv> {
  const { config, sql } = deps;
  return async (c, next) => {
    if (c.req.method === "OPTIONS") return await next();
    const [hit] = await sql`
      select * from app.rate_limit_hit(${"ip:" + clientIp(c)}, ${config.rate_limit.per_ip},
                                       ${config.rate_limit.window_seconds})`;
    applyRateLimit(c, config.rate_limit.per_ip, hit as never);
    await next();
  };
}

/**
 * Turns a failed zod validation of any request part into a 422 listing each bad field, and refuses valid
 * input the platform cannot store as sent (U+0000, unpaired surrogates, JSON nested too deep, a "__proto__"
 * key) the same way. A body is checked as it arrived, since zod drops "__proto__".
 */
export const validationHook = async (
  result: { success: boolean; target?: string; data?: unknown; error?: { issues: z.core.$ZodIssue[] } },
  c: Context,
) => {
  const target = result.target === "json" ? "body" : result.target ?? "body";
  if (!result.success) {
    throw new ApiError(
      422,
      "validation_failed",
      "The request has invalid fields",
      fieldErrors(result.error!.issues, target),
    );
  }
  // The body as it arrived, parsed again from the text Hono's JSON validator read (Hono keeps the text, not
  // the value); a request without a body was validated as {} and has none.
  const text = result.target === "json" ? await c.req.bodyCache.text : undefined;
  const unstorable = unstorablePlace(text === undefined ? result.data : JSON.parse(text));
  if (unstorable) {
    throw new ApiError(422, "validation_failed", "The request has invalid fields", [
      { path: [target, ...unstorable.path].join("."), message: unstorable.message, code: unstorable.code },
    ]);
  }
};

/** The problem+json 404 for a path no route serves. */
export function routeNotFound(c: Context): Response {
  return problemResponse(
    c,
    new ApiError(404, "route_not_found", `No route for ${c.req.method} ${c.req.path}`),
  );
}

/** application/json or a +json type, with or without parameters: the bodies every function reads. */
export const isJsonType = (contentType: string) =>
  /^application\/(?:[\w.+-]+\+)?json\s*(?:;|$)/i.test(contentType);

/** The 415 for any other body type. */
export const unsupportedMediaType = () =>
  new ApiError(415, "unsupported_media_type", "Send the request body as application/json");

/**
 * The single error handler of every function: our ApiErrors as they are, Hono's body errors and database
 * refusals as 4xx, clashes with concurrent transactions, an unreachable database and a statement stopped at
 * its timeout as a 503 to retry, anything else logged with the request id and answered as a bare 500.
 */
export function errorResponse(error: Error, c: Context): Response {
  if (error instanceof ApiError) return problemResponse(c, error);
  if (error instanceof HTTPException) {
    // Hono's JSON validator raises 400 for a body that is not JSON at all; the OpenAPI router 415 for a media
    // type its validator would not read (application/a+b+json passes the router's own check).
    if (error.status === 415) return problemResponse(c, unsupportedMediaType());
    const code = error.status === 400 ? "malformed_json" : "bad_request";
    const detail = error.status === 400 ? "The request body is not valid JSON" : error.message;
    return problemResponse(c, new ApiError(error.status, code, detail));
  }
  const mapped = apiErrorFromDb(error);
  if (mapped) {
    // The caller may retry a 503, but operators should still see the outage, the clash or the slow query.
    if (mapped.status >= 500) {
      log("warn", mapped.code, { request_id: c.get("requestId"), error: `${error.name}: ${error.message}` });
    }
    return problemResponse(c, mapped);
  }
  log("error", "unhandled error", {
    request_id: c.get("requestId"),
    error: `${error.name}: ${error.message}`,
    stack: error.stack,
  });
  return problemResponse(c, new ApiError(500, "internal_error", "Something went wrong on our side"));
}

const BODY_METHODS = new Set(["POST", "PUT", "PATCH"]);

/**
 * Creates a function's app under its Supabase base path ("/api" is served as /functions/v1/api) with the
 * common middleware and problem+json errors for everything that goes wrong.
 */
export function createRouter(basePath: string, config: Config): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>({ defaultHook: validationHook, getPath: functionPath }).basePath(
    basePath,
  ) as unknown as OpenAPIHono<AppEnv>;

  app.use("*", async (c, next) => {
    const requestId = c.req.header("x-request-id")?.slice(0, 100) || crypto.randomUUID();
    c.set("requestId", requestId);
    const started = performance.now();
    await next();
    c.header("x-request-id", requestId);
    const caller = c.get("caller");
    log(requestLogLevel(c.res.status), "request", {
      request_id: requestId,
      method: c.req.method,
      path: c.req.path,
      status: c.res.status,
      latency_ms: Math.round((performance.now() - started) * 100) / 100,
      user_id: caller?.userId,
      client_id: caller?.clientId,
    });
  });

  app.use(
    "*",
    cors({
      origin: config.server.cors_origins.includes("*") ? "*" : config.server.cors_origins,
      allowHeaders: [
        "authorization",
        "content-type",
        "x-client-info",
        "apikey",
        "x-request-id",
        "idempotency-key",
      ],
      allowMethods: ["GET", "POST", "PATCH", "PUT", "DELETE", "OPTIONS"],
      exposeHeaders: [
        "x-request-id",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
      ],
      maxAge: 600,
    }),
  );

  // Checked before the body is read: a wrong content type or an oversized body never reaches a handler.
  app.use("*", async (c, next) => {
    if (!BODY_METHODS.has(c.req.method)) return await next();
    const length = Number(c.req.header("content-length") ?? "0");
    if (length > config.server.max_body_bytes) {
      throw new ApiError(
        413,
        "payload_too_large",
        `The request body exceeds ${config.server.max_body_bytes} bytes`,
      );
    }
    const hasBody = length > 0 || c.req.header("transfer-encoding") !== undefined;
    const type = c.req.header("content-type") ?? "";
    if (hasBody && !isJsonType(type)) throw unsupportedMediaType();
    if (length === 0 && c.req.header("transfer-encoding") !== undefined) {
      // Chunked bodies have no declared length; read with a cap so they cannot exceed the limit either.
      const body = await c.req.raw.clone().arrayBuffer();
      if (body.byteLength > config.server.max_body_bytes) {
        throw new ApiError(
          413,
          "payload_too_large",
          `The request body exceeds ${config.server.max_body_bytes} bytes`,
        );
      }
    }
    await next();
  });

  app.notFound(routeNotFound);
  app.onError(errorResponse);

  return app;
}

/** Encodes a keyset-pagination position as an opaque URL-safe cursor. */
export function encodeCursor(position: unknown[]): string {
  return btoa(JSON.stringify(position)).replaceAll("+", "-").replaceAll("/", "_").replaceAll("=", "");
}

/** Decodes a cursor made by encodeCursor and checks its shape; a tampered cursor is a 422, not a 500. */
export function decodeCursor<T extends z.ZodType>(cursor: string, shape: T): z.infer<T> {
  let position: unknown;
  try {
    position = JSON.parse(atob(cursor.replaceAll("-", "+").replaceAll("_", "/")));
  } catch {
    position = undefined;
  }
  const parsed = shape.safeParse(position);
  if (parsed.success) return parsed.data;
  throw new ApiError(422, "validation_failed", "The cursor is invalid", [
    { path: "query.cursor", message: "Use the next_cursor value of a previous page", code: "invalid_cursor" },
  ]);
}

/**
 * Reads a request body as bytes, refusing with 413 as soon as it exceeds the cap (a declared length is
 * checked first), for functions that need the raw bytes or a larger limit than the JSON routes.
 */
export async function readBody(request: Request, maxBytes: number): Promise<Uint8Array> {
  const tooLarge = () => new ApiError(413, "payload_too_large", `The request body exceeds ${maxBytes} bytes`);
  const declared = request.headers.get("content-length");
  if (Number(declared ?? "0") > maxBytes) throw tooLarge();
  // A declared length is the body's exact size (HTTP framing), so it is read whole; arrayBuffer() skips the
  // JS stream the chunked case needs (a single lead: about 0.012 against 0.020 ms of server CPU).
  if (declared !== null) return new Uint8Array(await request.arrayBuffer());
  if (!request.body) return new Uint8Array();
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = request.body.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw tooLarge();
    }
    chunks.push(value);
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}
