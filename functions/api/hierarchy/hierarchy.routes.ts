import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { memberSchema } from "../members/members.routes.ts";
import { apiRoute, jsonResponse } from "../routing.ts";

const params = z.object({ clientId: clientIdSchema, membershipId: z.uuid() });
const rankedMember = memberSchema.extend({
  depth: z.number().int().openapi({ description: "Levels between this member and the one asked about" }),
}).openapi("HierarchyMember");

export const listManagers = apiRoute({
  method: "get",
  path: "/clients/{clientId}/members/{membershipId}/managers",
  tags: ["Hierarchy"],
  summary: "Read a member's chain of managers, nearest first",
  permission: "hierarchy.read",
  request: { params },
  responses: { 200: jsonResponse(z.object({ data: z.array(rankedMember) }), "Managers the caller can see") },
});

export const listSubtree = apiRoute({
  method: "get",
  path: "/clients/{clientId}/members/{membershipId}/subtree",
  tags: ["Hierarchy"],
  summary: "Read everyone below a member in the reporting hierarchy",
  permission: "hierarchy.read",
  request: { params },
  responses: { 200: jsonResponse(z.object({ data: z.array(rankedMember) }), "Members below, by depth") },
});

export const routes = [listManagers, listSubtree];
