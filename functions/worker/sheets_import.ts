/**
 * The `sheets.import` job (POST /clients/{clientId}/imports/google-sheets): reads the rows of the client's
 * Google Sheet and stores each as a lead with source "google_sheets".
 *
 * - Idempotent per row: external_ref is "<spreadsheet id>:<sheet>:<row number>", unique per client and
 *   source, so importing the same sheet again creates nothing new.
 * - Headers map to lead fields through the integration's columns read backwards (header -> field); a header
 *   that is not a configured column but names a lead field ("email", "Phone") maps to it too; every other
 *   column lands in custom under its header. Rows the platform appended itself (their "Lead ID" is filled)
 *   are already leads and are skipped.
 * - Each row is validated like ingestion (the shared zod fields and normalizeLead: E.164 phones, an email or
 *   a phone required); a bad row is listed in the job result with its row number and errors, never dropped
 *   silently.
 * - Large sheets are imported CHUNK rows per job; a job with rows left enqueues the next one.
 */
import { z } from "@hono/zod-openapi";
import { unstorablePlace } from "../_shared/errors.ts";
import { leadFields, normalizeLead } from "../_shared/leads.ts";
import { SheetsApiError } from "../_shared/integrations/sheets.ts";
import type { Job } from "./queue.ts";
import { LEAD_COLUMN_FIELDS } from "../_shared/integrations/sheets.ts";
import { LEAD_ID_HEADER, loadSheets, sheetsClientFor, sheetsJobError } from "./sheets_append.ts";
import { type JobContext, JobError } from "./worker.ts";

const CHUNK = 1000;
const rowSchema = z.object(leadFields);
/** Fields a sheet may fill; the rest of LEAD_COLUMN_FIELDS (id, source, status, created_at) belong to the platform. */
const IMPORTED = new Set([
  "full_name",
  "first_name",
  "last_name",
  "email",
  "phone",
  "country",
  "product_id",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "utm_term",
  "utm_content",
]);
const PLATFORM_FIELDS = new Set<string>(LEAD_COLUMN_FIELDS.filter((field) => !IMPORTED.has(field)));

interface RowError {
  row: number;
  errors: Array<{ path: string; message: string; code: string }>;
}

/** "E-mail address" -> "e_mail_address", to recognise headers that name a lead field. */
function fieldName(header: string): string {
  return header.trim().toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");
}

/** Splits one sheet row into lead fields and custom values, by header. */
export function rowToInput(
  values: Record<string, string>,
  fieldOf: Map<string, string>,
): { input: Record<string, unknown>; custom: Record<string, string>; platformId?: string } {
  const input: Record<string, unknown> = {};
  const custom: Record<string, string> = {};
  let platformId: string | undefined;
  for (const [header, raw] of Object.entries(values)) {
    const value = raw.trim();
    if (value === "") continue;
    const field = fieldOf.get(header) ?? (IMPORTED.has(fieldName(header)) ? fieldName(header) : undefined);
    if (header === LEAD_ID_HEADER || field === "id") platformId = value;
    else if (field?.startsWith("custom.")) custom[field.slice("custom.".length)] = value;
    else if (field && IMPORTED.has(field)) input[field] = value;
    else if (!field || !PLATFORM_FIELDS.has(field)) custom[header] = value;
  }
  return { input, custom, platformId };
}

