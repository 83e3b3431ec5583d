/**
 * Google Sheets client for the integrations: idempotent lead appends, row reads for imports and a
 * connection test, authenticated as a client's service account.
 *
 * API calls go through googleapis with a per-call `rootUrl` (the client-level one is unreliable) so the
 * base URL comes from config.toml and tests reach the emulator. googleapis' own service-account client
 * always posts to Google's token host, so the JWT-bearer exchange is done here with jose against the
 * configured token URL and the access token is handed to a plain OAuth2 client.
 *
 * Retries are ours, not the library's: googleapis retries GETs but never POSTs, and an append whose response
 * was lost must re-read the sheet before it is sent again, which only this module knows how to do.
 */
import { google } from "googleapis";
import { importPKCS8, SignJWT } from "jose";

/** The fields of a Google service-account JSON key file that the client uses. */
export interface ServiceAccountKey {
  type?: string;
  project_id?: string;
  /** Sent as the assertion's `kid` so Google picks the right public key. */
  private_key_id?: string;
  /** PKCS#8 PEM, as in the key file. */
  private_key: string;
  client_email: string;
  client_id?: string;
  /** Ignored: the configured token URL is used, so a stored key cannot redirect the assertion. */
  token_uri?: string;
}

export interface RetryPolicy {
  /** Total attempts, the first included. */
  attempts: number;
  baseMs: number;
  maxMs: number;
}

export interface SheetsClientOptions {
  /** Sheets API root (GOOGLE_SHEETS_URL), e.g. https://sheets.googleapis.com */
  sheetsUrl: string;
  /** OAuth token endpoint (GOOGLE_TOKEN_URL), e.g. https://oauth2.googleapis.com/token */
  tokenUrl: string;
  fetch?: typeof fetch;
  sleep?: (ms: number) => Promise<void>;
  retry?: Partial<RetryPolicy>;
  /** Per-request timeout; a timed-out request counts as a network error and is retried. */
  timeoutMs?: number;
  /** Clock in ms, for token expiry. */
  now?: () => number;
}

/** A failed Sheets or token call. `reason` is Google's error status (or the OAuth error code). */
export class SheetsApiError extends Error {
  constructor(
    message: string,
    /** HTTP status; 0 when no HTTP answer is involved (network failure, timeout, bad key, sheet layout). */
    readonly status: number,
    /** e.g. RESOURCE_EXHAUSTED, PERMISSION_DENIED, NOT_FOUND, INVALID_ARGUMENT, UNAUTHENTICATED, invalid_grant. */
    readonly reason: string,
    readonly retryable: boolean,
    /** Retry-After in ms, when Google sent one; callers scheduling their own retry should wait at least this. */
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "SheetsApiError";
  }
}

/** A sheet column: its header text and the lead field (dotted path, e.g. "custom.budget") that fills it. */
export interface SheetColumn {
  header: string;
  field: string;
}

export interface AppendLeadsInput {
  key: ServiceAccountKey;
  spreadsheetId: string;
  sheet: string;
  columns: SheetColumn[];
  rows: Record<string, unknown>[];
  /** Header of the column holding each row's lead id, which makes appends idempotent. */
  idColumnHeader?: string;
  /** Field of a row holding its lead id. */
  idField?: string;
}

export interface AppendLeadsResult {
  appended: number;
  /** Rows whose lead id was already in the sheet (or repeated in the batch). */
  skipped: number;
  updatedRange?: string;
}

export interface ReadRowsInput {
  key: ServiceAccountKey;
  spreadsheetId: string;
  sheet: string;
  /** First data row to read (1-based, at least 2: row 1 is the header). */
  fromRow?: number;
  /** Most rows to read, for batched imports. */
  limit?: number;
}

export interface ReadRowsResult {
  header: string[];
  /** Non-empty rows keyed by header; `rowNumber` is the sheet row, a stable idempotency reference. */
  rows: { rowNumber: number; values: Record<string, string> }[];
}

export interface SheetsClient {
  appendLeads(input: AppendLeadsInput): Promise<AppendLeadsResult>;
  readRows(input: ReadRowsInput): Promise<ReadRowsResult>;
  testConnection(input: { key: ServiceAccountKey; spreadsheetId: string }): Promise<string>;
}

const SCOPE = "https://www.googleapis.com/auth/spreadsheets";
const JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";
// Google refuses assertions living longer than an hour.
const ASSERTION_LIFETIME_S = 3600;
// Renew a little early so a token never expires between cache lookup and use.
const TOKEN_EARLY_RENEWAL_MS = 60_000;
const DEFAULT_RETRY: RetryPolicy = { attempts: 5, baseMs: 250, maxMs: 10_000 };

