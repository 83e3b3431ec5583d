/**
 * The integrations service over HTTP, against the Graph and Google emulators: settings are validated field
 * by field, credentials are stored sealed (bound to their client and kind, or page) and never returned, the
 * connection test records ok/broken from what the third party says (and nothing when it cannot be reached),
 * a page or form belongs to one client, a form's product must be one the client sells, and only members
 * with the right permission in the addressed client get anywhere.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";
import {
  integrationSecretContext,
  loadIntegration,
  loadPageToken,
  pageTokenContext,
} from "../../functions/_shared/integrations/credentials.ts";
import { createSecretBox, generateKey } from "../../functions/_shared/integrations/secret_box.ts";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import { graphErrors, startGraphEmulator } from "../emulators/graph.ts";
import { startGoogleEmulator } from "../emulators/google.ts";
import {
  actAs,
  call,
  createTeam,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const ENCRYPTION_KEY = generateKey();
const box = createSecretBox(ENCRYPTION_KEY);
const graph = await startGraphEmulator();
const google = startGoogleEmulator();
const urls = { graph_api: graph.url, google_sheets: google.sheetsUrl, google_token: google.tokenUrl };
const env = { RATE_LIMIT_PER_USER: "100000", ENCRYPTION_KEY };
/** The platform with Meta app credentials: WhatsApp tokens are inspected with debug_token. */
const stack = startStack(env, {
  urls,
  secrets: { meta_app_id: graph.appId, meta_app_secret: graph.appSecret },
});
/** Without them: the test falls back to reading the phone number with the token. */
const bareStack = startStack(env, { urls });
const config = loadConfig({ APP_ENV: "test", ENCRYPTION_KEY });

async function teamWithTokens() {
  const team = await createTeam();
  return {
    ...team,
    tokens: {
      owner: await sessionToken(team.users.owner, team.clientId),
      admin: await sessionToken(team.users.admin, team.clientId),
      manager: await sessionToken(team.users.manager, team.clientId),
      agent: await sessionToken(team.users.agent, team.clientId),
      viewer: await sessionToken(team.users.viewer, team.clientId),
    },
  };
}
type Team = Awaited<ReturnType<typeof teamWithTokens>>;

const base = (clientId: string) => `/api/clients/${clientId}`;

function assertStatus(reply: Reply, status: number, code?: string) {
  assert.equal(
    reply.status,
    status,
    `expected ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`,
  );
  if (code) assert.equal(reply.body.code, code, JSON.stringify(reply.body));
}

/** The paths of a 422's field errors. */
const errorPaths = (reply: Reply): string[] => reply.body.errors.map((error: { path: string }) => error.path);

function whatsAppBody(phone: { id: string; accessToken: string }, extra: Record<string, unknown> = {}) {
  return {
    phone_number_id: phone.id,
    access_token: phone.accessToken,
    template_name: "lead_welcome",
    template_language: "en_US",
    greeting_text: "Hi! Thanks for your interest.",
    ...extra,
  };
}

async function sealedSecret(clientId: string, kind: string): Promise<string | undefined> {
  const [row] = await db()<{ secret_sealed: string }[]>`
    select secret_sealed from app.integration_secrets where client_id = ${clientId} and kind = ${kind}`;
  return row?.secret_sealed;
}

async function setUpWhatsApp(team: Team, target = stack) {
  const phone = graph.addPhoneNumber();
  const reply = await call(target, "PUT", `${base(team.clientId)}/integrations/whatsapp`, {
    token: team.tokens.admin,
    body: whatsAppBody(phone),
  });
  assertStatus(reply, 201);
  return phone;
}

// -- Permissions ---------------------------------------------------------------------------------------

