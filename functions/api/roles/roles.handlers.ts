import type { RouteHandler } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import type { AppEnv } from "../../_shared/http.ts";
import * as queries from "./roles.queries.ts";
import type * as routes from "./roles.routes.ts";

export const listPermissions: RouteHandler<typeof routes.listPermissions, AppEnv> = async (c) => {
  const data = await asUser(c.get("deps").sql, c.get("caller").claims, (tx) => queries.listPermissions(tx));
  return c.json({ data }, 200);
};

export const listRoles: RouteHandler<typeof routes.listRoles, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const data = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listRoles(tx, clientId),
  );
  return c.json({ data }, 200);
};
