/**
 * A strict local emulator of Google's OAuth 2.0 token endpoint (service-account JWT bearer grant) and the
 * Sheets API v4 spreadsheets.get / values.get / values.append methods. It checks requests the way Google
 * does (assertion signature, audience, lifetime and scope; bearer token; sharing; A1 ranges; required
 * query parameters) and answers with Google's documented response and error shapes, so the real client
 * (googleapis + our token exchange) is what the tests exercise.
 *
 * Limits, on purpose: formulas are not evaluated (a HYPERLINK shows its label, any other formula its own
 * text), append finds the table as "everything down to the last non-empty row", and only the field masks
 * made of dotted paths are understood.
 */
import {
  compactVerify,
  decodeJwt,
  decodeProtectedHeader,
  exportPKCS8,
  exportSPKI,
  generateKeyPair,
} from "jose";
import type { ServiceAccountKey } from "../../functions/_shared/integrations/sheets.ts";

/** What a recorded request was, as far as the emulator could tell. */
export type RequestKind = "token" | "spreadsheets.get" | "values.get" | "values.append" | "unknown";

/** One request the emulator received, with the status it answered. */
export interface RecordedRequest {
  kind: RequestKind;
  method: string;
  path: string;
  query: Record<string, string>;
  /** Parsed JSON or form body (form bodies as an object of fields); undefined when there was none. */
  body: unknown;
  authorization: string | null;
  spreadsheetId?: string;
  /** The A1 range from the path of a values call, URL-decoded. */
  range?: string;
  /** The valueInputOption an append asked for, so tests can assert RAW. */
  valueInputOption?: string;
  /** The response status, or "network" when the connection was dropped. */
  status?: number | "network";
}

/** Selects requests by kind or by predicate. */
export type Matcher = RequestKind | ((request: RecordedRequest) => boolean);

/**
 * A failure to inject. A status answers with that status (and Google's error body for it unless `body`
 * is given); "network" drops the connection. With `afterApply` the request is carried out first and only
 * its response is lost, which is what a timeout after a successful write looks like to a client.
 */
export type Fault =
  | { status: number; body?: unknown; headers?: Record<string, string>; afterApply?: boolean }
  | "network"
  | { network: true; afterApply?: boolean };

/** A stored cell: RAW input and USER_ENTERED literals keep their value; USER_ENTERED "=..." is a formula. */
export interface Cell {
  value: string | number | boolean;
  formula?: string;
}

export interface SpreadsheetSpec {
  title: string;
  /** Sheet (tab) titles, in order; each gets Google's default 1000 x 26 grid. */
  sheets: string[];
  /** Service-account emails with edit access. */
  sharedWith: string[];
  columnCount?: number;
  rowCount?: number;
}

export interface GoogleEmulator {
  /** Sheets API root, as GOOGLE_SHEETS_URL (googleapis appends /v4/...). */
  sheetsUrl: string;
  /** OAuth token endpoint, as GOOGLE_TOKEN_URL. */
  tokenUrl: string;
  /** Creates a service account with a fresh RSA key; returns its JSON key file. */
  addServiceAccount(name?: string): Promise<ServiceAccountKey>;
  addSpreadsheet(id: string, spec: SpreadsheetSpec): void;
  /** Replaces a sheet's contents with plain strings (fixtures). */
  setRows(spreadsheetId: string, sheet: string, rows: string[][]): void;
  /** A sheet's displayed values, trailing empty cells and rows trimmed. */
  rows(spreadsheetId: string, sheet: string): string[][];
  /** A sheet's stored cells (null for empty), to tell text from formulas. */
  cells(spreadsheetId: string, sheet: string): (Cell | null)[][];
  /** Injects `fault` into the next `times` requests that match. */
  failNext(matcher: Matcher, fault: Fault, times?: number): void;
  /** Delays the responses to the next `times` matching requests (default: all, until `clearFaults`) by `ms`. */
  delay(matcher: Matcher, ms: number, times?: number): void;
  /** Removes pending faults and delays. */
  clearFaults(): void;
  /** Invalidates every issued access token, as a revoked or expired token would be. */
  revokeTokens(): void;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  stop(): Promise<void>;
}

