/**
 * Integration service: a client's WhatsApp and Google Sheets settings with their sealed credentials,
 * connection tests, and the Meta pages and Lead Ads forms that feed it. Reads need integrations.read,
 * everything else integrations.manage.
 */
import { createModule } from "../routing.ts";
import * as handlers from "./integrations.handlers.ts";
import * as routes from "./integrations.routes.ts";

export const integrationsRoutes = routes.routes;

export function integrationsModule() {
  return createModule()
    .openapi(routes.listIntegrations, handlers.listIntegrations)
    .openapi(routes.putWhatsApp, handlers.putWhatsApp)
    .openapi(routes.putGoogleSheets, handlers.putGoogleSheets)
    .openapi(routes.deleteIntegration, handlers.deleteIntegration)
    .openapi(routes.testIntegration, handlers.testIntegration)
    .openapi(routes.connectPage, handlers.connectPage)
    .openapi(routes.updatePage, handlers.updatePage)
    .openapi(routes.deletePage, handlers.deletePage)
    .openapi(routes.putForm, handlers.putForm)
    .openapi(routes.deleteForm, handlers.deleteForm);
}
