import type { RouteHandler } from "@hono/zod-openapi";
import { asUser, HIERARCHY_STATEMENT_TIMEOUT } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
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

const roleNotFound = (id: string) => new ApiError(404, "role_not_found", `Role "${id}" was not found`);

export const createRole: RouteHandler<typeof routes.createRole, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const role = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    const [taken] = await tx`select 1 from public.roles where client_id = ${clientId} and key = ${body.key}`;
    if (taken) throw new ApiError(409, "role_key_taken", `Role "${body.key}" already exists in this client`);
    return await queries.insertRole(tx, clientId, body);
  });
  return c.json(role, 201);
};

export const updateRole: RouteHandler<typeof routes.updateRole, AppEnv> = async (c) => {
  const { clientId, roleId } = c.req.valid("param");
  const role = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.updateRole(tx, clientId, roleId, c.req.valid("json")),
    HIERARCHY_STATEMENT_TIMEOUT,
  );
  if (!role) throw roleNotFound(roleId);
  return c.json(role, 200);
};

export const deleteRole: RouteHandler<typeof routes.deleteRole, AppEnv> = async (c) => {
  const { clientId, roleId } = c.req.valid("param");
  let deleted: boolean;
  try {
    deleted = await asUser(
      c.get("deps").sql,
      c.get("caller").claims,
      (tx) => queries.deleteRole(tx, clientId, roleId),
    );
  } catch (error) {
    // The guard trigger refuses protected roles first; the foreign key then refuses roles members hold,
    // counted across the whole client whatever the caller can see.
    if ((error as { constraint_name?: string }).constraint_name === "memberships_role_id_fkey") {
      throw new ApiError(409, "role_in_use", "Members still hold this role; give them another role first");
    }
    throw error;
  }
  if (!deleted) throw roleNotFound(roleId);
  return c.body(null, 204);
};
