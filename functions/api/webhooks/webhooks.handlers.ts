import { type RouteHandler, z } from "@hono/zod-openapi";
import { asUser, type Tx } from "../../_shared/db.ts";
import { ApiError, type FieldError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, type Deps, encodeCursor } from "../../_shared/http.ts";
import { secretBoxFor } from "../../_shared/integrations/credentials.ts";
import type { Config } from "../../_shared/config.ts";
import {
  checkEndpointUrl,
  generateSigningSecret,
  webhookSecretContext,
} from "../../_shared/outbound_webhooks.ts";
import * as queries from "./webhooks.queries.ts";
import type * as routes from "./webhooks.routes.ts";

const endpointNotFound = (id: string) =>
  new ApiError(404, "webhook_endpoint_not_found", `Webhook endpoint "${id}" was not found`);

/**
 * Checks the fields the schema cannot: the URL against the SSRF rules, the events against the automation
 * catalog. Returns the events to store: ["*"] when "*" is among them, else each name once.
 */
async function checkEndpoint(
  { config, sql }: Deps,
  body: { url?: string; events?: string[] },
): Promise<string[] | undefined> {
  const errors: FieldError[] = [];
  if (body.url !== undefined) {
    const refusal = checkEndpointUrl(body.url, { allowLocalTargets: config.webhooks.allow_local_targets });
    if (refusal) errors.push({ path: "body.url", message: refusal, code: "invalid_url" });
  }
  let events: string[] | undefined;
  if (body.events !== undefined) {
    const known = new Set(await queries.webhookEvents(sql));
    body.events.forEach((event, index) => {
      if (event !== "*" && !known.has(event)) {
        errors.push({
          path: `body.events.${index}`,
          message: `Unknown event "${event}"; use one of ${[...known].join(", ")} or "*"`,
          code: "unknown_event",
        });
      }
    });
    events = body.events.includes("*") ? ["*"] : [...new Set(body.events)];
  }
  if (errors.length) throw new ApiError(422, "validation_failed", "The request has invalid fields", errors);
  return events;
}

/** Seals a new signing secret for an endpoint and stores it; returns the secret to show once. */
async function newSecret(tx: Tx, config: Config, endpointId: string): Promise<string> {
  const secret = generateSigningSecret();
  const sealed = await secretBoxFor(config).seal(secret, webhookSecretContext(endpointId));
  if (!await queries.storeSecret(tx, endpointId, sealed)) throw endpointNotFound(endpointId);
  return secret;
}

export const createWebhook: RouteHandler<typeof routes.createWebhook, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const events = (await checkEndpoint(c.get("deps"), body))!;
  const { config, sql } = c.get("deps");
  const created = await asUser(sql, c.get("caller").claims, async (tx) => {
    const endpoint = await queries.createEndpoint(tx, clientId, { ...body, events });
    return { ...endpoint, secret: await newSecret(tx, config, endpoint.id) };
  });
  return c.json(created, 201);
};

export const listWebhooks: RouteHandler<typeof routes.listWebhooks, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const data = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listEndpoints(tx, clientId),
  );
  return c.json({ data }, 200);
};

export const getWebhook: RouteHandler<typeof routes.getWebhook, AppEnv> = async (c) => {
  const { clientId, endpointId } = c.req.valid("param");
  const endpoint = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.findEndpoint(tx, clientId, endpointId),
  );
  if (!endpoint) throw endpointNotFound(endpointId);
  return c.json(endpoint, 200);
};

export const updateWebhook: RouteHandler<typeof routes.updateWebhook, AppEnv> = async (c) => {
  const { clientId, endpointId } = c.req.valid("param");
  const body = c.req.valid("json");
  const events = await checkEndpoint(c.get("deps"), body);
  const endpoint = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.updateEndpoint(tx, clientId, endpointId, { ...body, events }),
  );
  if (!endpoint) throw endpointNotFound(endpointId);
  return c.json(endpoint, 200);
};

export const deleteWebhook: RouteHandler<typeof routes.deleteWebhook, AppEnv> = async (c) => {
  const { clientId, endpointId } = c.req.valid("param");
  const deleted = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.deleteEndpoint(tx, clientId, endpointId),
  );
  if (!deleted) throw endpointNotFound(endpointId);
  return c.body(null, 204);
};

export const rotateWebhookSecret: RouteHandler<typeof routes.rotateWebhookSecret, AppEnv> = async (c) => {
  const { clientId, endpointId } = c.req.valid("param");
  const { config, sql } = c.get("deps");
  const rotated = await asUser(sql, c.get("caller").claims, async (tx) => {
    const endpoint = await queries.findEndpoint(tx, clientId, endpointId);
    if (!endpoint) throw endpointNotFound(endpointId);
    return { ...endpoint, secret: await newSecret(tx, config, endpoint.id) };
  });
  return c.json(rotated, 200);
};

const deliveryCursor = z.tuple([z.number().int().positive()]);

export const listDeliveries: RouteHandler<typeof routes.listDeliveries, AppEnv> = async (c) => {
  const { clientId, endpointId } = c.req.valid("param");
  const { limit, cursor } = c.req.valid("query");
  const before = cursor ? decodeCursor(cursor, deliveryCursor)[0] : undefined;
  const { rows, more } = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    if (!await queries.findEndpoint(tx, clientId, endpointId)) throw endpointNotFound(endpointId);
    return await queries.listDeliveries(tx, clientId, endpointId, { limit, before });
  });
  return c.json({ data: rows, next_cursor: more ? encodeCursor([rows[rows.length - 1].id]) : null }, 200);
};

export const replayDelivery: RouteHandler<typeof routes.replayDelivery, AppEnv> = async (c) => {
  const { clientId, endpointId, jobId } = c.req.valid("param");
  const { config, sql } = c.get("deps");
  const endpoint = await asUser(
    sql,
    c.get("caller").claims,
    (tx) => queries.findEndpoint(tx, clientId, endpointId),
  );
  if (!endpoint) throw endpointNotFound(endpointId);
  const payload = await queries.deliveryJobPayload(sql, clientId, endpointId, jobId);
  if (!payload) {
    throw new ApiError(
      404,
      "webhook_delivery_not_found",
      `Job ${jobId} is not a delivery to webhook endpoint "${endpointId}"`,
    );
  }
  if (!endpoint.enabled) {
    throw new ApiError(
      409,
      "webhook_endpoint_disabled",
      `Webhook endpoint "${endpointId}" is disabled; switch it on before replaying`,
    );
  }
  // A fresh key per request: every replay is a new delivery, and its key says which job it repeats.
  const newJobId = await queries.enqueueDelivery(
    sql,
    clientId,
    payload,
    `replay:${jobId}:${crypto.randomUUID()}`,
    config.queue.max_attempts,
  );
  return c.json({ job_id: newJobId, message_id: payload.message_id }, 202);
};
