import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonResponse, timestamp } from "../routing.ts";

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

export const routes = [listPermissions, listRoles];