test("integrations.read and integrations.manage are catalogued; owner and admin manage, everyone reads", async () => {
  assert.ok(PERMISSIONS["integrations.read"] && PERMISSIONS["integrations.manage"]);
  const team = await teamWithTokens();
  const rows = await db()<{ key: string; permissions: string[] }[]>`
    select key, permissions from public.roles where client_id = ${team.clientId}`;
  for (const role of rows) {
    assert.equal(
      role.permissions.includes("integrations.manage"),
      role.key === "owner" || role.key === "admin",
      `${role.key} integrations.manage`,
    );
    assert.ok(role.permissions.includes("integrations.read"), `${role.key} integrations.read`);
  }
});

test("integration writes need integrations.manage in the addressed client; reads need membership", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const phone = graph.addPhoneNumber();
  const path = `${base(team.clientId)}/integrations/whatsapp`;
  assertStatus(
    await call(stack, "PUT", path, { token: team.tokens.manager, body: whatsAppBody(phone) }),
    403,
    "permission_denied",
  );
  assertStatus(
    await call(stack, "PUT", path, { token: other.tokens.owner, body: whatsAppBody(phone) }),
    404,
    "client_not_found",
  );
  assert.equal(await sealedSecret(team.clientId, "whatsapp"), undefined, "a refused write stored a secret");
  await setUpWhatsApp(team);
  const viewerList = await call(stack, "GET", `${base(team.clientId)}/integrations`, {
    token: team.tokens.viewer,
  });
  assertStatus(viewerList, 200);
  assert.equal(viewerList.body.integrations.length, 1);
  assertStatus(
    await call(stack, "GET", `${base(team.clientId)}/integrations`, { token: other.tokens.owner }),
    404,
    "client_not_found",
  );
  assertStatus(
    await call(stack, "POST", `${base(team.clientId)}/integrations/whatsapp/test`, {
      token: team.tokens.agent,
    }),
    403,
    "permission_denied",
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/integrations/whatsapp`, {
      token: team.tokens.manager,
    }),
    403,
    "permission_denied",
  );
});

// -- WhatsApp ------------------------------------------------------------------------------------------

test("PUT whatsapp reports each invalid field, refuses numeric ids and requires a token the first time", async () => {
  const team = await teamWithTokens();
  const path = `${base(team.clientId)}/integrations/whatsapp`;
  const phone = graph.addPhoneNumber();
  const invalid = await call(stack, "PUT", path, {
    token: team.tokens.admin,
    body: whatsAppBody(phone, {
      phone_number_id: 123456789012345,
      template_name: "Welcome Template",
      template_language: "english",
      greeting_text: "",
      colour: "green",
    }),
  });
  assertStatus(invalid, 422, "validation_failed");
  assert.deepEqual(errorPaths(invalid).sort(), [
    "body.colour",
    "body.greeting_text",
    "body.phone_number_id",
    "body.template_language",
    "body.template_name",
  ]);
  const withoutToken = await call(stack, "PUT", path, {
    token: team.tokens.admin,
    body: whatsAppBody(phone, { access_token: undefined }),
  });
  assertStatus(withoutToken, 422, "validation_failed");
  assert.deepEqual(errorPaths(withoutToken), ["body.access_token"]);
  assert.equal((await db()`select 1 from public.integrations where client_id = ${team.clientId}`).length, 0);
});

test("PUT whatsapp stores the token sealed to the client and kind, and never returns it", async () => {
  const team = await teamWithTokens();
  const phone = graph.addPhoneNumber();
  const created = await call(stack, "PUT", `${base(team.clientId)}/integrations/whatsapp`, {
    token: team.tokens.admin,
    body: whatsAppBody(phone),
  });
  assertStatus(created, 201);
  assert.equal(created.body.kind, "whatsapp");
  assert.equal(created.body.has_secret, true);
  assert.equal(created.body.status, "unknown");
  assert.deepEqual(created.body.settings, {
    phone_number_id: phone.id,
    template_name: "lead_welcome",
    template_language: "en_US",
    greeting_text: "Hi! Thanks for your interest.",
  });
  assert.ok(!JSON.stringify(created.body).includes(phone.accessToken), "the response carries the token");

  const sealed = await sealedSecret(team.clientId, "whatsapp");
  assert.ok(sealed && !sealed.includes(phone.accessToken), "the token is stored in the clear");
  assert.equal(
    await box.open(sealed, integrationSecretContext(team.clientId, "whatsapp")),
    phone.accessToken,
  );
  await assert.rejects(
    box.open(sealed, integrationSecretContext(uniq("client"), "whatsapp")),
    "a sealed token opens for another client",
  );
  const [settingsRow] = await db()<{ settings: object }[]>`
    select settings from public.integrations where client_id = ${team.clientId} and kind = 'whatsapp'`;
  assert.ok(
    !JSON.stringify(settingsRow.settings).includes(phone.accessToken),
    "the token is in the settings",
  );

  const loaded = await loadIntegration(db(), config, team.clientId, "whatsapp");
  assert.equal(loaded?.secret, phone.accessToken, "the worker's loader opens the token");
  assert.equal(loaded?.enabled, true);
  assert.equal(await loadIntegration(db(), config, team.clientId, "google_sheets"), null);

  const list = await call(stack, "GET", `${base(team.clientId)}/integrations`, {
    token: team.tokens.manager,
  });
  assertStatus(list, 200);
  assert.ok(!JSON.stringify(list.body).includes(phone.accessToken), "the list carries the token");
  assert.equal(list.body.integrations[0].has_secret, true);
});

test("PUT whatsapp without a token keeps the stored one; a new phone number resets the status", async () => {
  const team = await teamWithTokens();
  const phone = await setUpWhatsApp(team);
  const path = `${base(team.clientId)}/integrations/whatsapp`;
  const tested = await call(stack, "POST", `${path}/test`, { token: team.tokens.admin });
  assert.equal(tested.body.status, "ok");
  const sealed = await sealedSecret(team.clientId, "whatsapp");

  const renamed = await call(stack, "PUT", path, {
    token: team.tokens.admin,
    body: whatsAppBody(phone, { access_token: undefined, template_name: "welcome_v2", enabled: false }),
  });
  assertStatus(renamed, 200);
  assert.equal(renamed.body.settings.template_name, "welcome_v2");
  assert.equal(renamed.body.enabled, false);
  assert.equal(renamed.body.status, "ok", "a template change keeps the checked status");
  assert.equal(await sealedSecret(team.clientId, "whatsapp"), sealed, "the stored token changed");

  const moved = await call(stack, "PUT", path, {
    token: team.tokens.admin,
    body: whatsAppBody(phone, { access_token: undefined, phone_number_id: "998877665544" }),
  });
  assertStatus(moved, 200);
  assert.equal(moved.body.status, "unknown");
  assert.equal(moved.body.checked_at, null);
});

test("POST whatsapp/test inspects the token with debug_token: ok, then broken once it expires", async () => {
  const team = await teamWithTokens();
  const phone = await setUpWhatsApp(team);
  const path = `${base(team.clientId)}/integrations/whatsapp/test`;
  const ok = await call(stack, "POST", path, { token: team.tokens.admin });
  assertStatus(ok, 200);
  assert.equal(ok.body.ok, true);
  assert.equal(ok.body.status, "ok");
  assert.equal(ok.body.detail, null);
  assert.ok(ok.body.checked_at);
  assert.ok(
    graph.state.requests.some((r) => r.path === "/debug_token" && r.query.input_token === phone.accessToken),
    "debug_token was not asked",
  );

  graph.expireToken(phone.accessToken);
  const expired = await call(stack, "POST", path, { token: team.tokens.admin });
  assertStatus(expired, 200);
  assert.equal(expired.body.ok, false);
  assert.equal(expired.body.retryable, false);
  assert.equal(expired.body.status, "broken");
  assert.match(expired.body.status_detail, /expired/i);
  assert.ok(expired.body.token_expires_at, "the expiry debug_token reported");
  const [row] = await db()<{ status: string; status_detail: string; checked_at: string }[]>`
    select status, status_detail, checked_at from public.integrations
    where client_id = ${team.clientId} and kind = 'whatsapp'`;
  assert.equal(row.status, "broken");
  assert.match(row.status_detail, /expired/i);
  assert.ok(row.checked_at);
});

test("POST whatsapp/test without Meta app credentials reads the phone number with the token", async () => {
  const team = await teamWithTokens();
  const phone = await setUpWhatsApp(team, bareStack);
  const path = `${base(team.clientId)}/integrations/whatsapp/test`;
  const before = graph.state.requests.length;
  const ok = await call(bareStack, "POST", path, { token: team.tokens.admin });
  assertStatus(ok, 200);
  assert.equal(ok.body.ok, true);
  const asked = graph.state.requests.slice(before);
  assert.ok(asked.every((r) => r.path !== "/debug_token"), "debug_token needs the app credentials");
  assert.ok(asked.some((r) => r.path === `/${phone.id}`), "the phone number was not read");

  graph.expireToken(phone.accessToken);
  const expired = await call(bareStack, "POST", path, { token: team.tokens.admin });
  assert.equal(expired.body.ok, false);
  assert.equal(expired.body.status, "broken");
  assert.match(expired.body.status_detail, /expired/i);
});

test("POST whatsapp/test marks a token that cannot reach the configured number broken", async () => {
  const team = await teamWithTokens();
  const phone = graph.addPhoneNumber();
  const foreign = graph.addPhoneNumber();
  assertStatus(
    await call(stack, "PUT", `${base(team.clientId)}/integrations/whatsapp`, {
      token: team.tokens.admin,
      body: whatsAppBody(phone, { phone_number_id: foreign.id }),
    }),
    201,
  );
  const reply = await call(stack, "POST", `${base(team.clientId)}/integrations/whatsapp/test`, {
    token: team.tokens.admin,
  });
  assert.equal(reply.body.ok, false);
  assert.equal(reply.body.status, "broken");
  assert.match(reply.body.status_detail, new RegExp(foreign.id));
});

test("POST whatsapp/test when Meta fails transiently: ok false, retryable, status unchanged", async () => {
  const team = await teamWithTokens();
  const phone = await setUpWhatsApp(team);
  const path = `${base(team.clientId)}/integrations/whatsapp/test`;
  assert.equal((await call(stack, "POST", path, { token: team.tokens.admin })).body.status, "ok");
  graph.failNext({ pathPattern: new RegExp(`^/${phone.id}$`) }, graphErrors.serverError());
  const reply = await call(stack, "POST", path, { token: team.tokens.admin });
  assertStatus(reply, 200);
  assert.equal(reply.body.ok, false);
  assert.equal(reply.body.retryable, true);
  assert.equal(reply.body.status, "ok", "a Meta outage marked the credential broken");
});

test("POST {kind}/test and DELETE {kind} answer 404 for an integration that is not set up", async () => {
  const team = await teamWithTokens();
  assertStatus(
    await call(stack, "POST", `${base(team.clientId)}/integrations/google-sheets/test`, {
      token: team.tokens.admin,
    }),
    404,
    "integration_not_found",
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/integrations/whatsapp`, { token: team.tokens.admin }),
    404,
    "integration_not_found",
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/integrations/telegram`, { token: team.tokens.admin }),
    422,
    "validation_failed",
  );
});

test("DELETE whatsapp removes the settings and the sealed token", async () => {
  const team = await teamWithTokens();
  await setUpWhatsApp(team);
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/integrations/whatsapp`, { token: team.tokens.admin }),
    204,
  );
  assert.equal(await sealedSecret(team.clientId, "whatsapp"), undefined);
  assert.equal(await loadIntegration(db(), config, team.clientId, "whatsapp"), null);
});

