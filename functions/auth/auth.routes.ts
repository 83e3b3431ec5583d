import { createRoute, z } from "@hono/zod-openapi";
import { problemSchema } from "../_shared/errors.ts";

const problem = (description: string) => ({
  description,
  content: { "application/problem+json": { schema: problemSchema } },
});
const json = <T extends z.ZodType>(schema: T, description: string) => ({
  description,
  content: { "application/json": { schema } },
});
const body = <T extends z.ZodType>(schema: T) => ({
  required: true,
  content: { "application/json": { schema } },
});

const clientId = z.string().min(1).max(64);
const password = z.string().min(10, "Use at least 10 characters").max(200);

export const tokenSchema = z.object({
  access_token: z.string(),
  token_type: z.literal("bearer"),
  expires_in: z.number().int(),
  expires_at: z.number().int(),
  refresh_token: z.string(),
  client_id: z.string().nullable().openapi({ description: "Active client the access token is scoped to" }),
}).openapi("Tokens");

export const accessTokenSchema = tokenSchema.omit({ refresh_token: true }).openapi("AccessToken");

const membershipSchema = z.object({
  membership_id: z.uuid(),
  client_id: z.string(),
  client_name: z.string(),
  client_status: z.enum(["active", "inactive"]),
  role: z.object({ key: z.string(), name: z.string() }),
  reports_to: z.uuid().nullable(),
});

export const meSchema = z.object({
  user: z.object({
    id: z.uuid(),
    email: z.string(),
    full_name: z.string(),
    is_platform_admin: z.boolean(),
  }),
  session_id: z.uuid(),
  client_id: z.string().nullable(),
  memberships: z.array(membershipSchema),
}).openapi("Me");

const errors = {
  401: problem("Bad credentials or token"),
  415: problem("The body is not application/json"),
  422: problem("Invalid fields"),
  429: problem("Too many attempts; see Retry-After"),
};
const bearer = [{ bearerAuth: [] }];

export const login = createRoute({
  method: "post",
  path: "/login",
  tags: ["Auth"],
  summary: "Log in with email and password",
  request: {
    body: body(z.strictObject({
      email: z.email().max(320),
      password: z.string().min(1).max(200),
      client_id: clientId.optional().openapi({ description: "Client to start in; defaults to the first" }),
    })),
  },
  responses: {
    200: json(tokenSchema, "Tokens"),
    403: problem("Account disabled or not a member"),
    ...errors,
  },
});

export const refresh = createRoute({
  method: "post",
  path: "/refresh",
  tags: ["Auth"],
  summary: "Exchange a refresh token for new tokens (the old one stops working)",
  request: { body: body(z.strictObject({ refresh_token: z.string().min(1).max(200) })) },
  responses: { 200: json(tokenSchema, "New tokens"), ...errors },
});

export const logout = createRoute({
  method: "post",
  path: "/logout",
  tags: ["Auth"],
  summary: "End the session of the access token",
  security: bearer,
  responses: { 204: { description: "Logged out" }, ...errors },
});

export const me = createRoute({
  method: "get",
  path: "/me",
  tags: ["Auth"],
  summary: "The caller's profile and memberships",
  security: bearer,
  responses: { 200: json(meSchema, "Profile"), ...errors },
});

export const switchClient = createRoute({
  method: "post",
  path: "/switch-client",
  tags: ["Auth"],
  summary: "Get an access token for another client the caller belongs to",
  security: bearer,
  request: { body: body(z.strictObject({ client_id: clientId })) },
  responses: {
    200: json(accessTokenSchema, "An access token for the client; the refresh token stays valid"),
    404: problem("Not a member of that client"),
    ...errors,
  },
});

export const changePassword = createRoute({
  method: "post",
  path: "/password",
  tags: ["Auth"],
  summary: "Change the caller's password; every other session ends",
  security: bearer,
  request: {
    body: body(z.strictObject({ current_password: z.string().min(1).max(200), new_password: password })),
  },
  responses: { 204: { description: "Changed" }, ...errors },
});

export const acceptInvitation = createRoute({
  method: "post",
  path: "/invitations/accept",
  tags: ["Auth"],
  summary: "Set a first password with an invitation token, and log in",
  request: { body: body(z.strictObject({ token: z.string().min(1).max(200), password })) },
  responses: { 200: json(tokenSchema, "Tokens"), ...errors },
});