/** Creates a Sheets client bound to the configured API and token URLs. */
export function createSheetsClient(options: SheetsClientOptions): SheetsClient {
  const fetchFn = options.fetch ?? fetch;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const retry: RetryPolicy = { ...DEFAULT_RETRY, ...options.retry };
  const now = options.now ?? Date.now;
  const api = google.sheets({ version: "v4" });
  const tokens = new Map<string, { token: string; expiresAt: number }>();
  // Concurrent callers for one account share a single exchange instead of racing several.
  const pending = new Map<string, Promise<string>>();

  const methodOptions = {
    rootUrl: options.sheetsUrl,
    // Our loop owns retries (see the module comment); the library's would double them for GETs.
    retry: false,
    fetchImplementation: fetchFn,
    timeout: options.timeoutMs ?? 30_000,
  };

  function cacheKey(key: ServiceAccountKey): string {
    return `${key.client_email}\n${key.private_key_id ?? ""}`;
  }

  async function accessToken(key: ServiceAccountKey): Promise<string> {
    const id = cacheKey(key);
    const cached = tokens.get(id);
    if (cached && cached.expiresAt - TOKEN_EARLY_RENEWAL_MS > now()) return cached.token;
    let exchange = pending.get(id);
    if (!exchange) {
      exchange = exchangeAssertion(key).finally(() => pending.delete(id));
      pending.set(id, exchange);
    }
    return await exchange;
  }

  async function exchangeAssertion(key: ServiceAccountKey): Promise<string> {
    let signingKey: CryptoKey;
    try {
      signingKey = await importPKCS8(key.private_key, "RS256");
    } catch {
      throw new SheetsApiError(
        "Service account private key is not a PKCS#8 PEM RSA key",
        0,
        "invalid_key",
        false,
      );
    }
    const iat = Math.floor(now() / 1000);
    const assertion = await new SignJWT({ scope: SCOPE })
      .setProtectedHeader({
        alg: "RS256",
        typ: "JWT",
        ...(key.private_key_id ? { kid: key.private_key_id } : {}),
      })
      .setIssuer(key.client_email)
      .setAudience(options.tokenUrl)
      .setIssuedAt(iat)
      .setExpirationTime(iat + ASSERTION_LIFETIME_S)
      .sign(signingKey);

    let response: Response;
    try {
      response = await fetchFn(options.tokenUrl, {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ grant_type: JWT_BEARER, assertion }),
        signal: AbortSignal.timeout(methodOptions.timeout),
      });
    } catch (error) {
      throw new SheetsApiError(`Token request failed: ${errorMessage(error)}`, 0, "NETWORK", true);
    }
    let body: Record<string, unknown> = {};
    try {
      body = await response.json();
    } catch {
      // A proxy's HTML error page: the status alone decides.
    }
    if (!response.ok) {
      const reason = typeof body.error === "string" ? body.error : `HTTP_${response.status}`;
      const description = typeof body.error_description === "string" ? `: ${body.error_description}` : "";
      throw new SheetsApiError(
        `Token request for "${key.client_email}" was refused (${reason}${description})`,
        response.status,
        reason,
        isRetryableStatus(response.status),
        retryAfterMs(response.headers.get("retry-after"), now()),
      );
    }
    if (typeof body.access_token !== "string" || typeof body.expires_in !== "number") {
      throw new SheetsApiError(
        "Token response lacks access_token or expires_in",
        response.status,
        "BAD_RESPONSE",
        true,
      );
    }
    tokens.set(cacheKey(key), { token: body.access_token, expiresAt: now() + body.expires_in * 1000 });
    return body.access_token;
  }

  /**
   * Runs one Sheets call with the account's token. A 401 means the cached token was revoked or expired
   * early, so the cache entry is dropped and the call repeated once with a fresh token.
   */
  async function authorized<T>(key: ServiceAccountKey, call: (auth: OAuth2) => Promise<T>): Promise<T> {
    for (let fresh = false;; fresh = true) {
      const auth = new google.auth.OAuth2();
      auth.setCredentials({ access_token: await accessToken(key) });
      try {
        return await call(auth);
      } catch (error) {
        const failure = toSheetsError(error, now());
        if (failure.status !== 401 || fresh) throw failure;
        tokens.delete(cacheKey(key));
      }
    }
  }

  /** Repeats `operation` on retryable failures: exponential backoff with jitter, or Retry-After when sent. */
  async function withRetry<T>(operation: () => Promise<T>): Promise<T> {
    for (let attempt = 1;; attempt++) {
      try {
        return await operation();
      } catch (error) {
        const failure = toSheetsError(error, now());
        if (!failure.retryable || attempt >= retry.attempts) throw failure;
        // A Retry-After longer than we are willing to block is left to the caller's scheduler.
        if (failure.retryAfterMs !== undefined && failure.retryAfterMs > retry.maxMs) throw failure;
        const backoff = Math.min(retry.maxMs, retry.baseMs * 2 ** (attempt - 1));
        await sleep(failure.retryAfterMs ?? Math.round(backoff / 2 + Math.random() * backoff / 2));
      }
    }
  }

  async function getValues(
    key: ServiceAccountKey,
    spreadsheetId: string,
    range: string,
  ): Promise<string[][]> {
    const response = await authorized(
      key,
      (auth) =>
        api.spreadsheets.values.get({ auth, spreadsheetId, range, majorDimension: "ROWS" }, methodOptions),
    );
    return (response.data.values ?? []).map((row) => row.map((cell) => String(cell ?? "")));
  }

  async function readHeader(key: ServiceAccountKey, spreadsheetId: string, sheet: string): Promise<string[]> {
    const [header = []] = await getValues(key, spreadsheetId, `${quoteSheetName(sheet)}!1:1`);
    return header.map((cell) => cell.trim());
  }

  return {
    async appendLeads(input) {
      const { key, spreadsheetId, sheet, columns, rows } = input;
      const idColumnHeader = input.idColumnHeader ?? "Lead ID";
      const idField = input.idField ?? "id";
      const configured = [...columns.filter((c) => c.header !== idColumnHeader), {
        header: idColumnHeader,
        field: idField,
      }];
      const leads = rows.map((row) => ({ row, id: String(cellValue(fieldValue(row, idField))).trim() }));
      if (leads.some((lead) => lead.id === "")) {
        throw new Error(`Every row needs a lead id in field "${idField}"`);
      }

      // Each attempt re-reads the sheet, so an append that took effect but whose response was lost is
      // recognised by its lead ids instead of being sent a second time.
      // Ids sent by an attempt whose outcome is unknown (lost response): found in the sheet later, they
      // count as appended by us rather than as rows that were already there.
      const sentBefore = new Set<string>();
      return await withRetry(async () => {
        const existingHeader = await readHeader(key, spreadsheetId, sheet);
        const header = existingHeader.length > 0 ? existingHeader : configured.map((c) => c.header);
        const positions = columnPositions(sheet, header, configured);
        const width = Math.max(...positions.values()) + 1;

        const inSheet = new Set<string>();
        if (existingHeader.length > 0) {
          const idLetter = columnLetters(positions.get(idColumnHeader)! + 1);
          const ids = await getValues(
            key,
            spreadsheetId,
            `${quoteSheetName(sheet)}!${idLetter}2:${idLetter}`,
          );
          for (const [id] of ids) if (id) inSheet.add(id.trim());
        }

        const values: (string | number | boolean)[][] = [];
        const sending: string[] = [];
        const handled = new Set<string>();
        let skipped = 0;
        let recovered = 0;
        for (const { row, id } of leads) {
          if (handled.has(id)) {
            skipped++;
            continue;
          }
          handled.add(id);
          if (inSheet.has(id)) {
            if (sentBefore.has(id)) recovered++;
            else skipped++;
            continue;
          }
          const line: (string | number | boolean)[] = Array(width).fill("");
          for (const column of configured) {
            line[positions.get(column.header)!] = cellValue(fieldValue(row, column.field));
          }
          values.push(line);
          sending.push(id);
        }
        if (values.length === 0) return { appended: recovered, skipped };
        // An empty sheet gets its header in the same append: one write, and never a header without rows
        // or rows without a header, whatever fails in between.
        if (existingHeader.length === 0) values.unshift(header);

        for (const id of sending) sentBefore.add(id);
        const response = await authorized(key, (auth) =>
          api.spreadsheets.values.append({
            auth,
            spreadsheetId,
            range: `${quoteSheetName(sheet)}!A1`,
            // RAW: a lead typing "=HYPERLINK(...)" or "+1 555" must be stored as the text it is.
            valueInputOption: "RAW",
            insertDataOption: "INSERT_ROWS",
            requestBody: { majorDimension: "ROWS", values },
          }, methodOptions));
        return {
          appended: sending.length + recovered,
          skipped,
          updatedRange: response.data.updates?.updatedRange ?? undefined,
        };
      });
    },

    async readRows(input) {
      const { key, spreadsheetId, sheet } = input;
      const fromRow = input.fromRow ?? 2;
      if (!Number.isInteger(fromRow) || fromRow < 2) {
        throw new Error(`fromRow must be an integer >= 2, got ${fromRow}`);
      }
      return await withRetry(async () => {
        const header = await readHeader(key, spreadsheetId, sheet);
        if (header.length === 0) return { header, rows: [] };
        const lastLetter = columnLetters(header.length);
        const end = input.limit === undefined ? lastLetter : `${lastLetter}${fromRow + input.limit - 1}`;
        let values: string[][];
        try {
          values = await getValues(key, spreadsheetId, `${quoteSheetName(sheet)}!A${fromRow}:${end}`);
        } catch (error) {
          // Reading past the sheet's last row is Google's 400, but for an import it just means "nothing new".
          if (error instanceof SheetsApiError && /exceeds grid limits/.test(error.message)) {
            return { header, rows: [] };
          }
          throw error;
        }
        const rows: ReadRowsResult["rows"] = [];
        values.forEach((line, index) => {
          if (line.every((cell) => cell.trim() === "")) return;
          // No prototype: a column named "constructor" or "__proto__" is an ordinary key (the first of a name).
          const record: Record<string, string> = Object.create(null);
          header.forEach((name, column) => {
            if (name !== "" && !Object.hasOwn(record, name)) record[name] = line[column] ?? "";
          });
          rows.push({ rowNumber: fromRow + index, values: record });
        });
        return { header, rows };
      });
    },

    async testConnection({ key, spreadsheetId }) {
      const response = await withRetry(() =>
        authorized(
          key,
          (auth) => api.spreadsheets.get({ auth, spreadsheetId, fields: "properties.title" }, methodOptions),
        )
      );
      return response.data.properties?.title ?? "";
    },
  };
}