// -- Google Sheets -------------------------------------------------------------------------------------

const COLUMNS = [
  { header: "Lead id", field: "id" },
  { header: "Name", field: "full_name" },
  { header: "Email", field: "email" },
  { header: "Campaign", field: "utm_campaign" },
  { header: "Budget", field: "custom.budget" },
];

async function sheetsFixture(options: { shared?: boolean } = {}) {
  const key = await google.addServiceAccount();
  const spreadsheetId = `sheet${crypto.randomUUID().replaceAll("-", "")}`;
  google.addSpreadsheet(spreadsheetId, {
    title: "Leads",
    sheets: ["Leads"],
    sharedWith: options.shared === false ? [] : [key.client_email],
  });
  return { key, spreadsheetId };
}

test("PUT google-sheets reports each invalid field: columns, lead fields, headers and the key", async () => {
  const team = await teamWithTokens();
  const { key, spreadsheetId } = await sheetsFixture();
  const reply = await call(stack, "PUT", `${base(team.clientId)}/integrations/google-sheets`, {
    token: team.tokens.admin,
    body: {
      spreadsheet_id: "no spaces allowed",
      sheet: "Leads",
      columns: [
        { header: "Name", field: "full_name" },
        { header: "Name", field: "email" },
        { header: "Secret", field: "password" },
        { header: "Nested", field: "custom.a.b" },
      ],
      service_account_key: { client_email: key.client_email, private_key: "not a key" },
    },
  });
  assertStatus(reply, 422, "validation_failed");
  assert.deepEqual(errorPaths(reply).sort(), [
    "body.columns.1.header",
    "body.columns.2.field",
    "body.columns.3.field",
    "body.service_account_key.private_key",
    "body.spreadsheet_id",
  ]);
  const noKey = await call(stack, "PUT", `${base(team.clientId)}/integrations/google-sheets`, {
    token: team.tokens.admin,
    body: { spreadsheet_id: spreadsheetId, sheet: "Leads", columns: COLUMNS },
  });
  assertStatus(noKey, 422);
  assert.deepEqual(errorPaths(noKey), ["body.service_account_key"]);
  const noColumns = await call(stack, "PUT", `${base(team.clientId)}/integrations/google-sheets`, {
    token: team.tokens.admin,
    body: { spreadsheet_id: spreadsheetId, sheet: "Leads", columns: [], service_account_key: key },
  });
  assert.deepEqual(errorPaths(noColumns), ["body.columns"]);
});

