/** Permission service: the permission catalog and per-client roles. */
import { createModule } from "../routing.ts";
import * as handlers from "./roles.handlers.ts";
import * as routes from "./roles.routes.ts";

export const roleRoutes = routes.routes;

export function rolesModule() {
  return createModule()
    .openapi(routes.listPermissions, handlers.listPermissions)
    .openapi(routes.listRoles, handlers.listRoles)
    .openapi(routes.createRole, handlers.createRole)
    .openapi(routes.updateRole, handlers.updateRole)
    .openapi(routes.deleteRole, handlers.deleteRole);
}
