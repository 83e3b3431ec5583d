/**
 * SQL of the jobs service. app.jobs is private (sql/0021_jobs.sql), so these run on the owner pool after
 * requirePermission has checked the caller's permission in the client, and every statement is filtered by
 * that client's id: a job of another client is simply not found.
 */
import type { Sql, Tx } from "../../_shared/db.ts";

export type JobStatus = "queued" | "running" | "succeeded" | "dead" | "cancelled";

interface JobError {
  attempt: number;
  at: string;
  message: string;
  code?: string;
  [key: string]: unknown;
}

/** A job as lists show it. */
export interface JobRow {
  id: number;
  client_id: string;
  kind: string;
  status: JobStatus;
  attempts: number;
  max_attempts: number;
  run_at: string;
  created_at: string;
  updated_at: string;
  finished_at: string | null;
  last_error: JobError | null;
}

/** A job with everything it holds. */
export interface JobDetailRow extends JobRow {
  idempotency_key: string;
  payload: unknown;
  result: unknown;
  errors: JobError[];
  locked_by: string | null;
  locked_until: string | null;
}

const SUMMARY = `j.id::text as id, j.client_id, j.kind, j.status, j.attempts, j.max_attempts, j.run_at,
  j.created_at, j.updated_at, j.finished_at, j.errors -> -1 as last_error`;
const DETAIL = `${SUMMARY}, j.idempotency_key, j.payload, j.result, j.errors, j.locked_by, j.locked_until`;

// Ids are bigints, which postgres.js reads as strings; they stay far below 2^53, so numbers are exact.
const withNumberId = <T extends { id: number }>(row: T): T => ({ ...row, id: Number(row.id) });

export async function listJobs(
  sql: Sql,
  clientId: string,
  filters: { status?: JobStatus; kind?: string },
  page: { limit: number; before?: number },
): Promise<{ rows: JobRow[]; more: boolean }> {
  const rows = await sql<JobRow[]>`
    select ${sql.unsafe(SUMMARY)} from app.jobs j
    where j.client_id = ${clientId}
      ${page.before === undefined ? sql`` : sql`and j.id < ${page.before}::bigint`}
      ${filters.status ? sql`and j.status = ${filters.status}` : sql``}
      ${filters.kind ? sql`and j.kind = ${filters.kind}` : sql``}
    order by j.id desc
    limit ${page.limit + 1}`;
  return { rows: rows.slice(0, page.limit).map(withNumberId), more: rows.length > page.limit };
}

export async function findJob(
  sql: Sql | Tx,
  clientId: string,
  jobId: number,
): Promise<JobDetailRow | undefined> {
  const [row] = await sql<JobDetailRow[]>`
    select ${sql.unsafe(DETAIL)} from app.jobs j where j.id = ${jobId}::bigint and j.client_id = ${clientId}`;
  return row && withNumberId(row);
}

/** What an admin's retry or cancel did: not found, refused for the job's current status, or done. */
export type JobChange =
  | { outcome: "not_found" }
  | { outcome: "refused"; status: JobStatus }
  | { outcome: "done"; job: JobDetailRow };

/**
 * Locks the job, checks its status against the ones the change accepts, and applies it with the SQL
 * function of sql/0021_jobs.sql, in one transaction so a worker cannot claim the job in between.
 */
async function changeJob(
  sql: Sql,
  clientId: string,
  jobId: number,
  accepts: JobStatus[],
  apply: (tx: Tx) => Promise<unknown>,
): Promise<JobChange> {
  return await sql.begin(async (tx) => {
    const [current] = await tx<{ status: JobStatus }[]>`
      select status from app.jobs where id = ${jobId}::bigint and client_id = ${clientId} for update`;
    if (!current) return { outcome: "not_found" as const };
    if (!accepts.includes(current.status)) return { outcome: "refused" as const, status: current.status };
    await apply(tx);
    return { outcome: "done" as const, job: (await findJob(tx, clientId, jobId))! };
  }) as JobChange;
}

/** Queues a dead, cancelled or waiting job to run now with maxAttempts more attempts. */
export function retryJob(sql: Sql, clientId: string, jobId: number, maxAttempts: number): Promise<JobChange> {
  return changeJob(
    sql,
    clientId,
    jobId,
    ["dead", "cancelled", "queued"],
    (tx) => tx`select app.retry_job(${clientId}, ${jobId}::bigint, ${maxAttempts})`,
  );
}

/** Cancels a queued or dead job; a cancelled one is left as it is. */
export function cancelJob(sql: Sql, clientId: string, jobId: number): Promise<JobChange> {
  return changeJob(
    sql,
    clientId,
    jobId,
    ["queued", "dead", "cancelled"],
    async (tx) => {
      await tx`select app.cancel_job(${clientId}, ${jobId}::bigint)`;
    },
  );
}

/** Whether the caller's role sees every record of the client (scope client, or a platform administrator). */
export async function seesWholeClient(tx: Tx, clientId: string): Promise<boolean> {
  const [row] = await tx<{ whole: boolean }[]>`select app.my_scope(${clientId}) = 'client' as whole`;
  return row.whole === true;
}
