import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonResponse, pageOf, pageQuery, timestamp } from "../routing.ts";

export const notificationSchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  kind: z.string().openapi({ description: "The event it announces", example: "lead.created" }),
  title: z.string(),
  body: z.string(),
  lead_id: z.uuid().nullable(),
  data: z.record(z.string(), z.unknown()),
  created_at: timestamp,
  read_at: timestamp.nullable(),
}).openapi("Notification");

const clientFilter = {
  client_id: clientIdSchema.optional().openapi({ description: "Only notifications of this client" }),
};

export const listNotifications = apiRoute({
  method: "get",
  path: "/notifications",
  tags: ["Notifications"],
  summary: "List the caller's own notifications, newest first",
  description: "A notification about a lead lasts while the caller's role lets them see that lead (it goes " +
    "when the lead is reassigned away from them, their place in the hierarchy or their role changes, or " +
    "they leave the client); a read one goes retention.read_notifications_days (90 by default) after it " +
    "was read. Unread ones otherwise stay.",
  request: {
    query: pageQuery.extend({
      ...clientFilter,
      unread: z.enum(["true", "false"]).optional().openapi({ description: "true: only unread ones" }),
    }),
  },
  responses: {
    200: jsonResponse(
      pageOf(notificationSchema).extend({
        unread_count: z.number().int().openapi({
          description: "Unread notifications of the caller (of client_id when given), across all pages",
        }),
      }),
      "A page of notifications",
    ),
  },
});

export const markRead = apiRoute({
  method: "post",
  path: "/notifications/{notificationId}/read",
  tags: ["Notifications"],
  summary: "Mark one of the caller's notifications read (marking twice keeps the first time)",
  request: { params: z.object({ notificationId: z.uuid() }) },
  responses: { 200: jsonResponse(notificationSchema, "The notification") },
});

export const markAllRead = apiRoute({
  method: "post",
  path: "/notifications/read-all",
  tags: ["Notifications"],
  summary: "Mark all of the caller's unread notifications read (of one client with client_id)",
  request: { query: z.object(clientFilter) },
  responses: {
    200: jsonResponse(
      z.object({ count: z.number().int().openapi({ description: "How many were unread" }) }),
      "How many notifications were marked",
    ),
  },
});

export const routes = [listNotifications, markRead, markAllRead];