/** Google's 429 for the per-user write quota, as Sheets sends it. */
export function quotaExceeded(retryAfterSeconds?: number): Fault {
  return {
    status: 429,
    headers: retryAfterSeconds === undefined ? undefined : { "retry-after": String(retryAfterSeconds) },
    body: googleError(
      429,
      "Quota exceeded for quota metric 'Write requests' and limit 'Write requests per minute per user' of " +
        "service 'sheets.googleapis.com' for consumer 'project_number:000000000000'.",
    ),
  };
}

/** A 500 INTERNAL or 503 UNAVAILABLE, optionally after the request took effect. */
export function serverError(status: 500 | 503 = 503, afterApply = false): Fault {
  return { status, afterApply };
}

const SPREADSHEETS_SCOPE = "https://www.googleapis.com/auth/spreadsheets";
const ACCEPTED_SCOPES = [SPREADSHEETS_SCOPE, "https://www.googleapis.com/auth/drive"];
const TOKEN_LIFETIME_S = 3599;
const MAX_ASSERTION_LIFETIME_S = 3600;
// Google tolerates some clock skew on iat; a minute is enough for tests and still catches future-dated tokens.
const CLOCK_SKEW_S = 60;

const STATUS_NAMES: Record<number, string> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ABORTED",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  503: "UNAVAILABLE",
};
const DEFAULT_MESSAGES: Record<number, string> = {
  500: "Internal error encountered.",
  503: "The service is currently unavailable.",
};

interface Sheet {
  sheetId: number;
  title: string;
  cells: (Cell | null)[][];
  rowCount: number;
  columnCount: number;
}

interface Spreadsheet {
  id: string;
  title: string;
  sharedWith: Set<string>;
  sheets: Sheet[];
}

interface Account {
  keyId: string;
  publicKey: CryptoKey;
}

interface IssuedToken {
  email: string;
  scopes: string[];
  expiresAt: number;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly body: unknown,
    readonly headers: Record<string, string> = {},
  ) {
    super(`HTTP ${status}`);
  }
}

