/**
 * The `webhook.deliver` job: POSTs one event to one client endpoint, signed with the Standard Webhooks
 * scheme. The webhook-id is the event's ("evt_<outbox id>") on every attempt and replay, so receivers can
 * dedupe. Every attempt is logged: a failure here, a success with the job's completion (one batched write
 * instead of one per delivery); an endpoint failing without a success for `disable_after_hours` is disabled
 * and the client's owners and admins are notified.
 */
import type { Config } from "../_shared/config.ts";
import { secretBoxFor } from "../_shared/integrations/credentials.ts";
import { checkTarget, signWebhook, webhookSecretContext } from "../_shared/outbound_webhooks.ts";
import type { Sql } from "../_shared/db.ts";
import type { Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

interface Endpoint {
  id: string;
  client_id: string;
  url: string;
  enabled: boolean;
  secret_sealed: string | null;
  failing_since: string | null;
}

const EXCERPT_CHARS = 500;
// Endpoints (and their opened secrets) are reused for a few seconds: a burst of events to one endpoint
// would otherwise read and decrypt the same row for every delivery. Edits apply within that time.
const CACHE_MS = 5_000;
const endpoints = new Map<string, { at: number; endpoint: Endpoint | undefined }>();
const secrets = new Map<string, string>();

async function loadEndpoint(sql: Sql, id: string): Promise<Endpoint | undefined> {
  const cached = endpoints.get(id);
  if (cached && performance.now() - cached.at < CACHE_MS) return cached.endpoint;
  const [endpoint] = await sql<Endpoint[]>`
    select e.id, e.client_id, e.url, e.enabled, s.secret_sealed, e.failing_since
    from public.webhook_endpoints e left join app.webhook_secrets s on s.endpoint_id = e.id
    where e.id = ${id}`;
  if (endpoints.size > 10_000) endpoints.clear();
  endpoints.set(id, { at: performance.now(), endpoint });
  return endpoint;
}

/** Opens a sealed secret once per sealed value (a rotated secret is a new value). */
async function openSecret(config: Config, endpointId: string, sealed: string): Promise<string> {
  const cached = secrets.get(sealed);
  if (cached) return cached;
  const secret = await secretBoxFor(config).open(sealed, webhookSecretContext(endpointId));
  if (secrets.size > 10_000) secrets.clear();
  secrets.set(sealed, secret);
  return secret;
}

export async function deliverWebhook(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const payload = job.payload as {
    endpoint_id: string;
    message_id: string;
    event: string;
    timestamp: string;
    data: unknown;
  };
  const endpoint = await loadEndpoint(sql, payload.endpoint_id);
  if (!endpoint) return { skipped: "endpoint_deleted" };
  if (!endpoint.enabled) return { skipped: "endpoint_disabled" };
  if (!endpoint.secret_sealed) {
    throw new JobError("The endpoint has no signing secret", { code: "no_secret", permanent: true });
  }

  const refusal = await checkTarget(endpoint.url, { allowLocalTargets: config.webhooks.allow_local_targets });
  if (refusal) {
    await record(endpoint, { error: refusal });
    throw new JobError(refusal, { code: "target_forbidden", permanent: true });
  }

  const secret = await openSecret(config, endpoint.id, endpoint.secret_sealed);
  const body = JSON.stringify({ type: payload.event, timestamp: payload.timestamp, data: payload.data });
  const timestamp = Math.floor(Date.now() / 1000);
  const started = performance.now();
  let response: Response;
  try {
    response = await fetch(endpoint.url, {
      method: "POST",
      redirect: "manual",
      signal: AbortSignal.timeout(config.webhooks.timeout_ms),
      headers: {
        "content-type": "application/json",
        "user-agent": "lead-automation-platform-webhooks/1",
        "webhook-id": payload.message_id,
        "webhook-timestamp": String(timestamp),
        "webhook-signature": await signWebhook(secret, payload.message_id, timestamp, body),
      },
      body,
    });
  } catch (error) {
    const message = error instanceof DOMException && error.name === "TimeoutError"
      ? `No response within ${config.webhooks.timeout_ms} ms`
      : `Could not connect: ${error instanceof Error ? error.message : String(error)}`;
    await record(endpoint, { error: message, duration: performance.now() - started });
    throw new JobError(message, { code: "unreachable" });
  }
  const text = await response.text().catch(() => "");
  const duration = performance.now() - started;
  const succeeded = response.status >= 200 && response.status < 300;
  const error = succeeded
    ? null
    : response.status >= 300 && response.status < 400
    ? `Redirects are not followed (HTTP ${response.status})`
    : `HTTP ${response.status}`;
  const excerpt = text.slice(0, EXCERPT_CHARS) || null;
  if (succeeded) {
    // Logged with the job's completion (sql/0022, on_jobs_webhook_delivered): no write of its own.
    return {
      delivery: {
        endpoint_id: endpoint.id,
        message_id: payload.message_id,
        event: payload.event,
        status_code: response.status,
        duration_ms: Math.round(duration),
        response_excerpt: excerpt,
      },
    };
  }
  await record(endpoint, { status: response.status, duration, error, excerpt });
  const retryAfter = Number(response.headers.get("retry-after"));
  throw new JobError(`The endpoint answered ${error}`, {
    code: `http_${response.status}`,
    retryAfterSeconds: Number.isFinite(retryAfter) && retryAfter > 0 ? Math.min(retryAfter, 3600) : undefined,
  });

  /** Logs a failed attempt and keeps the endpoint's health; disables it after days of failure. */
  async function record(
    target: Endpoint,
    outcome: { status?: number; duration?: number; error: string | null; excerpt?: string | null },
  ) {
    const hours = config.webhooks.disable_after_hours;
    const [health] = await sql<{ overdue: boolean }[]>`
      with logged as (
        insert into public.webhook_deliveries (client_id, endpoint_id, job_id, message_id, event, attempt, succeeded,
          status_code, duration_ms, error, response_excerpt)
        values (${target.client_id}, ${target.id}, ${job.id}, ${payload.message_id}, ${payload.event},
          ${job.attempts}, false, ${outcome.status ?? null},
          ${outcome.duration === undefined ? null : Math.round(outcome.duration)}, ${outcome.error ?? null},
          ${outcome.excerpt || null})
      )
      update public.webhook_endpoints set failing_since = coalesce(failing_since, now()), last_failure_at = now()
      where id = ${target.id}
      returning enabled and failing_since <= now() - make_interval(hours => ${hours}) as overdue`;
    if (!health?.overdue) return;
    endpoints.delete(target.id);
    await sql.begin(async (tx) => {
      const disabled = await tx`
        update public.webhook_endpoints set enabled = false,
          disabled_reason = ${`Disabled after failing for ${hours} hours without a success`}
        where id = ${target.id} and enabled returning id`;
      if (disabled.length === 0) return;
      await tx`select app.notify_admins_once(${target.client_id}, 'webhook.disabled', ${`webhook:${target.id}`},
        'Webhook endpoint disabled', ${`${target.url} failed for ${hours} hours and was disabled`},
        ${tx.json({ endpoint_id: target.id })}, interval '1 day')`;
    });
  }
}
