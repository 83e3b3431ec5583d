import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, timestamp } from "../routing.ts";

export const automationSchema = z.object({
  event: z.string().openapi({ example: "lead.created" }),
  action: z.string().openapi({ example: "whatsapp_greeting" }),
  description: z.string(),
  enabled: z.boolean().openapi({ description: "Whether it runs for this client" }),
  default_enabled: z.boolean().openapi({ description: "Whether it runs for clients that never changed it" }),
  updated_at: timestamp.nullable().openapi({
    description: "When the client last switched it; null: the default",
  }),
}).openapi("Automation");

const clientParams = z.object({ clientId: clientIdSchema });
const automationParams = z.object({
  clientId: clientIdSchema,
  event: z.string().regex(/^[a-z][a-z_]*(\.[a-z][a-z_]*)+$/, "Use an event name such as lead.created")
    .openapi({ example: "lead.created" }),
  action: z.string().regex(/^[a-z][a-z_]{0,62}$/, "Use an action name such as whatsapp_greeting")
    .openapi({ example: "whatsapp_greeting" }),
});

export const listAutomations = apiRoute({
  method: "get",
  path: "/clients/{clientId}/automations",
  tags: ["Automations"],
  summary: "List every automation (event and action) and whether it runs for the client",
  permission: "automations.read",
  request: { params: clientParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(automationSchema) }), "The whole catalog") },
});

export const setAutomation = apiRoute({
  method: "put",
  path: "/clients/{clientId}/automations/{event}/{action}",
  tags: ["Automations"],
  summary: "Switch an automation on or off for the client",
  permission: "automations.manage",
  request: {
    params: automationParams,
    body: jsonBody(z.strictObject({ enabled: z.boolean() }), "The new setting"),
  },
  responses: { 200: jsonResponse(automationSchema, "The automation as it now applies") },
});

export const routes = [listAutomations, setAutomation];
