import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, problem, timestamp } from "../routing.ts";

export const permissionSchema = z.object({ code: z.string(), description: z.string() }).openapi("Permission");

export const roleSchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  key: z.string(),
  name: z.string(),
  rank: z.number().int().openapi({ description: "Lower is more powerful" }),
  scope: z.enum(["own", "team", "client"]),
  permissions: z.array(z.string()),
  is_system: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Role");

export const listPermissions = apiRoute({
  method: "get",
  path: "/permissions",
  tags: ["Permissions"],
  summary: "List the permission catalog",
  responses: { 200: jsonResponse(z.object({ data: z.array(permissionSchema) }), "Every permission code") },
});

export const listRoles = apiRoute({
  method: "get",
  path: "/clients/{clientId}/roles",
  tags: ["Permissions"],
  summary: "List a client's roles",
  permission: "roles.read",
  request: { params: z.object({ clientId: clientIdSchema }) },
  responses: { 200: jsonResponse(z.object({ data: z.array(roleSchema) }), "Roles, most powerful first") },
});

const roleParams = z.object({ clientId: clientIdSchema, roleId: z.uuid() });
const roleFields = {
  name: z.string().trim().min(1).max(100),
  rank: z.number().int().min(1).max(1000).openapi({ description: "Lower is more powerful; owner is 10" }),
  scope: z.enum(["own", "team", "client"]).openapi({
    description: "Records visible: own, own team (everyone below in the hierarchy) or the whole client",
  }),
  permissions: z.array(z.string().regex(/^[a-z_]+\.[a-z_]+$/)).max(200),
};

export const createRole = apiRoute({
  method: "post",
  path: "/clients/{clientId}/roles",
  tags: ["Permissions"],
  summary: "Create a role; you cannot grant permissions you lack or rank it above yours",
  permission: "roles.manage",
  request: {
    params: z.object({ clientId: clientIdSchema }),
    body: jsonBody(
      z.strictObject({ key: z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/), ...roleFields }),
      "The role",
    ),
  },
  responses: { 201: jsonResponse(roleSchema, "Created"), 409: problem("A role with this key exists") },
});

export const updateRole = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/roles/{roleId}",
  tags: ["Permissions"],
  summary: "Rename a role or change its rank, scope or permissions (takes effect on the next request)",
  permission: "roles.manage",
  request: {
    params: roleParams,
    body: jsonBody(
      z.strictObject({
        name: roleFields.name.optional(),
        rank: roleFields.rank.optional(),
        scope: roleFields.scope.optional(),
        permissions: roleFields.permissions.optional(),
      }).refine((body) => Object.keys(body).length > 0, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(roleSchema, "The updated role") },
});

export const deleteRole = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/roles/{roleId}",
  tags: ["Permissions"],
  summary: "Delete a role no member holds",
  permission: "roles.manage",
  request: { params: roleParams },
  responses: { 204: { description: "Deleted" }, 409: problem("Members still hold this role") },
});

export const routes = [listPermissions, listRoles, createRole, updateRole, deleteRole];
