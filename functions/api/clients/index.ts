/** Client service: clients (tenants) with client-provided, immutable ids. */
import { createModule } from "../routing.ts";
import * as handlers from "./clients.handlers.ts";
import * as routes from "./clients.routes.ts";

export const clientRoutes = routes.routes;

export function clientsModule() {
  return createModule()
    .openapi(routes.createClient, handlers.createClient)
    .openapi(routes.listClients, handlers.listClients)
    .openapi(routes.getClient, handlers.getClient)
    .openapi(routes.updateClient, handlers.updateClient)
    .openapi(routes.deactivateClient, handlers.deactivateClient)
    .openapi(routes.activateClient, handlers.activateClient);
}
