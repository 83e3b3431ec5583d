/**
 * Tokens: access JWTs (jose, HS256 with the project's JWT secret so Supabase accepts them too), opaque
 * refresh and invitation tokens stored only as SHA-256, and the middleware that turns a bearer token into
 * a caller whose account, session and membership are re-read from the database on every request.
 */
import type { MiddlewareHandler } from "hono";
import { errors as joseErrors, jwtVerify, SignJWT } from "jose";
import { sha256 } from "./bytes.ts";
import type { Config } from "./config.ts";
import { asUser, type Claims, type Sql } from "./db.ts";
import { ApiError } from "./errors.ts";
import type { AppEnv } from "./http.ts";
import { applyRateLimit } from "./http.ts";

/** The authenticated caller of a request. */
export interface Caller {
  userId: string;
  sessionId: string;
  clientId: string | null;
  isPlatformAdmin: boolean;
  claims: Claims;
}

/** Signs an access token for a session and its active client. */
export async function signAccessToken(
  config: Config,
  input: { userId: string; email: string; sessionId: string; clientId: string | null },
): Promise<{ token: string; expiresAt: number }> {
  const now = Math.floor(Date.now() / 1000);
  const expiresAt = now + config.auth.access_token_ttl;
  const token = await new SignJWT({
    role: "authenticated",
    email: input.email,
    session_id: input.sessionId,
    client_id: input.clientId,
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(input.userId)
    .setAudience(config.auth.audience)
    .setIssuedAt(now)
    .setExpirationTime(expiresAt)
    .sign(new TextEncoder().encode(config.secrets.jwt_secret));
  return { token, expiresAt };
}

/** Verifies an access token's signature, audience and expiry; throws a 401 ApiError otherwise. */
export async function verifyAccessToken(config: Config, token: string): Promise<Claims> {
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(config.secrets.jwt_secret), {
      audience: config.auth.audience,
      algorithms: ["HS256"],
    });
    if (
      payload.role !== "authenticated" || typeof payload.sub !== "string" ||
      typeof payload.session_id !== "string"
    ) {
      throw new ApiError(401, "invalid_token", "The access token is not a user token");
    }
    return payload as unknown as Claims;
  } catch (error) {
    if (error instanceof ApiError) throw error;
    if (error instanceof joseErrors.JWTExpired) {
      throw new ApiError(401, "token_expired", "The access token has expired", undefined, {
        "www-authenticate": 'Bearer error="invalid_token"',
      });
    }
    throw new ApiError(401, "invalid_token", "The access token is invalid", undefined, {
      "www-authenticate": 'Bearer error="invalid_token"',
    });
  }
}

/** Compares two secrets in constant time (their SHA-256 digests, so the length leaks nothing either). */
export async function sameSecret(given: string, expected: string): Promise<boolean> {
  const [a, b] = await Promise.all([sha256(given), sha256(expected)]);
  let difference = 0;
  for (let i = 0; i < a.length; i++) difference |= a[i] ^ b[i];
  return difference === 0;
}

/** A random URL-safe token with the given prefix and 256 bits of entropy. */
export function randomToken(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  const b64 = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replaceAll(
    "=",
    "",
  );
  return `${prefix}${b64}`;
}

/** SHA-256 of a token, the only form in which tokens are stored. */
export function hashToken(token: string): Promise<Uint8Array> {
  return sha256(token);
}

function bearerToken(header: string | undefined): string {
  const match = header?.match(/^Bearer\s+(\S+)$/i);
  if (!match) {
    throw new ApiError(401, "missing_token", "An Authorization: Bearer access token is required", undefined, {
      "www-authenticate": "Bearer",
    });
  }
  return match[1];
}

/**
 * Requires a valid access token, then reads the account, session and membership in one statement (and
 * counts the user's rate-limit hit), so a disabled user, a revoked session or a removed membership is
 * refused on the very next request.
 */
export function authenticate(deps: { config: Config; sql: Sql }): MiddlewareHandler<AppEnv> {
  const { config, sql } = deps;
  return async (c, next) => {
    const claims = await verifyAccessToken(config, bearerToken(c.req.header("authorization")));
    const [row] = await sql`
      select u.disabled_at is null as active,
             u.is_platform_admin,
             s.id is not null and s.revoked_at is null as session_active,
             m.id as membership_id,
             c.status as client_status,
             rl.allowed, rl.remaining, rl.reset_seconds
      from public.users u
      left join app.sessions s on s.id = ${claims.session_id}::uuid and s.user_id = u.id
      left join public.memberships m on m.user_id = u.id and m.client_id = ${claims.client_id}
      left join public.clients c on c.id = ${claims.client_id}
      cross join app.rate_limit_hit(${"user:" + claims.sub}, ${config.rate_limit.per_user},
                                    ${config.rate_limit.window_seconds}) rl
      where u.id = ${claims.sub}::uuid`;
    if (!row || !row.active) throw new ApiError(401, "user_disabled", "This account is disabled");
    if (!row.session_active) {
      throw new ApiError(401, "session_revoked", "This session has ended; log in again");
    }
    applyRateLimit(c, config.rate_limit.per_user, row as never);
    if (claims.client_id && !row.is_platform_admin) {
      if (!row.membership_id) {
        throw new ApiError(
          403,
          "membership_revoked",
          `You are no longer a member of client "${claims.client_id}"`,
        );
      }
      if (row.client_status !== "active") {
        throw new ApiError(403, "client_inactive", `Client "${claims.client_id}" is inactive`);
      }
    }
    c.set("caller", {
      userId: claims.sub,
      sessionId: claims.session_id,
      clientId: claims.client_id,
      isPlatformAdmin: row.is_platform_admin,
      claims,
    });
    await next();
  };
}

/** The form of a client id (lowercase slug), as the API validates it. */
export const CLIENT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]$/;

/**
 * Requires a permission in the client the request addresses: the `clientId` path parameter, else the
 * caller's active client. A client the caller cannot see is a 404, so its existence is not revealed; so is
 * an id that cannot name a client at all (this runs before the route's own validation).
 */
export function requirePermission(code: string): MiddlewareHandler<AppEnv> {
  return async (c, next) => {
    const caller = c.get("caller");
    const clientId = c.req.param("clientId") ?? caller.clientId;
    if (!clientId) {
      throw new ApiError(400, "no_active_client", "Choose an active client first (POST /auth/switch-client)");
    }
    if (!CLIENT_ID_PATTERN.test(clientId)) {
      throw new ApiError(404, "client_not_found", `Client "${clientId}" was not found`);
    }
    const [row] = await asUser(
      c.get("deps").sql,
      caller.claims,
      (tx) =>
        tx`select app.has_permission(${clientId}, ${code}) as allowed,
                ${clientId} = any (app.my_client_ids()) or app.is_platform_admin() as visible`,
    );
    if (!row.visible) throw new ApiError(404, "client_not_found", `Client "${clientId}" was not found`);
    if (!row.allowed) throw new ApiError(403, "permission_denied", `This needs the permission "${code}"`);
    await next();
  };
}
