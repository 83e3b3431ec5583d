import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

const roleKeySchema = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, "Use a role key such as agent or manager");

export const userSchema = z.object({
  id: z.uuid(),
  email: z.email(),
  full_name: z.string(),
  is_platform_admin: z.boolean(),
  disabled: z.boolean(),
  created_at: timestamp,
}).openapi("User");

export const memberSchema = z.object({
  id: z.uuid().openapi({ description: "Membership id" }),
  client_id: clientIdSchema,
  user: userSchema,
  role: z.object({ id: z.uuid(), key: z.string(), name: z.string() }),
  reports_to: z.uuid().nullable().openapi({ description: "Membership id of the manager" }),
  created_at: timestamp,
}).openapi("Member");

const clientParams = z.object({ clientId: clientIdSchema });
const memberParams = z.object({ clientId: clientIdSchema, membershipId: z.uuid() });
const userParams = z.object({ userId: z.uuid() });

export const listMembers = apiRoute({
  method: "get",
  path: "/clients/{clientId}/members",
  tags: ["Users"],
  summary: "List the members of a client",
  permission: "members.read",
  request: { params: clientParams, query: pageQuery },
  responses: { 200: jsonResponse(pageOf(memberSchema), "A page of members, oldest first") },
});

export const addMember = apiRoute({
  method: "post",
  path: "/clients/{clientId}/members",
  tags: ["Users"],
  summary: "Add a person to a client, inviting them when their email is new",
  permission: "members.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        email: z.email().max(320),
        full_name: z.string().trim().min(1).max(200),
        role: roleKeySchema,
        reports_to: z.uuid().nullable().optional(),
      }),
      "The person, their role in this client and their manager's membership id",
    ),
  },
  responses: {
    201: jsonResponse(
      z.object({
        member: memberSchema,
        invitation: z.object({ token: z.string(), expires_at: timestamp }).nullable().openapi({
          description:
            "Shown once, only when a new account was created: redeem with POST /auth/invitations/accept",
        }),
      }),
      "The membership",
    ),
    409: problem("The person is already a member of this client"),
  },
});

export const updateMember = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/members/{membershipId}",
  tags: ["Users"],
  summary: "Change a member's role or manager",
  permission: "members.manage",
  request: {
    params: memberParams,
    body: jsonBody(
      z.strictObject({ role: roleKeySchema.optional(), reports_to: z.uuid().nullable().optional() })
        .refine((body) => Object.keys(body).length > 0, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(memberSchema, "The updated membership") },
});

export const removeMember = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/members/{membershipId}",
  tags: ["Users"],
  summary: "Remove a member from a client; their reports move up to their manager",
  permission: "members.manage",
  request: { params: memberParams },
  responses: { 204: { description: "Removed" } },
});

export const getUser = apiRoute({
  method: "get",
  path: "/users/{userId}",
  tags: ["Users"],
  summary: "Read a user account visible to the caller",
  request: { params: userParams },
  responses: { 200: jsonResponse(userSchema, "The user") },
});

const disableRoute = (action: "disable" | "enable") =>
  apiRoute({
    method: "post",
    path: `/users/{userId}/${action}`,
    tags: ["Users"],
    summary: action === "disable"
      ? "Disable an account everywhere and end its sessions (platform administrators, or managers of all its clients)"
      : "Re-enable a disabled account",
    request: { params: userParams },
    responses: { 200: jsonResponse(userSchema, "The user") },
  });

export const disableUser = disableRoute("disable");
export const enableUser = disableRoute("enable");

export const routes = [listMembers, addMember, updateMember, removeMember, getUser, disableUser, enableUser];
