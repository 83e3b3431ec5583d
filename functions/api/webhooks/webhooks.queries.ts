/**
 * SQL of the webhooks service. Endpoints and their delivery log are read and written in the caller's RLS
 * transaction (policies/automation.sql: webhooks.manage); secrets go through app.set_webhook_secret, which
 * checks the same permission. The automation catalog and the job queue are private and read on the owner
 * pool, always filtered by the addressed client.
 */
import type { Sql, Tx } from "../../_shared/db.ts";

export interface EndpointRow {
  id: string;
  client_id: string;
  url: string;
  description: string;
  events: string[];
  enabled: boolean;
  disabled_reason: string | null;
  failing_since: string | null;
  last_success_at: string | null;
  last_failure_at: string | null;
  created_by: string | null;
  created_at: string;
  updated_at: string;
}

export interface DeliveryRow {
  id: number;
  endpoint_id: string;
  job_id: number | null;
  message_id: string;
  event: string;
  attempt: number;
  succeeded: boolean;
  status_code: number | null;
  duration_ms: number | null;
  error: string | null;
  response_excerpt: string | null;
  created_at: string;
}

const ENDPOINT = `e.id, e.client_id, e.url, e.description, e.events, e.enabled, e.disabled_reason,
  e.failing_since, e.last_success_at, e.last_failure_at, e.created_by, e.created_at, e.updated_at`;

/** The events an endpoint may subscribe to: those the automation catalog can deliver by webhook. */
export async function webhookEvents(sql: Sql): Promise<string[]> {
  const rows = await sql<{ event: string }[]>`
    select distinct event from app.automation_catalog where action = 'webhook' order by event`;
  return rows.map((row) => row.event);
}

export async function createEndpoint(
  tx: Tx,
  clientId: string,
  endpoint: { url: string; description: string; events: string[] },
): Promise<EndpointRow> {
  const [row] = await tx<EndpointRow[]>`
    insert into public.webhook_endpoints as e (client_id, url, description, events, created_by)
    values (${clientId}, ${endpoint.url}, ${endpoint.description}, ${endpoint.events}::text[], auth.uid())
    returning ${tx.unsafe(ENDPOINT)}`;
  return row;
}

/** Stores an endpoint's sealed secret; false when the caller may not manage the endpoint. */
export async function storeSecret(tx: Tx, endpointId: string, sealed: string): Promise<boolean> {
  const [row] = await tx<
    { stored: boolean }[]
  >`select app.set_webhook_secret(${endpointId}, ${sealed}) as stored`;
  return row.stored;
}

export function listEndpoints(tx: Tx, clientId: string): Promise<EndpointRow[]> {
  return tx<EndpointRow[]>`
    select ${tx.unsafe(ENDPOINT)} from public.webhook_endpoints e
    where e.client_id = ${clientId} order by e.created_at desc, e.id desc`;
}

export async function findEndpoint(tx: Tx, clientId: string, id: string): Promise<EndpointRow | undefined> {
  const [row] = await tx<EndpointRow[]>`
    select ${
    tx.unsafe(ENDPOINT)
  } from public.webhook_endpoints e where e.id = ${id} and e.client_id = ${clientId}`;
  return row;
}

/**
 * Applies the given changes. Switching a disabled endpoint on, or pointing it at a new URL, starts its
 * failure clock afresh; switching it off records that a person did it.
 */
export async function updateEndpoint(
  tx: Tx,
  clientId: string,
  id: string,
  changes: { url?: string; description?: string; events?: string[]; enabled?: boolean },
): Promise<EndpointRow | undefined> {
  const url = changes.url ?? null;
  const enabled = changes.enabled ?? null;
  const [row] = await tx<EndpointRow[]>`
    update public.webhook_endpoints e set
      url = coalesce(${url}::text, e.url),
      description = coalesce(${changes.description ?? null}::text, e.description),
      events = coalesce(${changes.events ?? null}::text[], e.events),
      enabled = coalesce(${enabled}::boolean, e.enabled),
      disabled_reason = case
        when ${enabled}::boolean then null
        when not ${enabled}::boolean and e.enabled then 'Disabled by a user'
        else e.disabled_reason end,
      failing_since = case
        when (${enabled}::boolean and not e.enabled) or ${url}::text <> e.url then null
        else e.failing_since end
    where e.id = ${id} and e.client_id = ${clientId}
    returning ${tx.unsafe(ENDPOINT)}`;
  return row;
}

export async function deleteEndpoint(tx: Tx, clientId: string, id: string): Promise<boolean> {
  const rows =
    await tx`delete from public.webhook_endpoints where id = ${id} and client_id = ${clientId} returning 1`;
  return rows.length > 0;
}

export async function listDeliveries(
  tx: Tx,
  clientId: string,
  endpointId: string,
  page: { limit: number; before?: number },
): Promise<{ rows: DeliveryRow[]; more: boolean }> {
  const rows = await tx<DeliveryRow[]>`
    select d.id::text as id, d.endpoint_id, d.job_id::text as job_id, d.message_id, d.event, d.attempt,
      d.succeeded, d.status_code, d.duration_ms, d.error, d.response_excerpt, d.created_at
    from public.webhook_deliveries d
    where d.endpoint_id = ${endpointId} and d.client_id = ${clientId}
      ${page.before === undefined ? tx`` : tx`and d.id < ${page.before}::bigint`}
    order by d.id desc
    limit ${page.limit + 1}`;
  // Bigint ids arrive as strings; they stay far below 2^53, so numbers are exact.
  const data = rows.slice(0, page.limit).map((row) => ({
    ...row,
    id: Number(row.id),
    job_id: row.job_id === null ? null : Number(row.job_id),
  }));
  return { rows: data, more: rows.length > page.limit };
}

/** The payload of a webhook.deliver job of this endpoint in this client, or undefined. */
export async function deliveryJobPayload(
  sql: Sql,
  clientId: string,
  endpointId: string,
  jobId: number,
): Promise<{ message_id: string } & Record<string, unknown> | undefined> {
  const [row] = await sql<{ payload: { message_id: string } & Record<string, unknown> }[]>`
    select j.payload from app.jobs j
    where j.id = ${jobId}::bigint and j.client_id = ${clientId} and j.kind = 'webhook.deliver'
      and j.payload ->> 'endpoint_id' = ${endpointId}`;
  return row?.payload;
}

/** Enqueues a webhook.deliver job; returns its id. */
export async function enqueueDelivery(
  sql: Sql,
  clientId: string,
  payload: Record<string, unknown>,
  idempotencyKey: string,
  maxAttempts: number,
): Promise<number> {
  const [row] = await sql<{ id: string }[]>`
    select app.enqueue_job(${clientId}, 'webhook.deliver', ${sql.json(payload as never)}, ${idempotencyKey},
      ${maxAttempts})::text as id`;
  return Number(row.id);
}
