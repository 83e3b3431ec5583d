/**
 * SQL of the imports service. The import runs as a job (app.jobs is private), so these run on the owner pool
 * after requirePermission has checked integrations.manage in the client, filtered by that client's id.
 */
import type { Sql } from "../../_shared/db.ts";

/** Whether the client has an enabled Google Sheets integration to import from. */
export async function sheetsConnected(sql: Sql, clientId: string): Promise<boolean> {
  const rows = await sql`
    select 1 from public.integrations where client_id = ${clientId} and kind = 'google_sheets' and enabled`;
  return rows.length > 0;
}

/** Enqueues a sheets.import job; every request is its own import (rows are idempotent anyway). */
export async function enqueueImport(
  sql: Sql,
  clientId: string,
  payload: { from_row: number; requested_by: string },
  maxAttempts: number,
): Promise<{ id: number; status: string }> {
  const [{ id }] = await sql<{ id: string }[]>`
    select app.enqueue_job(${clientId}, 'sheets.import', ${sql.json(payload)},
      ${`import:${clientId}:${crypto.randomUUID()}`}, ${maxAttempts}) as id`;
  // A new statement: the job row is visible now (the function's insert was not, to the statement calling it).
  const [row] = await sql<{ id: string; status: string }[]>`select id, status from app.jobs where id = ${id}`;
  return { id: Number(row.id), status: row.status };
}
