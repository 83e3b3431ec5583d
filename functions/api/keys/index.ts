/** API key service: ingestion keys per client (create, list, revoke, rotate), all under api_keys.manage. */
import { createModule } from "../routing.ts";
import * as handlers from "./keys.handlers.ts";
import * as routes from "./keys.routes.ts";

export const keysRoutes = routes.routes;

export function keysModule() {
  return createModule()
    .openapi(routes.createApiKey, handlers.createApiKey)
    .openapi(routes.listApiKeys, handlers.listApiKeys)
    .openapi(routes.revokeApiKey, handlers.revokeApiKey)
    .openapi(routes.rotateApiKey, handlers.rotateApiKey);
}