/** Starts the emulator on 127.0.0.1 with a free port. `now` (ms) lets a test move the clock. */
export function startGoogleEmulator(options: { now?: () => number } = {}): GoogleEmulator {
  const now = options.now ?? Date.now;
  const accounts = new Map<string, Account>();
  const tokens = new Map<string, IssuedToken>();
  const spreadsheets = new Map<string, Spreadsheet>();
  const faults: { matcher: Matcher; fault: Fault; remaining: number }[] = [];
  const delays: { matcher: Matcher; ms: number; remaining: number }[] = [];
  const requests: RecordedRequest[] = [];

  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, handle);
  const origin = `http://127.0.0.1:${server.addr.port}`;
  const tokenUrl = `${origin}/token`;

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const recorded = await record(request, url);
    requests.push(recorded);

    const delay = delays.find((d) => d.remaining > 0 && matches(d.matcher, recorded));
    if (delay) {
      delay.remaining--;
      await new Promise((resolve) => setTimeout(resolve, delay.ms));
    }
    const fault = takeFault(recorded);
    if (fault && !afterApply(fault)) return answerFault(fault, recorded);

    let response: Response;
    try {
      response = await route(request, recorded);
    } catch (error) {
      if (!(error instanceof HttpError)) throw error;
      response = json(error.status, error.body, error.headers);
    }
    if (fault) return answerFault(fault, recorded);
    recorded.status = response.status;
    return response;
  }

  async function record(request: Request, url: URL): Promise<RecordedRequest> {
    const text = await request.text();
    let body: unknown;
    if (text) {
      body = request.headers.get("content-type")?.includes("application/x-www-form-urlencoded")
        ? Object.fromEntries(new URLSearchParams(text))
        : parseJson(text);
    }
    const recorded: RecordedRequest = {
      kind: "unknown",
      method: request.method,
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body,
      authorization: request.headers.get("authorization"),
    };
    if (url.pathname === "/token") {
      recorded.kind = "token";
      return recorded;
    }
    const match = url.pathname.match(/^\/v4\/spreadsheets\/([^/]+)(?:\/values\/(.+?)(:append)?)?$/);
    if (match) {
      recorded.spreadsheetId = decodeURIComponent(match[1]);
      if (match[2] === undefined) {
        recorded.kind = "spreadsheets.get";
      } else {
        recorded.range = decodeURIComponent(match[2]);
        recorded.kind = match[3] ? "values.append" : "values.get";
        if (match[3]) recorded.valueInputOption = url.searchParams.get("valueInputOption") ?? undefined;
      }
    }
    return recorded;
  }

  function takeFault(recorded: RecordedRequest): Fault | undefined {
    const entry = faults.find((f) => f.remaining > 0 && matches(f.matcher, recorded));
    if (!entry) return undefined;
    entry.remaining--;
    return entry.fault;
  }

  function answerFault(fault: Fault, recorded: RecordedRequest): Response {
    if (fault === "network" || "network" in fault) {
      recorded.status = "network";
      // Headers go out, then the body errors: the client sees the connection die before a usable answer.
      // Deno prints the stream's error once on stderr; a string keeps that to one line.
      return new Response(
        new ReadableStream({ start: (c) => c.error("google emulator: injected connection drop") }),
      );
    }
    recorded.status = fault.status;
    const body = fault.body ??
      (recorded.kind === "token"
        ? { error: "internal_failure", error_description: "Backend Error" }
        : googleError(fault.status, DEFAULT_MESSAGES[fault.status] ?? "Injected failure."));
    return json(fault.status, body, fault.headers);
  }

  function route(request: Request, recorded: RecordedRequest): Promise<Response> | Response {
    switch (recorded.kind) {
      case "token":
        if (request.method !== "POST") throw new HttpError(405, googleError(405, "Method not allowed."));
        return exchangeToken(request, recorded);
      case "spreadsheets.get":
        if (request.method !== "GET") throw notFound();
        return getSpreadsheet(recorded);
      case "values.get":
        if (request.method !== "GET") throw notFound();
        return getValues(recorded);
      case "values.append":
        if (request.method !== "POST") throw notFound();
        return appendValues(recorded);
      default:
        throw notFound();
    }
  }

  async function exchangeToken(request: Request, recorded: RecordedRequest): Promise<Response> {
    if (!request.headers.get("content-type")?.includes("application/x-www-form-urlencoded")) {
      throw oauthError("invalid_request", "Content-Type must be application/x-www-form-urlencoded");
    }
    const form = (recorded.body ?? {}) as Record<string, string>;
    if (form.grant_type !== "urn:ietf:params:oauth:grant-type:jwt-bearer") {
      throw oauthError("unsupported_grant_type", `Invalid grant_type: ${form.grant_type ?? ""}`);
    }
    const assertion = form.assertion;
    if (!assertion) throw oauthError("invalid_request", "Missing required parameter: assertion");

    let header: ReturnType<typeof decodeProtectedHeader>;
    let claims: ReturnType<typeof decodeJwt>;
    try {
      header = decodeProtectedHeader(assertion);
      claims = decodeJwt(assertion);
    } catch {
      throw oauthError("invalid_grant", "Invalid JWT Signature.");
    }
    const account = typeof claims.iss === "string" ? accounts.get(claims.iss) : undefined;
    if (!account) throw oauthError("invalid_grant", "Invalid grant: account not found");
    if (header.alg !== "RS256" || (header.kid !== undefined && header.kid !== account.keyId)) {
      throw oauthError("invalid_grant", "Invalid JWT Signature.");
    }
    try {
      await compactVerify(assertion, account.publicKey, { algorithms: ["RS256"] });
    } catch {
      throw oauthError("invalid_grant", "Invalid JWT Signature.");
    }
    if (claims.aud !== tokenUrl) throw oauthError("invalid_grant", "Invalid JWT: Failed audience check.");
    const nowS = Math.floor(now() / 1000);
    const { iat, exp } = claims;
    if (
      typeof iat !== "number" || typeof exp !== "number" || exp - iat > MAX_ASSERTION_LIFETIME_S ||
      exp <= nowS ||
      iat > nowS + CLOCK_SKEW_S || exp <= iat
    ) {
      throw oauthError(
        "invalid_grant",
        "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. " +
          "Check your iat and exp values in the JWT claim.",
      );
    }
    const scopes = typeof claims.scope === "string" ? claims.scope.split(" ").filter(Boolean) : [];
    if (scopes.length === 0) {
      throw oauthError("invalid_scope", "Invalid OAuth scope or ID token audience provided.");
    }

    const accessToken = `ya29.emulator-${crypto.randomUUID()}`;
    tokens.set(accessToken, { email: claims.iss!, scopes, expiresAt: now() + TOKEN_LIFETIME_S * 1000 });
    return json(200, { access_token: accessToken, expires_in: TOKEN_LIFETIME_S, token_type: "Bearer" });
  }

  /** Authenticates the caller and loads the spreadsheet it may use; the order of checks is Google's. */
  function authorize(recorded: RecordedRequest): Spreadsheet {
    const authorization = recorded.authorization;
    const wwwAuthenticate = { "www-authenticate": 'Bearer realm="https://accounts.google.com/"' };
    if (!authorization?.startsWith("Bearer ")) {
      throw new HttpError(
        401,
        googleError(
          401,
          "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie " +
            "or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        ),
        wwwAuthenticate,
      );
    }
    const token = tokens.get(authorization.slice("Bearer ".length).trim());
    if (!token || token.expiresAt <= now()) {
      throw new HttpError(
        401,
        googleError(
          401,
          "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other " +
            "valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        ),
        wwwAuthenticate,
      );
    }
    if (!token.scopes.some((scope) => ACCEPTED_SCOPES.includes(scope))) {
      throw new HttpError(403, googleError(403, "Request had insufficient authentication scopes."));
    }
    const spreadsheet = spreadsheets.get(recorded.spreadsheetId!);
    if (!spreadsheet) throw new HttpError(404, googleError(404, "Requested entity was not found."));
    if (!spreadsheet.sharedWith.has(token.email)) {
      throw new HttpError(403, googleError(403, "The caller does not have permission"));
    }
    return spreadsheet;
  }

  function getSpreadsheet(recorded: RecordedRequest): Response {
    const spreadsheet = authorize(recorded);
    const full = {
      spreadsheetId: spreadsheet.id,
      properties: { title: spreadsheet.title, locale: "en_US", autoRecalc: "ON_CHANGE", timeZone: "Etc/GMT" },
      sheets: spreadsheet.sheets.map((sheet, index) => ({
        properties: {
          sheetId: sheet.sheetId,
          title: sheet.title,
          index,
          sheetType: "GRID",
          gridProperties: { rowCount: sheet.rowCount, columnCount: sheet.columnCount },
        },
      })),
      spreadsheetUrl: `https://docs.google.com/spreadsheets/d/${spreadsheet.id}/edit`,
    };
    const fields = recorded.query.fields;
    return json(200, fields ? pickFields(full, fields.split(",").map((f) => f.trim().split("."))) : full);
  }

  function getValues(recorded: RecordedRequest): Response {
    const spreadsheet = authorize(recorded);
    const majorDimension = enumParam(recorded.query, "majorDimension", "major_dimension", "Dimension", [
      "ROWS",
      "COLUMNS",
    ], "ROWS");
    const render = enumParam(
      recorded.query,
      "valueRenderOption",
      "value_render_option",
      "ValueRenderOption",
      [
        "FORMATTED_VALUE",
        "UNFORMATTED_VALUE",
        "FORMULA",
      ],
      "FORMATTED_VALUE",
    );
    const { sheet, box } = resolveRange(spreadsheet, recorded.range!);
    let values: unknown[][] = [];
    for (let r = box.r1; r <= box.r2; r++) {
      const row: unknown[] = [];
      for (let c = box.c1; c <= box.c2; c++) {
        row.push(renderCell(sheet.cells[r - 1]?.[c - 1] ?? null, render));
      }
      values.push(row);
    }
    if (majorDimension === "COLUMNS") values = transpose(values);
    values = trimGrid(values);
    const body: Record<string, unknown> = { range: a1(sheet.title, box), majorDimension };
    // Google leaves `values` out entirely when the range holds nothing.
    if (values.length > 0) body.values = values;
    return json(200, body);
  }

  function appendValues(recorded: RecordedRequest): Response {
    const spreadsheet = authorize(recorded);
    const { query } = recorded;
    if (query.valueInputOption === undefined) {
      throw new HttpError(400, googleError(400, "'valueInputOption' is required but not specified"));
    }
    const inputOption = enumParam(query, "valueInputOption", "value_input_option", "ValueInputOption", [
      "RAW",
      "USER_ENTERED",
    ], "RAW");
    const insertOption = enumParam(query, "insertDataOption", "insert_data_option", "InsertDataOption", [
      "OVERWRITE",
      "INSERT_ROWS",
    ], "OVERWRITE");
    const body = recorded.body;
    if (body === undefined || body === null || typeof body !== "object" || Array.isArray(body)) {
      throw new HttpError(
        400,
        googleError(400, "Invalid JSON payload received. Expected a ValueRange object."),
      );
    }
    const valueRange = body as { range?: unknown; majorDimension?: unknown; values?: unknown };
    if (valueRange.range !== undefined && valueRange.range !== recorded.range) {
      throw new HttpError(
        400,
        googleError(
          400,
          `Requested writing within range [${recorded.range}], but tried writing to [${
            String(valueRange.range)
          }]`,
        ),
      );
    }
    let values = parseValues(valueRange.values);
    if (valueRange.majorDimension === "COLUMNS") values = transpose(values);
    else if (valueRange.majorDimension !== undefined && valueRange.majorDimension !== "ROWS") {
      throw invalidEnum("data.major_dimension", "Dimension", valueRange.majorDimension);
    }

    const { sheet, box } = resolveRange(spreadsheet, recorded.range!);
    let lastRow = 0;
    for (let r = sheet.cells.length; r >= box.r1; r--) {
      if (sheet.cells[r - 1]?.some((cell) => cell !== null)) {
        lastRow = r;
        break;
      }
    }
    const response: Record<string, unknown> = { spreadsheetId: spreadsheet.id };
    if (lastRow > 0) {
      const lastColumn = Math.max(...sheet.cells.slice(box.r1 - 1, lastRow).map(usedWidth), box.c1);
      response.tableRange = a1(sheet.title, { r1: box.r1, c1: box.c1, r2: lastRow, c2: lastColumn });
    }
    const width = Math.max(0, ...values.map((row) => row.length));
    if (values.length === 0 || width === 0) {
      response.updates = { spreadsheetId: spreadsheet.id };
      return json(200, response);
    }
    const startRow = lastRow > 0 ? lastRow + 1 : box.r1;
    if (box.c1 + width - 1 > sheet.columnCount) {
      throw gridError(recorded.range!, sheet);
    }
    values.forEach((row, i) => {
      const target = (sheet.cells[startRow + i - 1] ??= []);
      row.forEach((value, j) => {
        // null leaves a cell alone, as in every Sheets write; an empty string clears it.
        if (value !== null) target[box.c1 + j - 1] = value === "" ? null : toCell(value, inputOption);
      });
    });
    for (let r = 0; r < sheet.cells.length; r++) sheet.cells[r] ??= [];
    sheet.rowCount = insertOption === "INSERT_ROWS"
      ? Math.max(sheet.rowCount + values.length, startRow + values.length - 1)
      : Math.max(sheet.rowCount, startRow + values.length - 1);
    const written = { r1: startRow, c1: box.c1, r2: startRow + values.length - 1, c2: box.c1 + width - 1 };
    response.updates = {
      spreadsheetId: spreadsheet.id,
      updatedRange: a1(sheet.title, written),
      updatedRows: values.length,
      updatedColumns: width,
      updatedCells: values.reduce((sum, row) => sum + row.filter((v) => v !== null).length, 0),
    };
    return json(200, response);
  }

  function sheetOf(spreadsheetId: string, title: string): Sheet {
    const sheet = spreadsheets.get(spreadsheetId)?.sheets.find((s) => s.title === title);
    if (!sheet) throw new Error(`No sheet "${title}" in spreadsheet "${spreadsheetId}"`);
    return sheet;
  }

  return {
    sheetsUrl: origin,
    tokenUrl,
    requests,

    async addServiceAccount(name = `svc-${crypto.randomUUID().slice(0, 8)}`) {
      const { publicKey, privateKey } = await generateKeyPair("RS256", {
        extractable: true,
        modulusLength: 2048,
      });
      const keyId = crypto.randomUUID().replaceAll("-", "");
      const email = `${name}@emulator-project.iam.gserviceaccount.com`;
      // Round-trip the public key through SPKI so the verifier holds only what Google would publish.
      const spki = await exportSPKI(publicKey);
      accounts.set(email, {
        keyId,
        publicKey: await crypto.subtle.importKey(
          "spki",
          pemBody(spki),
          { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
          false,
          ["verify"],
        ),
      });
      return {
        type: "service_account",
        project_id: "emulator-project",
        private_key_id: keyId,
        private_key: await exportPKCS8(privateKey),
        client_email: email,
        client_id: String(Math.floor(Math.random() * 1e20)),
        token_uri: "https://oauth2.googleapis.com/token",
      };
    },

    addSpreadsheet(id, spec) {
      if (spec.sheets.length === 0) throw new Error("A spreadsheet needs at least one sheet");
      spreadsheets.set(id, {
        id,
        title: spec.title,
        sharedWith: new Set(spec.sharedWith),
        sheets: spec.sheets.map((title, index) => ({
          sheetId: index === 0 ? 0 : 1000 + index,
          title,
          cells: [],
          rowCount: spec.rowCount ?? 1000,
          columnCount: spec.columnCount ?? 26,
        })),
      });
    },

    setRows(spreadsheetId, title, rows) {
      const sheet = sheetOf(spreadsheetId, title);
      sheet.cells = rows.map((row) => row.map((value) => (value === "" ? null : { value })));
      sheet.rowCount = Math.max(sheet.rowCount, rows.length);
    },

    rows(spreadsheetId, title) {
      const sheet = sheetOf(spreadsheetId, title);
      return trimGrid(
        sheet.cells.map((row) => Array.from(row, (cell) => renderCell(cell ?? null, "FORMATTED_VALUE"))),
      )
        .map((row) => row.map(String));
    },

    cells(spreadsheetId, title) {
      return sheetOf(spreadsheetId, title).cells.map((row) => Array.from(row, (cell) => cell ?? null));
    },

    failNext(matcher, fault, times = 1) {
      faults.push({ matcher, fault, remaining: times });
    },

    delay(matcher, ms, times = Infinity) {
      delays.push({ matcher, ms, remaining: times });
    },

    clearFaults() {
      faults.length = 0;
      delays.length = 0;
    },

    revokeTokens() {
      tokens.clear();
    },

    async stop() {
      await server.shutdown();
    },
  };
}

function matches(matcher: Matcher, request: RecordedRequest): boolean {
  return typeof matcher === "function" ? matcher(request) : matcher === request.kind;
}

function afterApply(fault: Fault): boolean {
  return typeof fault === "object" && fault.afterApply === true;
}

/** Google's JSON error envelope. */
function googleError(code: number, message: string) {
  return { error: { code, message, status: STATUS_NAMES[code] ?? "UNKNOWN" } };
}

function oauthError(error: string, description: string): HttpError {
  return new HttpError(400, { error, error_description: description });
}

function notFound(): HttpError {
  return new HttpError(404, googleError(404, "Requested entity was not found."));
}

function invalidEnum(field: string, type: string, value: unknown): HttpError {
  return new HttpError(
    400,
    googleError(
      400,
      `Invalid value at '${field}' (type.googleapis.com/google.apps.sheets.v4.${type}), ${
        JSON.stringify(value)
      }`,
    ),
  );
}

function enumParam(
  query: Record<string, string>,
  name: string,
  protoName: string,
  type: string,
  allowed: string[],
  fallback: string,
): string {
  const value = query[name];
  if (value === undefined) return fallback;
  if (!allowed.includes(value)) throw invalidEnum(protoName, type, value);
  return value;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json; charset=UTF-8", ...headers },
  });
}

