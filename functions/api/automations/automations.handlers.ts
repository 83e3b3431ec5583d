import type { RouteHandler } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import type { AppEnv } from "../../_shared/http.ts";
import * as queries from "./automations.queries.ts";
import type * as routes from "./automations.routes.ts";

export const listAutomations: RouteHandler<typeof routes.listAutomations, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { sql } = c.get("deps");
  const [entries, overrides] = await Promise.all([
    queries.catalog(sql),
    asUser(sql, c.get("caller").claims, (tx) => queries.overrides(tx, clientId)),
  ]);
  const byKey = new Map(overrides.map((o) => [`${o.event} ${o.action}`, o]));
  const data = entries.map((entry) => queries.applied(entry, byKey.get(`${entry.event} ${entry.action}`)));
  return c.json({ data }, 200);
};

export const setAutomation: RouteHandler<typeof routes.setAutomation, AppEnv> = async (c) => {
  const { clientId, event, action } = c.req.valid("param");
  const { enabled } = c.req.valid("json");
  const { sql } = c.get("deps");
  const entry = await queries.catalogEntry(sql, event, action);
  if (!entry) {
    throw new ApiError(404, "automation_not_found", `There is no automation "${action}" for "${event}"`);
  }
  const override = await asUser(
    sql,
    c.get("caller").claims,
    (tx) => queries.setOverride(tx, clientId, event, action, enabled),
  );
  return c.json(queries.applied(entry, override), 200);
};
