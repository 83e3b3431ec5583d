/**
 * Webhooks service: a client's own outbound webhook endpoints (signed with Standard Webhooks), their
 * signing secrets (shown once, stored sealed), delivery log and replays, all under webhooks.manage.
 */
import { createModule } from "../routing.ts";
import * as handlers from "./webhooks.handlers.ts";
import * as routes from "./webhooks.routes.ts";

export const webhooksRoutes = routes.routes;

export function webhooksModule() {
  return createModule()
    .openapi(routes.createWebhook, handlers.createWebhook)
    .openapi(routes.listWebhooks, handlers.listWebhooks)
    .openapi(routes.getWebhook, handlers.getWebhook)
    .openapi(routes.updateWebhook, handlers.updateWebhook)
    .openapi(routes.deleteWebhook, handlers.deleteWebhook)
    .openapi(routes.rotateWebhookSecret, handlers.rotateWebhookSecret)
    .openapi(routes.listDeliveries, handlers.listDeliveries)
    .openapi(routes.replayDelivery, handlers.replayDelivery);
}
