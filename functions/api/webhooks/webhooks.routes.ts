import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { jobIdSchema } from "../jobs/jobs.routes.ts";
import { apiRoute, jsonBody, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

/** Most event names one endpoint may list (sql/0022: webhook_endpoints_events_check). */
export const MAX_ENDPOINT_EVENTS = 50;

const eventsDescription = "Event names to receive (lead.created, lead.duplicate, lead.assigned, " +
  "lead.status_changed, message.received, member.added, member.changed, member.removed: the events of " +
  'the automation catalog with a webhook action) or ["*"] for all of them, including future ones';

const urlField = z.string().trim().min(1).max(2000).openapi({
  description: "Where events are POSTed: https, on a public address",
  example: "https://crm.example.com/hooks/leads",
});
const descriptionField = z.string().trim().max(500);
const eventsField = z.array(z.string().max(100)).min(1).max(MAX_ENDPOINT_EVENTS).openapi({
  description: eventsDescription,
  example: ["lead.created", "lead.assigned"],
});

export const webhookEndpointSchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  url: z.string(),
  description: z.string(),
  events: z.array(z.string()),
  enabled: z.boolean(),
  disabled_reason: z.string().nullable().openapi({ description: "Why the endpoint was disabled" }),
  failing_since: timestamp.nullable().openapi({
    description: "Start of the current run of failed deliveries; an endpoint failing for days is disabled",
  }),
  last_success_at: timestamp.nullable(),
  last_failure_at: timestamp.nullable(),
  created_by: z.uuid().nullable(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("WebhookEndpoint");

const secretField = {
  secret: z.string().openapi({
    description: "The signing secret (Standard Webhooks, whsec_<base64>). Shown only in this response; " +
      "verify each delivery's webhook-signature with it",
    example: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  }),
};

export const webhookEndpointWithSecretSchema = webhookEndpointSchema.extend(secretField).openapi(
  "WebhookEndpointWithSecret",
);

export const webhookDeliverySchema = z.object({
  id: z.number().int(),
  endpoint_id: z.uuid(),
  job_id: z.number().int().nullable().openapi({
    description: "The webhook.deliver job; replay it by this id",
  }),
  message_id: z.string().openapi({
    description: "The webhook-id header, the same on every retry and replay",
  }),
  event: z.string(),
  attempt: z.number().int(),
  succeeded: z.boolean(),
  status_code: z.number().int().nullable(),
  duration_ms: z.number().int().nullable(),
  error: z.string().nullable(),
  response_excerpt: z.string().nullable().openapi({ description: "The start of the endpoint's answer" }),
  created_at: timestamp,
}).openapi("WebhookDelivery");

const clientParams = z.object({ clientId: clientIdSchema });
const endpointParams = z.object({ clientId: clientIdSchema, endpointId: z.uuid() });

export const createWebhook = apiRoute({
  method: "post",
  path: "/clients/{clientId}/webhooks",
  tags: ["Webhooks"],
  summary: "Add an outbound webhook endpoint; its signing secret is shown once",
  permission: "webhooks.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        url: urlField,
        description: descriptionField.default(""),
        events: eventsField.default(["*"]),
      }),
      "The endpoint",
    ),
  },
  responses: {
    201: jsonResponse(webhookEndpointWithSecretSchema, "Created; `secret` is not retrievable later"),
  },
});

export const listWebhooks = apiRoute({
  method: "get",
  path: "/clients/{clientId}/webhooks",
  tags: ["Webhooks"],
  summary: "List a client's webhook endpoints, newest first (never their secrets)",
  permission: "webhooks.manage",
  request: { params: clientParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(webhookEndpointSchema) }), "Every endpoint") },
});

export const getWebhook = apiRoute({
  method: "get",
  path: "/clients/{clientId}/webhooks/{endpointId}",
  tags: ["Webhooks"],
  summary: "Read a webhook endpoint",
  permission: "webhooks.manage",
  request: { params: endpointParams },
  responses: { 200: jsonResponse(webhookEndpointSchema, "The endpoint") },
});

export const updateWebhook = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/webhooks/{endpointId}",
  tags: ["Webhooks"],
  summary: "Change a webhook endpoint's URL, description, events, or switch it on or off",
  description: "Switching a disabled endpoint back on clears disabled_reason and failing_since, so it gets " +
    "the full grace period again; so does a new URL. Deliveries already queued use the endpoint as it is " +
    "when they run.",
  permission: "webhooks.manage",
  request: {
    params: endpointParams,
    body: jsonBody(
      z.strictObject({
        url: urlField.optional(),
        description: descriptionField.optional(),
        events: eventsField.optional(),
        enabled: z.boolean().optional(),
      }).refine((body) => Object.keys(body).length > 0, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(webhookEndpointSchema, "The updated endpoint") },
});

export const deleteWebhook = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/webhooks/{endpointId}",
  tags: ["Webhooks"],
  summary: "Delete a webhook endpoint with its secret and delivery log (queued deliveries are skipped)",
  permission: "webhooks.manage",
  request: { params: endpointParams },
  responses: { 204: { description: "Deleted" } },
});

export const rotateWebhookSecret = apiRoute({
  method: "post",
  path: "/clients/{clientId}/webhooks/{endpointId}/rotate-secret",
  tags: ["Webhooks"],
  summary: "Replace a webhook endpoint's signing secret; the new one is shown once",
  description: "Deliveries from now on, retries included, are signed with the new secret only.",
  permission: "webhooks.manage",
  request: { params: endpointParams },
  responses: { 200: jsonResponse(webhookEndpointWithSecretSchema, "The endpoint and its new secret") },
});

export const listDeliveries = apiRoute({
  method: "get",
  path: "/clients/{clientId}/webhooks/{endpointId}/deliveries",
  tags: ["Webhooks"],
  summary: "A webhook endpoint's delivery log: every attempt, newest first",
  permission: "webhooks.manage",
  request: { params: endpointParams, query: pageQuery },
  responses: { 200: jsonResponse(pageOf(webhookDeliverySchema), "A page of delivery attempts") },
});

export const replayDelivery = apiRoute({
  method: "post",
  path: "/clients/{clientId}/webhooks/{endpointId}/deliveries/{jobId}/replay",
  tags: ["Webhooks"],
  summary: "Send an event to a webhook endpoint again, as a new delivery job with the same webhook-id",
  description: "jobId is a delivery's job_id. The event is sent as it was first dispatched, with the same " +
    "message id (webhook-id), so a receiver that already handled it can recognise it.",
  permission: "webhooks.manage",
  request: { params: endpointParams.extend({ jobId: jobIdSchema }) },
  responses: {
    202: jsonResponse(
      z.object({
        job_id: z.number().int().openapi({
          description: "The new webhook.deliver job (GET .../jobs/{jobId})",
        }),
        message_id: z.string(),
      }),
      "Queued",
    ),
    409: problem("The endpoint is disabled; switch it on first"),
  },
});

export const routes = [
  createWebhook,
  listWebhooks,
  getWebhook,
  updateWebhook,
  deleteWebhook,
  rotateWebhookSecret,
  listDeliveries,
  replayDelivery,
];
