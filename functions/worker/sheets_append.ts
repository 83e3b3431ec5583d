/**
 * The `sheets.append` job (enqueued by app.dispatch_events for lead.created when the client switched the
 * sheets_append automation on): appends the lead as a row of the client's Google Sheet.
 *
 * - Idempotent: every row carries the lead id in the "Lead ID" column and the Sheets client skips ids already
 *   in the sheet, so a retried append (or one whose response was lost) never adds a second row.
 * - Batched: the job also takes the other due `sheets.append` jobs of the client (locked FOR UPDATE SKIP
 *   LOCKED in the same transaction, so no other worker can claim them meanwhile) and appends all their leads
 *   in one write, then marks those jobs succeeded in that transaction. If anything fails, the transaction
 *   rolls back and they are simply still queued.
 * - One writer per spreadsheet: a transaction-level advisory lock on the spreadsheet id (works behind
 *   Supabase's transaction pooler, unlike a session lock); a job that finds it taken retries in a moment.
 * - Under Google's write quota: config google_sheets.writes_per_minute, counted per service account in
 *   app.rate_limits, shared by every worker.
 * - Values are sent RAW (by the Sheets client), so "=HYPERLINK(...)" typed by a lead stays text.
 */
import type { Config } from "../_shared/config.ts";
import type { Sql } from "../_shared/db.ts";
import { loadIntegration } from "../_shared/integrations/credentials.ts";
import {
  createSheetsClient,
  type ServiceAccountKey,
  type SheetColumn,
  SheetsApiError,
  type SheetsClient,
} from "../_shared/integrations/sheets.ts";
import { markIntegrationBroken } from "./integration_status.ts";
import type { Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

/** The header of the column holding each row's lead id (what makes appends idempotent). */
export const LEAD_ID_HEADER = "Lead ID";
/** Most leads appended in one write. */
const BATCH = 200;
/** Columns used when the integration lists none. */
export const DEFAULT_COLUMNS: SheetColumn[] = [
  { header: "Created at", field: "created_at" },
  { header: "Name", field: "full_name" },
  { header: "Email", field: "email" },
  { header: "Phone", field: "phone" },
  { header: "Source", field: "source" },
  { header: "Status", field: "status" },
];

export interface SheetsSettings {
  spreadsheet_id?: string;
  sheet?: string;
  columns?: SheetColumn[];
}

const clients = new Map<string, SheetsClient>();

/** One Sheets client per configured endpoint pair, so access tokens are cached across jobs. */
export function sheetsClientFor(config: Config): SheetsClient {
  const id = `${config.urls.google_sheets}\n${config.urls.google_token}`;
  let client = clients.get(id);
  if (!client) {
    client = createSheetsClient({ sheetsUrl: config.urls.google_sheets, tokenUrl: config.urls.google_token });
    clients.set(id, client);
  }
  return client;
}

/** A client's Sheets integration ready to use, or why it cannot be used. */
export async function loadSheets(
  sql: Sql,
  config: Config,
  clientId: string,
): Promise<
  | { skipped: string }
  | { key: ServiceAccountKey; spreadsheetId: string; sheet: string; columns: SheetColumn[] }
> {
  const integration = await loadIntegration(sql, config, clientId, "google_sheets");
  if (!integration) return { skipped: "integration_missing" };
  if (!integration.enabled) return { skipped: "integration_disabled" };
  const settings = integration.settings as SheetsSettings;
  if (!integration.secret || !settings.spreadsheet_id) {
    throw new JobError("The Google Sheets integration has no service-account key or spreadsheet id", {
      code: "sheets_not_configured",
      permanent: true,
    });
  }
  let key: ServiceAccountKey;
  try {
    key = JSON.parse(integration.secret);
  } catch {
    throw new JobError("The stored Google service-account key is not JSON; upload the key file again", {
      code: "sheets_key_invalid",
      permanent: true,
    });
  }
  const columns = Array.isArray(settings.columns) && settings.columns.length > 0
    ? settings.columns
    : DEFAULT_COLUMNS;
  return { key, spreadsheetId: settings.spreadsheet_id, sheet: settings.sheet || "Sheet1", columns };
}

/** A Sheets failure as a job outcome: retry later for quota and outages, otherwise dead with the reason. */
export async function sheetsJobError(sql: Sql, clientId: string, error: SheetsApiError): Promise<JobError> {
  if (error.retryable) {
    return new JobError(`Google Sheets asked to retry later: ${error.message}`, {
      code: "sheets_retry_later",
      retryAfterSeconds: error.retryAfterMs === undefined ? undefined : Math.ceil(error.retryAfterMs / 1000),
    });
  }
  // Credentials or sharing that stopped working, a deleted sheet or a changed header row: a person must act.
  if (
    [401, 403, 404].includes(error.status) ||
    ["invalid_grant", "invalid_key", "HEADER_MISMATCH"].includes(error.reason)
  ) {
    await markIntegrationBroken(sql, clientId, "google_sheets", error.message, {
      title: "Google Sheets disconnected",
      body: `Leads cannot be written to the sheet: ${error.message}`,
    });
  }
  return new JobError(`Google Sheets refused the request: ${error.message}`, {
    code: "sheets_refused",
    permanent: true,
  });
}

interface LeadRecord {
  id: string;
  full_name: string | null;
  email: string | null;
  phone: string | null;
  source: string;
  status: string;
  product_id: string | null;
  utm_source: string | null;
  utm_medium: string | null;
  utm_campaign: string | null;
  utm_term: string | null;
  utm_content: string | null;
  custom: Record<string, unknown>;
  created_at: string;
}

export async function appendToSheet(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const target = await loadSheets(sql, config, job.client_id);
  if ("skipped" in target) return target;
  const sheets = sheetsClientFor(config);

  return await sql.begin(async (tx) => {
    const [{ locked }] = await tx<{ locked: boolean }[]>`
      select pg_try_advisory_xact_lock(hashtextextended(${`sheets:${target.spreadsheetId}`}, 0)) as locked`;
    if (!locked) {
      throw new JobError("Another worker is writing to this spreadsheet", {
        code: "sheets_busy",
        retryAfterSeconds: 1 + Math.random() * 2,
      });
    }
    // The client's other due appends ride along; locked until this transaction ends.
    const others = await tx<{ id: number; lead_id: string }[]>`
      select j.id::int, j.payload ->> 'lead_id' as lead_id from app.jobs j
      where j.client_id = ${job.client_id} and j.kind = 'sheets.append' and j.status = 'queued'
        and j.run_at <= now() and j.id <> ${job.id}
        and not exists (
          select 1 from app.job_pauses p where p.client_id = j.client_id and j.kind like p.kind_pattern
        )
      order by j.run_at, j.id
      limit ${BATCH - 1}
      for update skip locked`;
    const leadIds = [String(job.payload.lead_id ?? ""), ...others.map((o) => o.lead_id)]
      .filter((id) => /^[0-9a-f-]{36}$/i.test(id));
    const leads = await tx<LeadRecord[]>`
      select id, full_name, email, phone, source, status, product_id, utm_source, utm_medium, utm_campaign,
        utm_term, utm_content, custom, created_at
      from public.leads where client_id = ${job.client_id} and id = any (${leadIds}::uuid[])`;
    if (leads.length === 0) return { skipped: "lead_not_found" };

    const [quota] = await sql<{ allowed: boolean; reset_seconds: number }[]>`
      select allowed, reset_seconds from app.rate_limit_hit(${`sheets-writes:${target.key.client_email}`},
        ${config.google_sheets.writes_per_minute}, 60)`;
    if (!quota.allowed) {
      throw new JobError(
        `The Google Sheets write quota (${config.google_sheets.writes_per_minute} per minute) is used up`,
        { code: "sheets_quota", retryAfterSeconds: quota.reset_seconds },
      );
    }

    let result;
    try {
      result = await sheets.appendLeads({
        key: target.key,
        spreadsheetId: target.spreadsheetId,
        sheet: target.sheet,
        columns: target.columns,
        rows: leads as unknown as Record<string, unknown>[],
        idColumnHeader: LEAD_ID_HEADER,
      });
    } catch (error) {
      if (error instanceof SheetsApiError) throw await sheetsJobError(sql, job.client_id, error);
      throw error;
    }
    if (others.length > 0) {
      await tx`
        update app.jobs set status = 'succeeded', attempts = attempts + 1, finished_at = now(),
          result = ${tx.json({ appended_with_job: job.id })}
        where id = any (${others.map((o) => o.id)}::bigint[]) and status = 'queued'`;
    }
    await tx`
      update public.integrations set status = 'ok', status_detail = null, checked_at = now()
      where client_id = ${job.client_id} and kind = 'google_sheets' and status <> 'ok'`;
    return {
      leads: leads.length,
      appended: result.appended,
      skipped: result.skipped,
      batched_jobs: others.map((o) => o.id),
      updated_range: result.updatedRange ?? null,
    };
  });
}