type OAuth2 = InstanceType<typeof google.auth.OAuth2>;

/** Lead fields a sheet column can hold (besides `custom.<key>`): the API validates mappings against them and
 * the worker writes and imports them. */
export const LEAD_COLUMN_FIELDS = [
  "id",
  "full_name",
  "email",
  "phone",
  "source",
  "status",
  "product_id",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "utm_term",
  "utm_content",
  "created_at",
] as const;

/**
 * Quotes a sheet name for A1 notation: always quoted (harmless, and safe for names like "CO2" that look
 * like cells), with single quotes doubled.
 */
export function quoteSheetName(name: string): string {
  return `'${name.replaceAll("'", "''")}'`;
}

/** Where each configured column goes in the sheet; a header missing from an existing sheet is an error. */
function columnPositions(sheet: string, header: string[], columns: SheetColumn[]): Map<string, number> {
  const positions = new Map<string, number>();
  const missing: string[] = [];
  for (const column of columns) {
    const index = header.indexOf(column.header);
    if (index === -1) missing.push(column.header);
    else positions.set(column.header, index);
  }
  if (missing.length > 0) {
    // Writing anyway would put values under the wrong headings or drop them silently.
    throw new SheetsApiError(
      `Sheet "${sheet}" header row lacks ${missing.map((h) => `"${h}"`).join(", ")}`,
      0,
      "HEADER_MISMATCH",
      false,
    );
  }
  return positions;
}