export async function importFromSheet(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const target = await loadSheets(sql, config, job.client_id);
  if ("skipped" in target) {
    throw new JobError("The client has no enabled Google Sheets integration to import from", {
      code: "sheets_not_configured",
      permanent: true,
    });
  }
  const fromRow = Math.max(2, Number(job.payload.from_row ?? 2) || 2);
  let read;
  try {
    read = await sheetsClientFor(config).readRows({
      key: target.key,
      spreadsheetId: target.spreadsheetId,
      sheet: target.sheet,
      fromRow,
    });
  } catch (error) {
    if (error instanceof SheetsApiError) throw await sheetsJobError(sql, job.client_id, error);
    throw error;
  }

  const fieldOf = new Map(target.columns.map((column) => [column.header, column.field]));
  const products = new Set(
    (await sql<{ product_id: string }[]>`
      select product_id from public.client_products where client_id = ${job.client_id}`).map((r) =>
      r.product_id
    ),
  );
  const invalid: RowError[] = [];
  let created = 0, duplicates = 0, existing = 0, skipped = 0;
  // Read to the end (a bounded range past the sheet's grid is an error), then take one chunk.
  const chunk = read.rows.slice(0, CHUNK);
  for (const { rowNumber, values } of chunk) {
    // A cell PostgreSQL cannot store (U+0000, say) or a column named "__proto__" fails its row, not the job.
    const unstorable = unstorablePlace(values);
    if (unstorable) {
      invalid.push({
        row: rowNumber,
        errors: [{ path: unstorable.path.join("."), message: unstorable.message, code: unstorable.code }],
      });
      continue;
    }
    const { input, custom, platformId } = rowToInput(values, fieldOf);
    if (platformId) {
      skipped++;
      continue;
    }
    const parsed = rowSchema.safeParse(input);
    if (!parsed.success) {
      invalid.push({
        row: rowNumber,
        errors: parsed.error.issues.map((issue) => ({
          path: issue.path.join("."),
          message: issue.message,
          code: issue.code,
        })),
      });
      continue;
    }
    const normalized = normalizeLead(parsed.data, custom);
    if ("errors" in normalized) {
      invalid.push({ row: rowNumber, errors: normalized.errors });
      continue;
    }
    const lead = normalized.lead;
    if (lead.product_id && !products.has(lead.product_id)) {
      invalid.push({
        row: rowNumber,
        errors: [{
          path: "product_id",
          message: `Product "${lead.product_id}" is not enabled for the client`,
          code: "product_not_enabled",
        }],
      });
      continue;
    }
    const externalRef = `${target.spreadsheetId}:${target.sheet}:${rowNumber}`;
    const [row] = await sql<{ id: string; duplicate_of: string | null }[]>`
      insert into public.leads (client_id, source, external_ref, full_name, email, phone, product_id,
        utm_source, utm_medium, utm_campaign, utm_term, utm_content, custom, raw_payload)
      select ${job.client_id}, 'google_sheets', ${externalRef}, ${lead.full_name ?? null}, ${
      lead.email ?? null
    },
        ${lead.phone ?? null}, ${lead.product_id ?? null}, ${lead.utm_source ?? null}, ${
      lead.utm_medium ?? null
    },
        ${lead.utm_campaign ?? null}, ${lead.utm_term ?? null}, ${lead.utm_content ?? null},
        ${sql.json(lead.custom as never)}, ${sql.json({ row: rowNumber, values })}
      where not exists (
        select 1 from public.leads l
        where l.client_id = ${job.client_id} and l.source = 'google_sheets' and l.external_ref = ${externalRef}
      )
      on conflict (client_id, source, external_ref) do nothing
      returning id, duplicate_of`;
    if (!row) existing++;
    else if (row.duplicate_of) duplicates++;
    else created++;
  }

  // The rows after this chunk are the next job's (keyed, so enqueued once however often this one runs).
  const next = read.rows[CHUNK]?.rowNumber ?? null;
  if (next !== null) {
    await sql`select app.enqueue_job(${job.client_id}, 'sheets.import', ${
      sql.json({ ...job.payload, from_row: next })
    },
      ${`${job.idempotency_key}:${next}`}, ${config.queue.max_attempts})`;
  }
  return {
    spreadsheet_id: target.spreadsheetId,
    sheet: target.sheet,
    from_row: fromRow,
    rows: chunk.length,
    created,
    duplicates,
    existing,
    skipped_platform_rows: skipped,
    invalid_rows: invalid.length,
    invalid,
    next_from_row: next,
  };
}