test("PUT google-sheets seals the key, shows only the service account's email, and tests ok", async () => {
  const team = await teamWithTokens();
  const { key, spreadsheetId } = await sheetsFixture();
  const path = `${base(team.clientId)}/integrations/google-sheets`;
  const created = await call(stack, "PUT", path, {
    token: team.tokens.owner,
    body: { spreadsheet_id: spreadsheetId, sheet: "Leads", columns: COLUMNS, service_account_key: key },
  });
  assertStatus(created, 201);
  assert.equal(created.body.kind, "google-sheets");
  assert.equal(created.body.settings.service_account_email, key.client_email);
  assert.deepEqual(created.body.settings.columns, COLUMNS);
  assert.ok(!JSON.stringify(created.body).includes("PRIVATE KEY"), "the response carries the key");

  const sealed = await sealedSecret(team.clientId, "google_sheets");
  assert.ok(sealed && !sealed.includes("PRIVATE KEY"));
  const opened = JSON.parse(await box.open(sealed, integrationSecretContext(team.clientId, "google_sheets")));
  assert.equal(opened.private_key, key.private_key);
  assert.equal(opened.client_email, key.client_email);
  assert.equal(opened.token_uri, undefined, "a stored key must not carry a token URL");

  const tested = await call(stack, "POST", `${path}/test`, { token: team.tokens.owner });
  assertStatus(tested, 200);
  assert.equal(tested.body.ok, true, JSON.stringify(tested.body));
  assert.equal(tested.body.status, "ok");

  // Replacing the settings without the key keeps both the key and the account email.
  const updated = await call(stack, "PUT", path, {
    token: team.tokens.owner,
    body: { spreadsheet_id: spreadsheetId, sheet: "Leads", columns: COLUMNS.slice(0, 2) },
  });
  assertStatus(updated, 200);
  assert.equal(updated.body.settings.service_account_email, key.client_email);
  assert.equal(updated.body.status, "ok");
  assert.equal(await sealedSecret(team.clientId, "google_sheets"), sealed);
});

