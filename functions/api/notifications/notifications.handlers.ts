import { type RouteHandler, z } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor } from "../../_shared/http.ts";
import * as queries from "./notifications.queries.ts";
import type * as routes from "./notifications.routes.ts";

const cursorShape = z.tuple([z.iso.datetime(), z.uuid()]);

export const listNotifications: RouteHandler<typeof routes.listNotifications, AppEnv> = async (c) => {
  const { limit, cursor, client_id: clientId, unread } = c.req.valid("query");
  const before = cursor ? decodeCursor(cursor, cursorShape) : undefined;
  const { rows, more, unread: unreadCount } = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listNotifications(tx, { clientId, unread: unread === "true" }, { limit, before }),
  );
  const last = rows[rows.length - 1];
  return c.json({
    data: rows,
    next_cursor: more ? encodeCursor([last.created_at, last.id]) : null,
    unread_count: unreadCount,
  }, 200);
};

export const markRead: RouteHandler<typeof routes.markRead, AppEnv> = async (c) => {
  const { notificationId } = c.req.valid("param");
  const row = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.markRead(tx, notificationId),
  );
  if (!row) {
    throw new ApiError(404, "notification_not_found", `Notification "${notificationId}" was not found`);
  }
  return c.json(row, 200);
};

export const markAllRead: RouteHandler<typeof routes.markAllRead, AppEnv> = async (c) => {
  const { client_id: clientId } = c.req.valid("query");
  const count = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.markAllRead(tx, clientId),
  );
  return c.json({ count }, 200);
};