/** Unparseable JSON is kept as text so the method handler can refuse it with Google's 400. */
function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function pemBody(pem: string): Uint8Array<ArrayBuffer> {
  const base64 = pem.replace(/-----[^-]+-----/g, "").replace(/\s+/g, "");
  return Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
}

/** Validates ValueRange.values: a list of lists of scalars (null allowed). */
function parseValues(values: unknown): (string | number | boolean | null)[][] {
  if (values === undefined) return [];
  if (!Array.isArray(values)) throw invalidListValue("data.values", values);
  return values.map((row, i) => {
    if (!Array.isArray(row)) throw invalidListValue(`data.values[${i}]`, row);
    return row.map((value, j) => {
      if (value === null || ["string", "number", "boolean"].includes(typeof value)) {
        return value as string | number | boolean | null;
      }
      throw new HttpError(
        400,
        googleError(
          400,
          `Invalid values[${i}][${j}]: ${JSON.stringify(value)}`,
        ),
      );
    });
  });
}

function invalidListValue(field: string, value: unknown): HttpError {
  return new HttpError(
    400,
    googleError(
      400,
      `Invalid value at '${field}' (type.googleapis.com/google.protobuf.ListValue), ${JSON.stringify(value)}`,
    ),
  );
}

/** RAW stores what was sent; USER_ENTERED parses it as if typed into the UI. */
function toCell(value: string | number | boolean, option: string): Cell {
  if (option === "RAW" || typeof value !== "string") return { value };
  if (value.startsWith("=")) return { value: evaluateFormula(value), formula: value };
  if (value.startsWith("'")) return { value: value.slice(1) };
  if (/^[+-]?(\d+\.?\d*|\.\d+)$/.test(value.trim())) return { value: Number(value) };
  if (/^(true|false)$/i.test(value)) return { value: value.toUpperCase() === "TRUE" };
  return { value };
}

