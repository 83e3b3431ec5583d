/** Hierarchy service: the reporting chain above and the team below a member. */
import { createModule } from "../routing.ts";
import * as handlers from "./hierarchy.handlers.ts";
import * as routes from "./hierarchy.routes.ts";

export const hierarchyRoutes = routes.routes;

export function hierarchyModule() {
  return createModule()
    .openapi(routes.listManagers, handlers.listManagers)
    .openapi(routes.listSubtree, handlers.listSubtree);
}
