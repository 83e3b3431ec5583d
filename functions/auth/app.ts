/**
 * The auth function: login, rotating refresh tokens, logout, profile, client switching, password change
 * and invitations. Access tokens carry Supabase-compatible claims; everything else is re-checked in the
 * database on each request.
 */
import type { Context } from "hono";
import { authenticate, hashToken, randomToken, signAccessToken } from "../_shared/auth.ts";
import { ApiError } from "../_shared/errors.ts";
import {
  type AppEnv,
  applyRateLimit,
  clientIp,
  createRouter,
  type Deps,
  ipRateLimit,
  log,
} from "../_shared/http.ts";
import * as queries from "./auth.queries.ts";
import * as routes from "./auth.routes.ts";

const invalidCredentials = () => new ApiError(401, "invalid_credentials", "Email or password is incorrect");

/** Builds the auth function's app with its dependencies, for production and tests alike. */
export function createAuthApp(deps: Deps) {
  const { config, sql } = deps;
  const app = createRouter("/auth", config);
  app.use("*", async (c, next) => {
    c.set("deps", deps);
    await next();
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", { type: "http", scheme: "bearer" });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: { title: "Lead Automation Platform Auth", version: "1.0.0" },
    servers: [{ url: "/functions/v1" }],
  });
  app.use("*", ipRateLimit(deps));

  /** Issues an access token for the session's client (and, on login or refresh, the new refresh token). */
  async function tokens(input: { userId: string; sessionId: string; clientId: string | null }) {
    const user = await queries.findUser(sql, input.userId);
    const { token, expiresAt } = await signAccessToken(config, { ...input, email: user.email });
    return {
      access_token: token,
      token_type: "bearer" as const,
      expires_in: config.auth.access_token_ttl,
      expires_at: expiresAt,
      client_id: input.clientId,
    };
  }

  /** The client a new session starts in: the requested one if allowed, else the first active membership. */
  async function startingClient(userId: string, requested: string | undefined): Promise<string | null> {
    if (requested !== undefined) {
      if (!await queries.canUseClient(sql, userId, requested)) {
        throw new ApiError(403, "not_a_member", `You are not a member of client "${requested}"`);
      }
      return requested;
    }
    const memberships = await queries.listMemberships(sql, userId);
    return memberships.find((m) => m.client_status === "active")?.client_id ?? null;
  }

  async function startSession(c: Context<AppEnv>, userId: string, clientId: string | null) {
    const refreshToken = randomToken("lap_rt_");
    const sessionId = await queries.createSession(sql, {
      userId,
      clientId,
      userAgent: c.req.header("user-agent"),
      ip: clientIp(c),
      refreshHash: await hashToken(refreshToken),
      ttl: config.auth.refresh_token_ttl,
    });
    return { ...await tokens({ userId, sessionId, clientId }), refresh_token: refreshToken };
  }

  app.openapi(routes.login, async (c) => {
    const body = c.req.valid("json");
    const email = body.email.toLowerCase();
    const { auth } = config;
    const perEmail = await queries.rateLimitHit(
      sql,
      `login-email:${email}`,
      auth.login_attempts_per_email,
      auth.login_window_seconds,
    );
    applyRateLimit(c, auth.login_attempts_per_email, perEmail);
    const perIp = await queries.rateLimitHit(
      sql,
      `login-ip:${clientIp(c)}`,
      auth.login_attempts_per_ip,
      auth.login_window_seconds,
    );
    applyRateLimit(c, auth.login_attempts_per_ip, perIp);

    const user = await queries.verifyPassword(sql, email, body.password);
    if (!user) {
      log("warn", "login failed", { request_id: c.get("requestId"), email, reason: "bad_credentials" });
      throw invalidCredentials();
    }
    if (user.disabled) {
      log("warn", "login failed", {
        request_id: c.get("requestId"),
        user_id: user.user_id,
        reason: "disabled",
      });
      throw new ApiError(403, "user_disabled", "This account is disabled");
    }
    const clientId = await startingClient(user.user_id, body.client_id);
    return c.json(await startSession(c, user.user_id, clientId), 200);
  });

  app.openapi(routes.refresh, async (c) => {
    const { refresh_token } = c.req.valid("json");
    const newToken = randomToken("lap_rt_");
    const result = await queries.rotateRefreshToken(
      sql,
      await hashToken(refresh_token),
      await hashToken(newToken),
      config.auth.refresh_token_ttl,
    );
    if (result.outcome === "reused") {
      log("warn", "refresh token reused; session revoked", {
        request_id: c.get("requestId"),
        session_id: result.session_id,
        user_id: result.user_id,
      });
      throw new ApiError(
        401,
        "refresh_token_reused",
        "This refresh token was already used; the session has ended",
      );
    }
    if (result.outcome !== "ok") {
      const messages = {
        unknown: "The refresh token is not valid",
        expired: "The refresh token has expired",
        revoked: "This session has ended; log in again",
      };
      throw new ApiError(401, `refresh_token_${result.outcome}`, messages[result.outcome]);
    }
    const user = await queries.findUser(sql, result.user_id);
    if (user.disabled) {
      await queries.revokeSession(sql, result.session_id, "user_disabled");
      throw new ApiError(401, "user_disabled", "This account is disabled");
    }
    // The session's client may have been taken away since the last refresh.
    let clientId = result.client_id;
    if (clientId && !await queries.canUseClient(sql, result.user_id, clientId)) {
      clientId = await startingClient(result.user_id, undefined);
      await queries.setSessionClient(sql, result.session_id, clientId);
    }
    const issued = await tokens({ userId: result.user_id, sessionId: result.session_id, clientId });
    return c.json({ ...issued, refresh_token: newToken }, 200);
  });

  app.use("/logout", authenticate(deps));
  app.use("/me", authenticate(deps));
  app.use("/switch-client", authenticate(deps));
  app.use("/password", authenticate(deps));

  app.openapi(routes.logout, async (c) => {
    await queries.revokeSession(sql, c.get("caller").sessionId, "logout");
    return c.body(null, 204);
  });

  app.openapi(routes.me, async (c) => {
    const caller = c.get("caller");
    const user = await queries.findUser(sql, caller.userId);
    return c.json({
      user: {
        id: user.id,
        email: user.email,
        full_name: user.full_name,
        is_platform_admin: user.is_platform_admin,
      },
      session_id: caller.sessionId,
      client_id: caller.clientId,
      memberships: await queries.listMemberships(sql, caller.userId),
    }, 200);
  });

  app.openapi(routes.switchClient, async (c) => {
    const caller = c.get("caller");
    const { client_id } = c.req.valid("json");
    if (!await queries.canUseClient(sql, caller.userId, client_id)) {
      throw new ApiError(404, "client_not_found", `Client "${client_id}" was not found among your clients`);
    }
    await queries.setSessionClient(sql, caller.sessionId, client_id);
    return c.json(
      await tokens({ userId: caller.userId, sessionId: caller.sessionId, clientId: client_id }),
      200,
    );
  });

  app.openapi(routes.changePassword, async (c) => {
    const caller = c.get("caller");
    const body = c.req.valid("json");
    const user = await queries.findUser(sql, caller.userId);
    const verified = await queries.verifyPassword(sql, user.email, body.current_password);
    if (!verified) throw new ApiError(401, "invalid_credentials", "The current password is incorrect");
    await queries.setPassword(sql, caller.userId, body.new_password, config.auth.bcrypt_cost);
    await queries.revokeOtherSessions(sql, caller.userId, caller.sessionId, "password_changed");
    return c.body(null, 204);
  });

  app.openapi(routes.acceptInvitation, async (c) => {
    const body = c.req.valid("json");
    const userId = await queries.acceptInvitation(sql, await hashToken(body.token));
    if (!userId) throw new ApiError(401, "invitation_invalid", "The invitation is unknown, used or expired");
    await queries.setPassword(sql, userId, body.password, config.auth.bcrypt_cost);
    return c.json(await startSession(c, userId, await startingClient(userId, undefined)), 200);
  });

  return app;
}