test("POST google-sheets/test is broken for an unshared spreadsheet and a header row lacking a column", async () => {
  const team = await teamWithTokens();
  const path = `${base(team.clientId)}/integrations/google-sheets`;
  const unshared = await sheetsFixture({ shared: false });
  assertStatus(
    await call(stack, "PUT", path, {
      token: team.tokens.admin,
      body: {
        spreadsheet_id: unshared.spreadsheetId,
        sheet: "Leads",
        columns: COLUMNS,
        service_account_key: unshared.key,
      },
    }),
    201,
  );
  const refused = await call(stack, "POST", `${path}/test`, { token: team.tokens.admin });
  assertStatus(refused, 200);
  assert.equal(refused.body.ok, false);
  assert.equal(refused.body.status, "broken");
  assert.match(refused.body.status_detail, /PERMISSION_DENIED|permission/i);

  const shared = await sheetsFixture();
  google.setRows(shared.spreadsheetId, "Leads", [["Lead id", "Name"]]);
  assertStatus(
    await call(stack, "PUT", path, {
      token: team.tokens.admin,
      body: {
        spreadsheet_id: shared.spreadsheetId,
        sheet: "Leads",
        columns: COLUMNS,
        service_account_key: shared.key,
      },
    }),
    200,
  );
  const mismatch = await call(stack, "POST", `${path}/test`, { token: team.tokens.admin });
  assert.equal(mismatch.body.status, "broken");
  assert.match(mismatch.body.status_detail, /"Email"/);
});

