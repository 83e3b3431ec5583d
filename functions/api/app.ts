/**
 * The API gateway: authenticates every request, applies rate limits, and mounts the service routers
 * (clients, users, permissions). Health, the OpenAPI document and the docs are public.
 */
import { createRoute, z } from "@hono/zod-openapi";
import { authenticate } from "../_shared/auth.ts";
import { DOCS_HTML } from "../_shared/docs.ts";
import { ApiError } from "../_shared/errors.ts";
import { createRouter, type Deps, ipRateLimit } from "../_shared/http.ts";
import { assignmentModule } from "./assignment/index.ts";
import { automationsModule } from "./automations/index.ts";
import { clientsModule } from "./clients/index.ts";
import { hierarchyModule } from "./hierarchy/index.ts";
import { importsModule } from "./imports/index.ts";
import { integrationsModule } from "./integrations/index.ts";
import { jobsModule } from "./jobs/index.ts";
import { keysModule } from "./keys/index.ts";
import { leadsModule } from "./leads/index.ts";
import { membersModule } from "./members/index.ts";
import { notificationsModule } from "./notifications/index.ts";
import { productsModule } from "./products/index.ts";
import { jsonResponse, problem } from "./routing.ts";
import { rolesModule } from "./roles/index.ts";
import { webhooksModule } from "./webhooks/index.ts";

const health = createRoute({
  method: "get",
  path: "/health",
  tags: ["Gateway"],
  summary: "Liveness and database reachability",
  responses: {
    200: jsonResponse(z.object({ status: z.literal("ok"), database: z.literal("ok") }), "Healthy"),
    503: problem("The database is unreachable"),
  },
});

/** Builds the api function's app with its dependencies, for production and tests alike. */
export function createApiApp(deps: Deps) {
  const app = createRouter("/api", deps.config);
  app.use("*", async (c, next) => {
    c.set("deps", deps);
    await next();
  });

  app.openapi(health, async (c) => {
    try {
      await deps.sql`select 1`;
    } catch {
      throw new ApiError(503, "database_unavailable", "The database is unreachable");
    }
    return c.json({ status: "ok" as const, database: "ok" as const }, 200);
  });
  app.openAPIRegistry.registerComponent("securitySchemes", "bearerAuth", {
    type: "http",
    scheme: "bearer",
    bearerFormat: "JWT",
    description: "Access token from POST /auth/login",
  });
  app.doc31("/openapi.json", {
    openapi: "3.1.0",
    info: {
      title: "Lead Automation Platform API",
      version: "1.0.0",
      description: "Errors are RFC 9457 problem+json with a stable `code`. Lists use keyset pagination.",
    },
    servers: [{ url: "/functions/v1" }],
  });
  app.get("/docs", (c) => c.html(DOCS_HTML));

  app.use("*", ipRateLimit(deps));
  app.use("*", authenticate(deps));
  app.route("/", clientsModule());
  app.route("/", membersModule());
  app.route("/", hierarchyModule());
  app.route("/", rolesModule());
  app.route("/", productsModule());
  app.route("/", leadsModule());
  app.route("/", assignmentModule());
  app.route("/", keysModule());
  app.route("/", integrationsModule());
  app.route("/", importsModule());
  app.route("/", jobsModule());
  app.route("/", automationsModule());
  app.route("/", notificationsModule());
  app.route("/", webhooksModule());
  return app;
}