/** Not an evaluator: enough for a HYPERLINK to show its label; any other formula shows its text. */
function evaluateFormula(formula: string): string {
  const hyperlink = formula.match(/^=HYPERLINK\(\s*"([^"]*)"\s*(?:[,;]\s*"([^"]*)"\s*)?\)$/i);
  return hyperlink ? (hyperlink[2] ?? hyperlink[1]) : formula;
}

function renderCell(cell: Cell | null, render: string): unknown {
  if (cell === null) return "";
  if (render === "FORMULA" && cell.formula) return cell.formula;
  if (render === "UNFORMATTED_VALUE" || render === "FORMULA") return cell.value;
  if (typeof cell.value === "boolean") return cell.value ? "TRUE" : "FALSE";
  return String(cell.value);
}

function usedWidth(row: (Cell | null)[] | undefined): number {
  if (!row) return 0;
  for (let c = row.length; c > 0; c--) if (row[c - 1]) return c;
  return 0;
}

/** Drops trailing empty cells of each row and trailing empty rows, as values.get does. */
function trimGrid(values: unknown[][]): unknown[][] {
  const trimmed = values.map((row) => {
    let end = row.length;
    while (end > 0 && row[end - 1] === "") end--;
    return row.slice(0, end);
  });
  while (trimmed.length > 0 && trimmed[trimmed.length - 1].length === 0) trimmed.pop();
  return trimmed;
}