// -- Meta pages and forms ------------------------------------------------------------------------------

async function enabledProduct(clientId: string | null): Promise<string> {
  const [industry] = await db()<{ id: string }[]>`
    insert into public.industries (name) values (${uniq("Integrations industry")}) returning id`;
  const [category] = await db()<{ id: string }[]>`
    insert into public.categories (industry_id, name) values (${industry.id}, ${
    uniq("Category")
  }) returning id`;
  const [product] = await db()<{ id: string }[]>`
    insert into public.products (category_id, name) values (${category.id}, ${uniq("Product")}) returning id`;
  if (clientId) {
    await db()`insert into public.client_products (client_id, product_id) values (${clientId}, ${product.id})`;
  }
  return product.id;
}

async function connect(team: Team, page = graph.addPage()) {
  const reply = await call(stack, "POST", `${base(team.clientId)}/meta/pages`, {
    token: team.tokens.admin,
    body: { page_id: page.id, name: page.name, page_access_token: page.accessToken },
  });
  assertStatus(reply, 201);
  return { page, reply };
}

test("POST meta/pages refuses numeric page ids and stores the page token sealed to the page", async () => {
  const team = await teamWithTokens();
  const page = graph.addPage();
  const numeric = await call(stack, "POST", `${base(team.clientId)}/meta/pages`, {
    token: team.tokens.admin,
    body: { page_id: 123456789012345, page_access_token: page.accessToken },
  });
  assertStatus(numeric, 422);
  assert.deepEqual(errorPaths(numeric), ["body.page_id"]);

  const { reply } = await connect(team, page);
  assert.equal(reply.body.page_id, page.id);
  assert.equal(reply.body.has_token, true);
  assert.deepEqual(reply.body.forms, []);
  assert.ok(!JSON.stringify(reply.body).includes(page.accessToken));
  const [row] = await db()<{ token_sealed: string }[]>`
    select token_sealed from app.meta_page_tokens where page_id = ${page.id}`;
  assert.ok(!row.token_sealed.includes(page.accessToken));
  assert.equal(await box.open(row.token_sealed, pageTokenContext(page.id)), page.accessToken);
  assert.deepEqual(await loadPageToken(db(), config, page.id), {
    clientId: team.clientId,
    token: page.accessToken,
  });
  assert.equal(await loadPageToken(db(), config, "1"), null);
});

