import { z } from "@hono/zod-openapi";
import { CLIENT_ID_PATTERN } from "../../_shared/auth.ts";
import { apiRoute, jsonBody, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

export const clientIdSchema = z.string().regex(
  CLIENT_ID_PATTERN,
  "Use 3-64 lowercase letters, digits, '-' or '_', starting and ending with a letter or digit",
).openapi({ example: "acme-realty" });

/** Client-level settings: the keys below are checked (here and in sql/0038_notifications.sql). */
const settingsSchema = z.looseObject({
  notify_manager_levels: z.int().min(0).max(100).nullable().optional().openapi({
    description:
      "How many managers above a lead's owner are notified of its lead events: 0 the owner alone, " +
      "1 also their manager, and so on; absent or null: every manager up the reporting line",
    example: 1,
  }),
}).openapi("ClientSettings", { description: "Client-level settings; keys not listed are stored as sent" });

export const clientSchema = z.object({
  id: clientIdSchema,
  name: z.string(),
  status: z.enum(["active", "inactive"]),
  settings: settingsSchema,
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Client");

const clientParams = z.object({ clientId: clientIdSchema });

export const createClient = apiRoute({
  method: "post",
  path: "/clients",
  tags: ["Clients"],
  summary: "Create a client with a client-provided id (platform administrators)",
  request: {
    body: jsonBody(
      z.strictObject({
        id: clientIdSchema,
        name: z.string().trim().min(1).max(200),
        settings: settingsSchema.optional(),
      }),
      "The new client; the id is permanent",
    ),
  },
  responses: {
    201: jsonResponse(clientSchema, "Created; the caller is its owner"),
    409: problem("A client with this id already exists"),
  },
});

export const listClients = apiRoute({
  method: "get",
  path: "/clients",
  tags: ["Clients"],
  summary: "List the clients the caller belongs to (all, for platform administrators)",
  request: { query: pageQuery },
  responses: { 200: jsonResponse(pageOf(clientSchema), "A page of clients ordered by id") },
});

export const getClient = apiRoute({
  method: "get",
  path: "/clients/{clientId}",
  tags: ["Clients"],
  summary: "Read a client",
  request: { params: clientParams },
  responses: { 200: jsonResponse(clientSchema, "The client") },
});

export const updateClient = apiRoute({
  method: "patch",
  path: "/clients/{clientId}",
  tags: ["Clients"],
  summary: "Update a client's name or settings",
  permission: "clients.update",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        name: z.string().trim().min(1).max(200).optional(),
        settings: settingsSchema.optional(),
      })
        .refine((body) => Object.keys(body).length > 0, "Send at least one field"),
      "Fields to change; the id cannot change",
    ),
  },
  responses: { 200: jsonResponse(clientSchema, "The updated client") },
});

const statusRoute = (action: "deactivate" | "activate") =>
  apiRoute({
    method: "post",
    path: `/clients/{clientId}/${action}`,
    tags: ["Clients"],
    summary: `${action === "deactivate" ? "Deactivate" : "Reactivate"} a client (platform administrators)`,
    request: { params: clientParams },
    responses: { 200: jsonResponse(clientSchema, "The client with its new status") },
  });

export const deactivateClient = statusRoute("deactivate");
export const activateClient = statusRoute("activate");

export const routes = [createClient, listClients, getClient, updateClient, deactivateClient, activateClient];
