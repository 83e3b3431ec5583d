import type { RouteHandler } from "@hono/zod-openapi";
import { hashToken, randomToken } from "../../_shared/auth.ts";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import type { AppEnv } from "../../_shared/http.ts";
import * as queries from "./keys.queries.ts";
import type * as routes from "./keys.routes.ts";

const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

/**
 * A new key: `lap_<environment>_<prefix>_<secret>` with an 8-character base32 prefix (40 bits, unique per
 * key, safe to show) and a 43-character URL-safe secret (256 bits). Only the SHA-256 of the whole key is
 * stored. 256 is a multiple of 32, so `byte % 32` picks prefix characters without bias.
 */
export async function generateApiKey(environment: "live" | "test") {
  const prefix = Array.from(crypto.getRandomValues(new Uint8Array(8)), (byte) => BASE32[byte % 32]).join("");
  const secret = randomToken(`lap_${environment}_${prefix}_`);
  return { prefix, secret, hash: await hashToken(secret) };
}

const keyNotFound = (id: string) => new ApiError(404, "api_key_not_found", `API key "${id}" was not found`);

export const createApiKey: RouteHandler<typeof routes.createApiKey, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const { prefix, secret, hash } = await generateApiKey(body.environment);
  const key = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.createApiKey(tx, clientId, { ...body, prefix, hash }),
  );
  return c.json({ ...key, secret }, 201);
};

export const listApiKeys: RouteHandler<typeof routes.listApiKeys, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const data = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listApiKeys(tx, clientId),
  );
  return c.json({ data }, 200);
};

export const revokeApiKey: RouteHandler<typeof routes.revokeApiKey, AppEnv> = async (c) => {
  const { clientId, keyId } = c.req.valid("param");
  const key = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.revokeApiKey(tx, clientId, keyId),
  );
  if (!key) throw keyNotFound(keyId);
  return c.json(key, 200);
};

export const rotateApiKey: RouteHandler<typeof routes.rotateApiKey, AppEnv> = async (c) => {
  const { clientId, keyId } = c.req.valid("param");
  // The body is optional: without one the validator hands over {}, so the default applies here.
  const graceSeconds = (c.req.valid("json") as { grace_seconds?: number }).grace_seconds ?? 0;
  const [current] = await c.get("deps").sql<{ environment: "live" | "test" }[]>`
    select environment from app.api_keys where id = ${keyId}::uuid and client_id = ${clientId}`;
  if (!current) throw keyNotFound(keyId);
  const { prefix, secret, hash } = await generateApiKey(current.environment);
  let rotated: Awaited<ReturnType<typeof queries.rotateApiKey>>;
  try {
    rotated = await asUser(
      c.get("deps").sql,
      c.get("caller").claims,
      (tx) => queries.rotateApiKey(tx, clientId, keyId, { prefix, hash, graceSeconds }),
    );
  } catch (error) {
    const dbError = error as { code?: string; hint?: string; message?: string };
    if (dbError.code === "55000" && dbError.hint?.startsWith("api_key_")) {
      throw new ApiError(409, dbError.hint, String(dbError.message));
    }
    throw error;
  }
  if (!rotated) throw keyNotFound(keyId);
  return c.json({ ...rotated.key, secret, previous: rotated.previous }, 201);
};
