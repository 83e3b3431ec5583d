/**
 * Notifications service: the caller's own in-app notifications (new leads, assignments, WhatsApp replies,
 * disabled webhooks). Any signed-in user; row-level security shows each notification to its recipient only.
 */
import { createModule } from "../routing.ts";
import * as handlers from "./notifications.handlers.ts";
import * as routes from "./notifications.routes.ts";

export const notificationsRoutes = routes.routes;

export function notificationsModule() {
  return createModule()
    .openapi(routes.listNotifications, handlers.listNotifications)
    .openapi(routes.markAllRead, handlers.markAllRead)
    .openapi(routes.markRead, handlers.markRead);
}