function fieldValue(row: Record<string, unknown>, path: string): unknown {
  let value: unknown = row;
  for (const part of path.split(".")) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string, unknown>)[part];
  }
  return value;
}

function cellValue(value: unknown): string | number | boolean {
  if (value === null || value === undefined) return "";
  if (typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "number") return Number.isFinite(value) ? value : String(value);
  if (value instanceof Date) return value.toISOString();
  return JSON.stringify(value);
}

function columnLetters(n: number): string {
  let letters = "";
  for (; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters;
  return letters;
}

function isRetryableStatus(status: number): boolean {
  return status === 429 || status >= 500;
}

function retryAfterMs(header: string | null | undefined, nowMs: number): number | undefined {
  if (!header) return undefined;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds * 1000);
  const date = Date.parse(header);
  return Number.isNaN(date) ? undefined : Math.max(0, date - nowMs);
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/** Maps a googleapis (gaxios) error to SheetsApiError; other errors pass through untouched. */
function toSheetsError(error: unknown, nowMs: number): SheetsApiError {
  if (error instanceof SheetsApiError) return error;
  if (typeof error !== "object" || error === null || !("config" in error)) throw error;
  const response = (error as { response?: { status: number; data?: unknown; headers?: Headers } }).response;
  if (!response) {
    return new SheetsApiError(`Sheets request failed: ${errorMessage(error)}`, 0, "NETWORK", true);
  }
  const body = (response.data as { error?: { message?: string; status?: string } } | undefined)?.error;
  const reason = body?.status ?? `HTTP_${response.status}`;
  return new SheetsApiError(
    `Sheets API ${response.status} ${reason}: ${body?.message ?? errorMessage(error)}`,
    response.status,
    reason,
    isRetryableStatus(response.status),
    retryAfterMs(response.headers?.get("retry-after"), nowMs),
  );
}
