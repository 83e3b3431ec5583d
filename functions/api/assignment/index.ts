/** Assignment service: round-robin assignment rules, member availability and the lead pipeline. */
import { createModule } from "../routing.ts";
import * as handlers from "./assignment.handlers.ts";
import * as routes from "./assignment.routes.ts";

export const assignmentRoutes = routes.routes;

export function assignmentModule() {
  return createModule()
    .openapi(routes.listRules, handlers.listRules)
    .openapi(routes.createRule, handlers.createRule)
    .openapi(routes.updateRule, handlers.updateRule)
    .openapi(routes.deleteRule, handlers.deleteRule)
    .openapi(routes.setAvailability, handlers.setAvailability)
    .openapi(routes.replaceStatuses, handlers.replaceStatuses);
}
