/**
 * The worker's access to the queue tables (sql/0021_jobs.sql, sql/0023_automations.sql), all in one place.
 * Every call is one statement in its own transaction, so a crash between calls loses nothing: an undispatched
 * event stays in the outbox, an unfinished job comes back when its lease expires.
 */
import type { Config } from "../_shared/config.ts";
import type { Sql } from "../_shared/db.ts";

export interface Job {
  id: number;
  client_id: string;
  kind: string;
  payload: Record<string, unknown>;
  idempotency_key: string;
  status: string;
  attempts: number;
  max_attempts: number;
  run_at: string;
  errors: Array<Record<string, unknown>>;
}

/** Turns up to a batch of outbox events into jobs and notifications; returns how many events it consumed. */
export async function dispatchEvents(sql: Sql, config: Config): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`
    select app.dispatch_events(${config.queue.dispatch_batch}, ${config.queue.max_attempts}) as count`;
  return count;
}

/** Turns up to a batch of stored Meta/WhatsApp webhook deliveries into jobs; returns how many it consumed. */
export async function routeWebhookInbox(sql: Sql, config: Config): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`
    select app.route_webhook_inbox(${config.queue.dispatch_batch}, ${config.queue.max_attempts}) as count`;
  return count;
}

/** Enqueues the periodic jobs (credential health, Meta backfill) due now; returns how many were new. */
export async function schedulePeriodicJobs(sql: Sql, config: Config): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`
    select app.schedule_periodic_jobs(${config.queue.max_attempts}) as count`;
  return count;
}

/**
 * Deletes operational records and read notifications past their retention when a pass is due
 * (sql/0037_retention.sql, sql/0041); returns the rows deleted per table, or null when no pass was due or
 * another worker's pass was running.
 */
export async function pruneExpired(
  sql: Sql,
  config: Config,
): Promise<Record<string, number | boolean> | null> {
  const retention = config.retention;
  const [{ pruned }] = await sql<{ pruned: Record<string, number | boolean> | null }[]>`
    select app.prune_expired(${retention.interval_seconds}, ${retention.batch},
      ${retention.finished_jobs_days}, ${retention.dead_days}, ${retention.webhook_inbox_days},
      ${retention.webhook_deliveries_days}, ${retention.sessions_days},
      ${retention.read_notifications_days}) as pruned`;
  return pruned;
}

/** Merges the lead search index's pending entries (sql/0028); returns how many pending pages it emptied. */
export async function flushLeadSearchIndex(sql: Sql): Promise<number> {
  const [{ pages }] = await sql<{ pages: string }[]>`select app.flush_lead_search_index() as pages`;
  return Number(pages);
}

/**
 * Leases up to `limit` due jobs of the given kinds (and clients, when given) to this worker; expired leases
 * of crashed workers are rescued first.
 */
export async function claimJobs(
  sql: Sql,
  config: Config,
  workerId: string,
  limit: number,
  kinds: string[],
  clients: string[] | null,
): Promise<Job[]> {
  // Ids are bigints, which postgres.js returns as strings; job ids stay far below 2^53.
  const jobs = await sql<(Job & { id: string })[]>`
    select id, client_id, kind, payload, idempotency_key, status, attempts, max_attempts, run_at, errors
    from app.claim_jobs(${workerId}, ${limit}, ${config.queue.lease_seconds}, ${config.queue.per_client_running},
      ${kinds}, ${clients})`;
  return jobs.map((job) => ({ ...job, id: Number(job.id) }));
}

/** Finishes jobs still leased to this worker; returns the ids that were (a job whose lease was lost is not). */
export async function completeJobs(
  sql: Sql,
  workerId: string,
  done: Array<{ id: number; attempt: number; result: unknown }>,
): Promise<number[]> {
  const rows = await sql<{ id: string }[]>`
    select id from app.complete_jobs(${workerId}, ${sql.json(done as never)}) as id`;
  return rows.map((row) => Number(row.id));
}

/** Records a failed attempt; returns "queued" (will retry), "dead", or null when the lease was lost. */
export async function failJob(
  sql: Sql,
  workerId: string,
  job: Job,
  error: { message: string; code?: string },
  retrySeconds: number,
  permanent: boolean,
): Promise<string | null> {
  const [row] = await sql<{ status: string | null }[]>`
    select app.fail_job(${workerId}, ${job.id}, ${job.attempts}, ${sql.json(error)}, ${retrySeconds},
      ${permanent}) as status`;
  return row.status;
}

/** Hands unfinished jobs back without counting their attempt (graceful shutdown). */
export async function releaseJobs(sql: Sql, workerId: string, ids: number[]): Promise<number> {
  const [{ count }] = await sql<{ count: number }[]>`select app.release_jobs(${workerId}, ${ids}) as count`;
  return count;
}

/**
 * Delay before retry `attempt` + 1: base * 2^(attempt - 1), capped, randomised by +-jitter so many jobs
 * failing together do not come back together.
 */
export function backoffSeconds(config: Config, attempt: number, random = Math.random): number {
  const { retry_base_seconds: base, retry_max_seconds: max, retry_jitter: jitter } = config.queue;
  const delay = Math.min(max, base * 2 ** Math.max(0, attempt - 1));
  return Math.max(0, delay * (1 + jitter * (2 * random() - 1)));
}