function transpose<T>(values: T[][]): T[][] {
  const width = Math.max(0, ...values.map((row) => row.length));
  return Array.from({ length: width }, (_, c) => values.map((row) => row[c] ?? ("" as T)));
}

/** Applies a field mask of comma-separated dotted paths ("properties.title"); lists are mapped over. */
function pickFields(source: unknown, paths: string[][]): unknown {
  if (Array.isArray(source)) return source.map((item) => pickFields(item, paths));
  if (typeof source !== "object" || source === null) return source;
  const byHead = new Map<string, string[][]>();
  for (const [head, ...rest] of paths) byHead.set(head, [...(byHead.get(head) ?? []), rest]);
  const out: Record<string, unknown> = {};
  for (const [head, rests] of byHead) {
    const value = (source as Record<string, unknown>)[head];
    if (value === undefined) continue;
    out[head] = rests.some((rest) => rest.length === 0) ? value : pickFields(value, rests);
  }
  return out;
}

// ---- A1 notation ----

interface Box {
  r1: number;
  c1: number;
  r2: number;
  c2: number;
}

interface Ref {
  col?: number;
  row?: number;
}

/** Resolves an A1 range against a spreadsheet the way Sheets does, or throws its 400. */
function resolveRange(spreadsheet: Spreadsheet, range: string): { sheet: Sheet; box: Box } {
  const unparseable = () => new HttpError(400, googleError(400, `Unable to parse range: ${range}`));
  let sheetName: string | undefined;
  let cells: string | undefined;
  if (range.startsWith("'")) {
    let i = 1;
    let name = "";
    for (; i < range.length; i++) {
      if (range[i] === "'") {
        if (range[i + 1] === "'") {
          name += "'";
          i++;
        } else break;
      } else name += range[i];
    }
    if (i >= range.length) throw unparseable();
    sheetName = name;
    const rest = range.slice(i + 1);
    if (rest !== "" && !rest.startsWith("!")) throw unparseable();
    cells = rest === "" ? undefined : rest.slice(1);
  } else if (range.includes("!")) {
    sheetName = range.slice(0, range.indexOf("!"));
    cells = range.slice(range.indexOf("!") + 1);
  } else if (parseCells(range)) {
    cells = range;
  } else {
    sheetName = range;
  }
  const sheet = sheetName === undefined
    ? spreadsheet.sheets[0]
    : spreadsheet.sheets.find((s) => s.title === sheetName);
  if (!sheet) throw unparseable();
  if (cells === undefined) {
    return { sheet, box: { r1: 1, c1: 1, r2: sheet.rowCount, c2: sheet.columnCount } };
  }
  const parsed = parseCells(cells);
  if (!parsed) throw unparseable();
  const [start, end] = parsed;
  const box = {
    r1: start.row ?? 1,
    c1: start.col ?? 1,
    r2: end ? end.row ?? sheet.rowCount : start.row!,
    c2: end ? end.col ?? sheet.columnCount : start.col!,
  };
  const normalised = {
    r1: Math.min(box.r1, box.r2),
    r2: Math.max(box.r1, box.r2),
    c1: Math.min(box.c1, box.c2),
    c2: Math.max(box.c1, box.c2),
  };
  if (normalised.r2 > sheet.rowCount || normalised.c2 > sheet.columnCount) throw gridError(range, sheet);
  return { sheet, box: normalised };
}

