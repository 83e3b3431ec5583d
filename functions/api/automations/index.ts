/**
 * Automations service: which actions (notify, WhatsApp greeting, Sheets append, webhooks) run for which
 * events, per client: the catalog's defaults with the client's own switches.
 */
import { createModule } from "../routing.ts";
import * as handlers from "./automations.handlers.ts";
import * as routes from "./automations.routes.ts";

export const automationsRoutes = routes.routes;

export function automationsModule() {
  return createModule()
    .openapi(routes.listAutomations, handlers.listAutomations)
    .openapi(routes.setAutomation, handlers.setAutomation);
}
