/**
 * Route definitions for the API: every route is a zod schema pair that also documents itself in OpenAPI.
 * A route that needs a permission declares it here once; that declaration both enforces it and feeds the
 * permission catalog, so the two cannot drift.
 */
import { createRoute, OpenAPIHono, type RouteConfig, z } from "@hono/zod-openapi";
import { type AppEnv, validationHook } from "../_shared/http.ts";
import { requirePermission } from "../_shared/auth.ts";
import { problemSchema } from "../_shared/errors.ts";

/** A problem+json response. */
export const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});

/** Error responses every authenticated route can give. */
const commonErrors = {
  401: problem("Missing, invalid or expired access token, disabled account or ended session"),
  403: problem("The caller lacks the permission or is no longer a member"),
  404: problem("Not found, or not visible to the caller"),
  415: problem("The body is not application/json"),
  422: problem("Invalid fields; `errors` lists each one"),
  429: problem("Rate limited; see Retry-After"),
};

/** Defines an authenticated API route, optionally requiring a permission in the addressed client. */
export function apiRoute<const R extends RouteConfig>(route: R & { permission?: string }) {
  const { permission, ...config } = route;
  return createRoute({
    ...config,
    security: [{ bearerAuth: [] }],
    responses: { ...commonErrors, ...config.responses },
    ...(permission
      ? { "x-permission": permission, middleware: [requirePermission(permission)] as const }
      : {}),
  });
}

/** A JSON request body that rejects unknown fields. */
export function jsonBody<T extends z.ZodType>(schema: T, description: string) {
  return { required: true, description, content: { "application/json": { schema } } };
}

/** A JSON response. */
export function jsonResponse<T extends z.ZodType>(schema: T, description: string) {
  return { description, content: { "application/json": { schema } } };
}

/** Query parameters of every list endpoint. */
export const pageQuery = z.object({
  limit: z.coerce.number().int().min(1).max(200).default(50).openapi({ description: "Page size (1-200)" }),
  cursor: z.string().max(500).optional().openapi({ description: "next_cursor of the previous page" }),
});

/** A page of results and the cursor of the next one (null on the last page). */
export function pageOf<T extends z.ZodType>(item: T) {
  return z.object({ data: z.array(item), next_cursor: z.string().nullable() });
}

/** Collects {code: description} from routes that declare a permission. */
export function permissionCatalog(routes: Array<Record<string, unknown>>): Record<string, string> {
  const catalog: Record<string, string> = {};
  for (const route of routes) {
    const code = route["x-permission"];
    if (typeof code !== "string") continue;
    const summary = String(route.summary ?? "");
    catalog[code] = catalog[code] ? `${catalog[code]}; ${summary}` : summary;
  }
  return catalog;
}

export const timestamp = z.string().openapi({ format: "date-time" });

/** A service module's router; the gateway mounts it with app.route(). */
export function createModule(): OpenAPIHono<AppEnv> {
  return new OpenAPIHono<AppEnv>({ defaultHook: validationHook });
}