/** Parses "A1", "A1:B2", "A:C", "2:5" or "A2:D"; undefined when it is not cell notation. */
function parseCells(text: string): [Ref, Ref | undefined] | undefined {
  const refs = text.split(":");
  if (refs.length > 2) return undefined;
  const parsed = refs.map((ref) => {
    const m = ref.match(/^([A-Za-z]{0,3})(\d*)$/);
    if (!m || (m[1] === "" && m[2] === "")) return undefined;
    const row = m[2] === "" ? undefined : Number(m[2]);
    if (row === 0) return undefined;
    return { col: m[1] === "" ? undefined : columnNumber(m[1]), row };
  });
  if (parsed.some((ref) => ref === undefined)) return undefined;
  const [start, end] = parsed as Ref[];
  if (!end) return start.col !== undefined && start.row !== undefined ? [start, undefined] : undefined;
  // Either both ends name a column ("A2:D", "A:C") or neither does ("2:5").
  if ((start.col === undefined) !== (end.col === undefined)) return undefined;
  if (start.col === undefined && (start.row === undefined || end.row === undefined)) return undefined;
  return [start, end];
}

function gridError(range: string, sheet: Sheet): HttpError {
  return new HttpError(
    400,
    googleError(
      400,
      `Range (${range}) exceeds grid limits. Max rows: ${sheet.rowCount}, max columns: ${sheet.columnCount}`,
    ),
  );
}

function columnNumber(letters: string): number {
  return [...letters.toUpperCase()].reduce((n, ch) => n * 26 + ch.charCodeAt(0) - 64, 0);
}

function columnLetters(n: number): string {
  let letters = "";
  for (; n > 0; n = Math.floor((n - 1) / 26)) letters = String.fromCharCode(65 + ((n - 1) % 26)) + letters;
  return letters;
}

/** Formats a range the way Google echoes it: the sheet name quoted only when it has to be. */
function a1(sheet: string, box: Box): string {
  const name = /^[A-Za-z_][A-Za-z0-9_]*$/.test(sheet) && !parseCells(sheet)
    ? sheet
    : `'${sheet.replaceAll("'", "''")}'`;
  return `${name}!${columnLetters(box.c1)}${box.r1}:${columnLetters(box.c2)}${box.r2}`;
}