test("POST meta/pages answers 409 for a page another client has, without naming that client", async () => {
  const team = await teamWithTokens();
  const rival = await teamWithTokens();
  const { page } = await connect(team);
  const taken = await call(stack, "POST", `${base(rival.clientId)}/meta/pages`, {
    token: rival.tokens.admin,
    body: { page_id: page.id, page_access_token: "EAAforgedtokenvalue123" },
  });
  assertStatus(taken, 409, "meta_page_taken");
  assert.ok(!JSON.stringify(taken.body).includes(team.clientId), "the 409 names the other client");
  const again = await call(stack, "POST", `${base(team.clientId)}/meta/pages`, {
    token: team.tokens.admin,
    body: { page_id: page.id, page_access_token: page.accessToken },
  });
  assertStatus(again, 409, "meta_page_already_connected");
  const loaded = await loadPageToken(db(), config, page.id);
  assert.deepEqual(
    loaded,
    { clientId: team.clientId, token: page.accessToken },
    "the rival replaced the token",
  );
});

test("PATCH meta/pages renames a page and replaces its token; other clients get 404", async () => {
  const team = await teamWithTokens();
  const rival = await teamWithTokens();
  const { page } = await connect(team);
  const path = `${base(team.clientId)}/meta/pages/${page.id}`;
  const renamed = await call(stack, "PATCH", path, { token: team.tokens.admin, body: { name: "Main page" } });
  assertStatus(renamed, 200);
  assert.equal(renamed.body.name, "Main page");
  const replaced = await call(stack, "PATCH", path, {
    token: team.tokens.admin,
    body: { page_access_token: "EAAreplacementtoken0123456789" },
  });
  assertStatus(replaced, 200);
  assert.equal((await loadPageToken(db(), config, page.id))?.token, "EAAreplacementtoken0123456789");
  assertStatus(
    await call(stack, "PATCH", path, { token: team.tokens.admin, body: {} }),
    422,
    "validation_failed",
  );
  assertStatus(
    await call(stack, "PATCH", `${base(rival.clientId)}/meta/pages/${page.id}`, {
      token: rival.tokens.admin,
      body: { name: "Hijacked" },
    }),
    404,
    "meta_page_not_found",
  );
});

test("POST meta/pages/{pageId}/forms maps a form to a product the client sells, and remaps it", async () => {
  const team = await teamWithTokens();
  const rival = await teamWithTokens();
  const { page } = await connect(team);
  const form = graph.addForm(page.id);
  const path = `${base(team.clientId)}/meta/pages/${page.id}/forms`;
  const sold = await enabledProduct(team.clientId);
  const notSold = await enabledProduct(rival.clientId);

  const refused = await call(stack, "POST", path, {
    token: team.tokens.admin,
    body: { form_id: form.id, product_id: notSold },
  });
  assertStatus(refused, 422, "validation_failed");
  assert.deepEqual(errorPaths(refused), ["body.product_id"]);
  const numeric = await call(stack, "POST", path, { token: team.tokens.admin, body: { form_id: 1234567 } });
  assert.deepEqual(errorPaths(numeric), ["body.form_id"]);

  const mapped = await call(stack, "POST", path, {
    token: team.tokens.admin,
    body: { form_id: form.id, name: "Spring offer", product_id: sold },
  });
  assertStatus(mapped, 201);
  assert.equal(mapped.body.product_id, sold);
  const remapped = await call(stack, "POST", path, {
    token: team.tokens.admin,
    body: { form_id: form.id, name: "Spring offer" },
  });
  assertStatus(remapped, 200);
  assert.equal(remapped.body.product_id, null);

  const list = await call(stack, "GET", `${base(team.clientId)}/integrations`, { token: team.tokens.viewer });
  assert.deepEqual(list.body.meta_pages.map((p: { page_id: string }) => p.page_id), [page.id]);
  assert.equal(list.body.meta_pages[0].forms[0].form_id, form.id);
  assert.ok(!JSON.stringify(list.body).includes(page.accessToken));

  // The rival maps the same form id on its own page: taken.
  const { page: rivalPage } = await connect(rival);
  const taken = await call(stack, "POST", `${base(rival.clientId)}/meta/pages/${rivalPage.id}/forms`, {
    token: rival.tokens.admin,
    body: { form_id: form.id },
  });
  assertStatus(taken, 409, "meta_form_taken");
  // Nor can it map a form on a page it does not have.
  assertStatus(
    await call(stack, "POST", `${base(rival.clientId)}/meta/pages/${page.id}/forms`, {
      token: rival.tokens.admin,
      body: { form_id: "777" },
    }),
    404,
    "meta_page_not_found",
  );
});

