/**
 * CSV for the lead export: RFC 4180 (CRLF line ends, fields quoted when they hold a comma, quote, CR or LF,
 * quotes doubled) with spreadsheet formula-injection protection, streamed page by page.
 */
import { LEAD_COLUMNS, type LeadRow } from "./leads.queries.ts";

// Spreadsheets run a cell starting with one of these as a formula (OWASP "CSV injection").
const FORMULA_START = /^[=+\-@\t\r]/;

/** One CSV field: text as is, objects as JSON, null as empty; formula-like text gets a leading quote. */
export function csvCell(value: unknown): string {
  if (value === null || value === undefined) return "";
  let text = typeof value === "object" ? JSON.stringify(value) : String(value);
  if (FORMULA_START.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** One CSV record, CRLF-terminated. */
export function csvRow(values: unknown[]): string {
  return values.map(csvCell).join(",") + "\r\n";
}

/** The header row of the lead export. */
export const LEAD_CSV_HEADER = csvRow([...LEAD_COLUMNS]);

/** A lead as a CSV record, in LEAD_COLUMNS order. */
export function leadCsvRow(lead: LeadRow): string {
  return csvRow(LEAD_COLUMNS.map((column) => lead[column]));
}

/** One page of leads and whether more follow. */
export type ExportPage = { rows: LeadRow[]; more: boolean };

/**
 * Streams the header and then pages from fetchPage (newest first, keyset position of the last row) until
 * the list ends or maxRows were written. The first page is fetched by the caller before responding, so a
 * failure there is still an ordinary error response; a later failure aborts the stream.
 */
export function leadCsvStream(
  first: ExportPage,
  fetchPage: (before: [string, string], limit: number) => Promise<ExportPage>,
  options: { maxRows: number; pageSize: number; onError: (error: unknown) => void },
): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  let page: ExportPage | undefined = first;
  let written = 0;
  let last: LeadRow | undefined;
  return new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(encoder.encode(LEAD_CSV_HEADER));
    },
    async pull(controller) {
      try {
        if (!page) {
          const limit = Math.min(options.pageSize, options.maxRows - written);
          page = await fetchPage([last!.created_at, last!.id], limit);
        }
        const rows = page.rows.slice(0, options.maxRows - written);
        if (rows.length) controller.enqueue(encoder.encode(rows.map(leadCsvRow).join("")));
        written += rows.length;
        last = rows[rows.length - 1] ?? last;
        const more = page.more && rows.length > 0 && written < options.maxRows;
        page = undefined;
        if (!more) controller.close();
      } catch (error) {
        options.onError(error);
        controller.error(error);
      }
    },
  });
}