test("DELETE meta/forms and meta/pages unmap a form and disconnect a page with its token and forms", async () => {
  const team = await teamWithTokens();
  const { page } = await connect(team);
  const forms = [graph.addForm(page.id), graph.addForm(page.id)];
  for (const form of forms) {
    assertStatus(
      await call(stack, "POST", `${base(team.clientId)}/meta/pages/${page.id}/forms`, {
        token: team.tokens.admin,
        body: { form_id: form.id },
      }),
      201,
    );
  }
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/meta/forms/${forms[0].id}`, {
      token: team.tokens.manager,
    }),
    403,
    "permission_denied",
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/meta/forms/${forms[0].id}`, {
      token: team.tokens.admin,
    }),
    204,
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/meta/forms/${forms[0].id}`, {
      token: team.tokens.admin,
    }),
    404,
    "meta_form_not_found",
  );
  assertStatus(
    await call(stack, "DELETE", `${base(team.clientId)}/meta/pages/${page.id}`, { token: team.tokens.admin }),
    204,
  );
  assert.equal(await loadPageToken(db(), config, page.id), null);
  assert.equal((await db()`select 1 from public.meta_forms where page_id = ${page.id}`).length, 0);
});

// -- Row-level security, as supabase-js would meet it -----------------------------------------------------

test("policies: members read integrations and pages; only integrations.manage writes them", async () => {
  const team = await teamWithTokens();
  const rival = await teamWithTokens();
  await setUpWhatsApp(team);
  const { page } = await connect(team);
  const seen = await actAs(team.users.viewer.id, team.clientId, async (tx) => ({
    integrations: (await tx`select kind from public.integrations where client_id = ${team.clientId}`).length,
    pages: (await tx`select 1 from public.meta_pages where page_id = ${page.id}`).length,
    secrets: await tx`select app.integration_secret_kinds(${team.clientId}) as kinds`,
  }));
  assert.deepEqual({ integrations: seen.integrations, pages: seen.pages }, { integrations: 1, pages: 1 });
  assert.deepEqual(seen.secrets[0].kinds, ["whatsapp"]);
  const rivalSees = await actAs(rival.users.owner.id, rival.clientId, async (tx) => ({
    integrations: (await tx`select 1 from public.integrations where client_id = ${team.clientId}`).length,
    pages: (await tx`select 1 from public.meta_pages where page_id = ${page.id}`).length,
    kinds: (await tx`select app.integration_secret_kinds(${team.clientId}) as kinds`)[0].kinds,
    stored: (await tx`select app.set_integration_secret(${team.clientId}, 'whatsapp', 'v1.x.y') as ok`)[0].ok,
  }));
  assert.deepEqual(rivalSees, { integrations: 0, pages: 0, kinds: [], stored: false });
  const managerUpdated = await actAs(
    team.users.manager.id,
    team.clientId,
    async (tx) =>
      (await tx`update public.integrations set enabled = false where client_id = ${team.clientId} returning 1`)
        .length,
  );
  assert.equal(managerUpdated, 0, "a manager without integrations.manage changed the settings");
});
