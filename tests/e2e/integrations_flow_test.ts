/**
 * The integrations end to end, on the local stack with the Graph and Google emulators: a lead ingested with
 * an API key is greeted on WhatsApp, appended to the client's sheet and announced, by draining the worker
 * (POST /worker) as pg_cron does on Supabase. Then the failure paths: Sheets quota, a refused WhatsApp token
 * (only that client pauses), the 24-hour window, unreachable recipients; the Meta backfill against the
 * webhook path; credential health; Google Sheets imports; and the periodic scheduler.
 *
 * Other test files drain the same queue with their own workers, so every assertion is about this file's
 * clients, and waits (draining, with a timeout) for their rows rather than expecting one drain to do it all.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";
import { UNSTORABLE_TEXT_MESSAGE } from "../../functions/_shared/errors.ts";
import {
  integrationSecretContext,
  pageTokenContext,
  secretBoxFor,
} from "../../functions/_shared/integrations/credentials.ts";
import {
  addMember,
  call,
  createClient,
  createUser,
  db,
  sessionToken,
  startStack,
  test,
  testDatabaseUrl,
  uniq,
} from "../_helpers.ts";
import { deliver, graphErrors, leadgenChange, startGraphEmulator, statusUpdate } from "../emulators/graph.ts";
import { quotaExceeded, startGoogleEmulator } from "../emulators/google.ts";

const graph = await startGraphEmulator();
const google = startGoogleEmulator();
const WORKER_SECRET = "integrations-flow-worker-secret";
const env = {
  GRAPH_API_URL: graph.url,
  GOOGLE_SHEETS_URL: google.sheetsUrl,
  GOOGLE_TOKEN_URL: google.tokenUrl,
  META_APP_ID: graph.appId,
  META_APP_SECRET: graph.appSecret,
  META_VERIFY_TOKEN: "integrations-flow-verify",
  WORKER_SECRET,
  RATE_LIMIT_PER_USER: "100000",
};
/** Every client this file creates: the only ones whose rows it looks at, and whose jobs its worker runs. */
const mine: string[] = [];
// A short wait for the status of an unanswered WhatsApp send (and a backoff below it), so those tests see the
// resend.
const UNCONFIRMED_WAIT_SECONDS = 2;
const stack = startStack(env, {
  whatsapp: { unconfirmed_send_wait_seconds: UNCONFIRMED_WAIT_SECONDS },
  queue: { retry_base_seconds: 1, retry_jitter: 0 },
}, { workerClients: () => mine });
const config = loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl(), ...env });
const template = graph.addTemplate("lead_greeting", { language: "en_US" });

interface Tenant {
  clientId: string;
  ownerId: string;
  token: string;
}

async function tenant(prefix = "intg"): Promise<Tenant> {
  const clientId = await createClient(uniq(prefix));
  mine.push(clientId);
  const owner = await createUser({ name: "Owner" });
  const ownerMembership = await addMember(clientId, owner.id, "owner");
  await addMember(clientId, (await createUser({ name: "Agent" })).id, "agent", ownerMembership);
  return { clientId, ownerId: owner.id, token: await sessionToken(owner, clientId) };
}

async function enableAutomations(clientId: string, actions: string[]) {
  for (const action of actions) {
    await db()`insert into public.automations (client_id, event, action, enabled)
               values (${clientId}, 'lead.created', ${action}, true)`;
  }
}

async function storeIntegration(
  clientId: string,
  kind: "whatsapp" | "google_sheets",
  settings: Record<string, unknown>,
  secret: string,
) {
  const sealed = await secretBoxFor(config).seal(secret, integrationSecretContext(clientId, kind));
  await db()`insert into public.integrations (client_id, kind, settings, status)
             values (${clientId}, ${kind}, ${db().json(settings as never)}, 'ok')
             on conflict (client_id, kind) do update set settings = excluded.settings`;
  await db()`insert into app.integration_secrets (client_id, kind, secret_sealed)
             values (${clientId}, ${kind}, ${sealed})
             on conflict (client_id, kind) do update set secret_sealed = excluded.secret_sealed`;
}

/** A WhatsApp number in the emulator, connected to the client. */
async function connectWhatsApp(clientId: string, settings: Record<string, unknown> = {}) {
  const phone = graph.addPhoneNumber();
  await storeIntegration(clientId, "whatsapp", {
    phone_number_id: phone.id,
    template_name: template.name,
    template_language: template.language,
    greeting_text: "Hi! Thanks for your interest.",
    ...settings,
  }, phone.accessToken);
  return phone;
}

/** A spreadsheet in the emulator shared with a new service account, connected to the client. */
async function connectSheets(clientId: string) {
  const key = await google.addServiceAccount();
  const spreadsheetId = `sheet-${crypto.randomUUID()}`;
  google.addSpreadsheet(spreadsheetId, { title: "Leads", sheets: ["Leads"], sharedWith: [key.client_email] });
  await storeIntegration(clientId, "google_sheets", {
    spreadsheet_id: spreadsheetId,
    sheet: "Leads",
    columns: [
      { header: "Name", field: "full_name" },
      { header: "Email", field: "email" },
      { header: "Phone", field: "phone" },
      { header: "Budget", field: "custom.budget" },
    ],
  }, JSON.stringify(key));
  return { spreadsheetId, key };
}

/** A Facebook page with a lead form in the emulator, connected to the client. */
async function connectPage(clientId: string) {
  const page = graph.addPage();
  const form = graph.addForm(page.id);
  await db()`insert into public.meta_pages (page_id, client_id, name, status) values (${page.id}, ${clientId}, 'Page', 'ok')`;
  await db()`insert into app.meta_page_tokens (page_id, token_sealed)
             values (${page.id}, ${await secretBoxFor(config).seal(
    page.accessToken,
    pageTokenContext(page.id),
  )})`;
  await db()`insert into public.meta_forms (form_id, page_id, client_id, name) values (${form.id}, ${page.id}, ${clientId}, 'Form')`;
  return { page, form };
}

async function apiKey(t: Tenant): Promise<string> {
  const reply = await call(stack, "POST", `/api/clients/${t.clientId}/api-keys`, {
    token: t.token,
    body: { name: "Form", rate_limit_per_minute: 100_000 },
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return reply.body.secret;
}

const newPhone = () => "+447400" + String(Math.floor(Math.random() * 1e6)).padStart(6, "0");
const digits = (phone: string) => phone.slice(1);

async function ingest(key: string, lead: Record<string, unknown>): Promise<string> {
  const reply = await call(stack, "POST", "/ingest/leads", { headers: { "x-api-key": key }, body: lead });
  assert.ok(reply.status === 201 || reply.status === 200, JSON.stringify(reply.body));
  return reply.body.lead_id ?? reply.body.results?.[0]?.lead_id;
}

/** Inserts a lead the way imports do (owner pool, through the routing triggers). */
async function insertLead(clientId: string, fields: Record<string, unknown> = {}): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, phone, email)
    values (${clientId}, 'manual', ${String(fields.full_name ?? "Test Lead")}, ${
    (fields.phone as string | undefined) ?? newPhone()
  },
      ${(fields.email as string | undefined) ?? `${uniq("lead")}@example.com`})
    returning id`;
  return row.id;
}

async function drain() {
  const reply = await call(stack, "POST", "/worker", { headers: { "x-worker-secret": WORKER_SECRET } });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
}

/**
 * Drains until `probe` returns a value, making this file's retrying jobs due at once (the backoff would
 * otherwise wait seconds). Fails with `what` after the timeout.
 */
async function until<T>(
  what: string,
  probe: () => T | undefined | null | false | Promise<T | undefined | null | false>,
  timeoutMs = 20_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    await db()`update app.jobs set run_at = now()
               where client_id = any (${mine}::text[]) and status = 'queued' and run_at > now()`;
    await drain();
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

interface JobRow {
  id: string;
  kind: string;
  status: string;
  attempts: number;
  result: Record<string, unknown> | null;
  errors: Array<{ message: string; code?: string }>;
}

async function jobsOf(clientId: string, kind: string): Promise<JobRow[]> {
  return await db()<JobRow[]>`
    select id, kind, status, attempts, result, errors from app.jobs
    where client_id = ${clientId} and kind = ${kind} order by id`;
}

async function finishedJob(clientId: string, kind: string, predicate: (job: JobRow) => boolean = () => true) {
  return await until(`a finished ${kind} job of ${clientId}`, async () => {
    const jobs = await jobsOf(clientId, kind);
    return jobs.find((job) => ["succeeded", "dead"].includes(job.status) && predicate(job));
  });
}

async function enqueue(clientId: string, kind: string, payload: Record<string, unknown>): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    select app.enqueue_job(${clientId}, ${kind}, ${db().json(payload as never)}, ${
    uniq(`test:${kind}`)
  }, 8) as id`;
  return row.id;
}

async function jobById(id: string): Promise<JobRow> {
  const [row] = await db()<JobRow[]>`
    select id, kind, status, attempts, result, errors from app.jobs where id = ${id}`;
  return row;
}

async function finished(id: string): Promise<JobRow> {
  return await until(`job ${id} to finish`, async () => {
    const job = await jobById(id);
    return ["succeeded", "dead"].includes(job.status) ? job : undefined;
  });
}

interface MessageRow {
  kind: string;
  status: string;
  provider_message_id: string | null;
  template_name: string | null;
  error: { code?: number } | null;
}

async function messagesOf(leadId: string): Promise<MessageRow[]> {
  return await db()<MessageRow[]>`
    select kind, status, provider_message_id, template_name, error from public.lead_messages
    where lead_id = ${leadId} and direction = 'outbound' order by created_at, kind`;
}

/** The sheet rows (header excluded) holding the lead's id. */
function rowsWithLead(spreadsheetId: string, leadId: string): string[][] {
  return google.rows(spreadsheetId, "Leads").slice(1).filter((row) => row.includes(leadId));
}

test("integrations flow: an ingested lead is greeted on WhatsApp, appended to the sheet and announced", async () => {
  const t = await tenant();
  await enableAutomations(t.clientId, ["whatsapp_greeting", "sheets_append"]);
  const phone = await connectWhatsApp(t.clientId);
  const { spreadsheetId } = await connectSheets(t.clientId);
  const key = await apiKey(t);
  const leadPhone = newPhone();
  const formula = '=HYPERLINK("https://evil.example","click")';
  const leadId = await ingest(key, {
    full_name: formula,
    email: `${uniq("flow")}@example.com`,
    phone: leadPhone,
    budget: "5000",
  });
  assert.ok(leadId);

  const sent = await until("the greeting to be sent", async () => {
    const rows = await messagesOf(leadId);
    return rows.find((row) => row.status === "sent");
  });
  assert.equal(sent.kind, "template", "outside the 24-hour window the greeting is the template");
  assert.equal(sent.template_name, template.name);
  assert.match(sent.provider_message_id ?? "", /^wamid\./, "the wamid is recorded");
  const delivered = graph.state.messages.filter((m) =>
    m.phoneNumberId === phone.id && m.waId === digits(leadPhone)
  );
  assert.equal(delivered.length, 1, "exactly one WhatsApp message reached Meta");
  assert.equal(delivered[0].template?.name, template.name);
  assert.equal(delivered[0].id, sent.provider_message_id);

  await until("the lead's row in the sheet", () => rowsWithLead(spreadsheetId, leadId).length > 0);
  const [header, ...rows] = google.rows(spreadsheetId, "Leads");
  assert.deepEqual(
    header,
    ["Name", "Email", "Phone", "Budget", "Lead ID"],
    "header written with the first row",
  );
  assert.equal(rows.filter((row) => row.includes(leadId)).length, 1, "one row per lead");
  const row = rows.find((r) => r.includes(leadId))!;
  assert.equal(row[2], leadPhone);
  assert.equal(row[3], "5000", "custom.budget column");
  const cells = google.cells(spreadsheetId, "Leads");
  const nameCell = cells.find((line) => line.some((cell) => cell?.value === leadId))![0];
  assert.equal(nameCell?.value, formula, "RAW input: the formula is stored as text");
  assert.equal(nameCell?.formula, undefined, "RAW input: not a formula");
  assert.ok(
    google.requests.filter((r) => r.kind === "values.append" && r.spreadsheetId === spreadsheetId)
      .every((r) => r.valueInputOption === "RAW"),
  );

  const notified = await db()<{ user_id: string; kind: string }[]>`
    select user_id, kind from public.notifications where client_id = ${t.clientId} and lead_id = ${leadId}`;
  assert.ok(
    notified.some((n) => n.user_id === t.ownerId && n.kind === "lead.created"),
    "the owner is notified of the new lead",
  );

  // Running the greeting job again (an admin's replay) finds the sent message and sends nothing.
  const [greeting] = await jobsOf(t.clientId, "whatsapp.greeting");
  assert.equal(greeting.status, "succeeded");
  await db()`select app.retry_job(${t.clientId}, ${greeting.id}::bigint, 3)`;
  await finished(greeting.id);
  await until(
    "the replayed greeting to finish",
    async () => (await jobById(greeting.id)).status === "succeeded",
  );
  assert.equal(
    graph.state.messages.filter((m) => m.phoneNumberId === phone.id && m.waId === digits(leadPhone)).length,
    1,
    "a replayed greeting job does not send again",
  );
});

test("integrations flow: a Meta leadgen delivered 3 times in a row and 5 at once makes one lead, greeting and row", async () => {
  const t = await tenant("meta");
  await enableAutomations(t.clientId, ["whatsapp_greeting", "sheets_append"]);
  const phone = await connectWhatsApp(t.clientId);
  const { spreadsheetId } = await connectSheets(t.clientId);
  const { page, form } = await connectPage(t.clientId);
  const [product] = await db()<{ id: string }[]>`
    with i as (insert into public.industries (name) values (${uniq("Industry")}) returning id),
    c as (insert into public.categories (industry_id, name) select id, 'Loans' from i returning id),
    p as (insert into public.products (category_id, name) select id, 'Home loan' from c returning id)
    insert into public.client_products (client_id, product_id) select ${t.clientId}, id from p returning product_id as id`;
  await db()`update public.meta_forms set product_id = ${product.id} where form_id = ${form.id}`;
  const leadPhone = newPhone();
  const lead = graph.addLead(form.id, {
    fieldData: [
      { name: "full_name", values: ["Zoë Ångström"] },
      { name: "email", values: [`${uniq("meta")}@example.com`] },
      { name: "phone_number", values: [leadPhone] },
      { name: "budget", values: ["9000"] },
    ],
  });
  const delivery = leadgenChange({ pageId: page.id, formId: form.id, leadgenId: lead.id });
  const send = async () => {
    const reply = await deliver(`${stack.url}/functions/v1/webhooks/meta`, delivery, {
      appSecret: graph.appSecret,
    });
    assert.equal(reply.status, 200, await reply.text());
  };
  for (let i = 0; i < 3; i++) await send();
  await Promise.all(Array.from({ length: 5 }, send));

  const stored = await until("the lead from Meta", async () => {
    const rows = await db()<
      { id: string; full_name: string; product_id: string; owner_membership_id: string }[]
    >`
      select id, full_name, product_id, owner_membership_id from public.leads
      where client_id = ${t.clientId} and source = 'meta' and external_ref = ${lead.id}`;
    return rows.length ? rows : undefined;
  });
  assert.equal(stored.length, 1, "eight deliveries of one leadgen make one lead");
  assert.equal(stored[0].full_name, "Zoë Ångström", "mapped fields, non-ASCII intact");
  assert.equal(stored[0].product_id, product.id, "the form's product");
  assert.ok(stored[0].owner_membership_id, "assigned by the round robin");
  const leadId = stored[0].id;
  await until("the greeting", async () => (await messagesOf(leadId)).some((m) => m.status === "sent"));
  await until("the sheet row", () => rowsWithLead(spreadsheetId, leadId).length > 0);
  await until("the owner's notification", async () => {
    const [row] =
      await db()`select 1 from public.notifications where lead_id = ${leadId} and user_id = ${t.ownerId}`;
    return row;
  });
  // One more drain round so that any duplicate would have had its chance.
  await drain();
  assert.equal(
    graph.state.messages.filter((m) => m.phoneNumberId === phone.id && m.waId === digits(leadPhone)).length,
    1,
    "one greeting reached WhatsApp",
  );
  assert.equal(rowsWithLead(spreadsheetId, leadId).length, 1, "one row in the sheet");
  const fetches = await jobsOf(t.clientId, "meta.fetch_lead");
  assert.equal(fetches.length, 1, "one fetch job for the eight deliveries");
});

test("sheets.append: two 429s then success append exactly one row, and leads are batched", async () => {
  const t = await tenant();
  await enableAutomations(t.clientId, ["sheets_append"]);
  const { spreadsheetId } = await connectSheets(t.clientId);
  google.failNext(
    (r) => r.kind === "values.append" && r.spreadsheetId === spreadsheetId,
    quotaExceeded(),
    2,
  );
  const leadId = await insertLead(t.clientId);
  await until("the row after two 429s", () => rowsWithLead(spreadsheetId, leadId).length > 0);
  assert.equal(rowsWithLead(spreadsheetId, leadId).length, 1, "one row despite the retried appends");
  const appends = google.requests.filter((r) =>
    r.kind === "values.append" && r.spreadsheetId === spreadsheetId
  );
  assert.equal(appends.length, 3, "two refused appends, then the one that worked");

  // Several leads at once: every one gets exactly one row, however the jobs were batched.
  const many: string[] = [];
  for (let i = 0; i < 5; i++) many.push(await insertLead(t.clientId));
  await until("five more rows", () => many.every((id) => rowsWithLead(spreadsheetId, id).length === 1));
  const jobs = await until("every append job to finish", async () => {
    const all = await jobsOf(t.clientId, "sheets.append");
    return all.length === 6 && all.every((job) => job.status === "succeeded") ? all : undefined;
  });
  assert.equal(jobs.length, 6);
  assert.equal(google.rows(spreadsheetId, "Leads").length, 1 + 6, "header and six rows, no duplicates");
});

test("whatsapp.greeting: a refused token marks the integration broken and pauses only that client", async () => {
  const broken = await tenant();
  const healthy = await tenant();
  await enableAutomations(broken.clientId, ["whatsapp_greeting"]);
  await enableAutomations(healthy.clientId, ["whatsapp_greeting"]);
  const phone = await connectWhatsApp(broken.clientId);
  const healthyPhone = await connectWhatsApp(healthy.clientId);
  graph.failNext(
    { method: "POST", pathPattern: new RegExp(`^/${phone.id}/messages$`) },
    graphErrors.tokenInvalid(401),
  );

  const leadId = await insertLead(broken.clientId);
  const job = await finishedJob(broken.clientId, "whatsapp.greeting");
  assert.equal(job.status, "dead", "a refused token is not retried");
  assert.equal(job.attempts, 1);
  assert.match(job.errors.at(-1)!.message, /access token/i, "the error says what is wrong");
  assert.equal(job.errors.at(-1)!.code, "whatsapp_token_invalid");
  const [integration] = await db()<{ status: string; status_detail: string }[]>`
    select status, status_detail from public.integrations where client_id = ${broken.clientId} and kind = 'whatsapp'`;
  assert.equal(integration.status, "broken");
  assert.ok(integration.status_detail);
  const messages = await messagesOf(leadId);
  assert.deepEqual(
    messages.map((m) => m.status),
    ["failed"],
    "the refused message is recorded failed, not sent",
  );
  const pauses = await db()<{ client_id: string }[]>`
    select client_id from app.job_pauses where client_id = any (${[
    broken.clientId,
    healthy.clientId,
  ]}::text[])
      and kind_pattern = 'whatsapp.greeting'`;
  assert.deepEqual(pauses.map((p) => p.client_id), [broken.clientId], "only the broken client is paused");
  const [notice] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.notifications
    where client_id = ${broken.clientId} and user_id = ${broken.ownerId} and kind = 'integration.broken'`;
  assert.equal(notice.n, 1, "the owner is told once");

  // The healthy client's greetings still flow; the broken client's next greeting waits for the fix.
  const waiting = await insertLead(broken.clientId);
  const healthyLead = await insertLead(healthy.clientId);
  await until(
    "the healthy client's greeting",
    async () => (await messagesOf(healthyLead))[0]?.status === "sent",
  );
  assert.ok(graph.state.messages.some((m) => m.phoneNumberId === healthyPhone.id));
  const [held] = await db()<{ status: string }[]>`
    select j.status from app.jobs j where j.client_id = ${broken.clientId} and j.kind = 'whatsapp.greeting'
      and j.payload ->> 'lead_id' = ${waiting}`;
  assert.equal(held.status, "queued", "the paused client's greeting waits");
});

test("whatsapp.greeting: inside the 24-hour window text is sent; 131047 falls back to the template", async () => {
  const t = await tenant();
  await enableAutomations(t.clientId, ["whatsapp_greeting"]);
  const phone = await connectWhatsApp(t.clientId);

  // The lead wrote to us (our record) but Meta's window is closed: Meta refuses the text with 131047.
  await db()`update public.automations set enabled = false where client_id = ${t.clientId}`;
  const fallbackPhone = newPhone();
  const fallbackLead = await insertLead(t.clientId, { phone: fallbackPhone });
  const openPhone = newPhone();
  const openLead = await insertLead(t.clientId, { phone: openPhone });
  for (const leadId of [fallbackLead, openLead]) {
    await db()`insert into public.lead_messages (client_id, lead_id, direction, status, kind, body)
               values (${t.clientId}, ${leadId}, 'inbound', 'received', 'text', 'Hello?')`;
  }
  graph.openServiceWindow(phone.id, digits(openPhone));
  for (const leadId of [fallbackLead, openLead]) {
    await enqueue(t.clientId, "whatsapp.greeting", { lead_id: leadId });
  }

  await until("both greetings", async () => {
    const jobs = await jobsOf(t.clientId, "whatsapp.greeting");
    return jobs.length === 2 && jobs.every((job) => job.status === "succeeded");
  });
  const fallback = await messagesOf(fallbackLead);
  assert.deepEqual(
    fallback.map((m) => [m.kind, m.status]).sort(),
    [["template", "sent"], ["text", "failed"]],
    "the refused text is recorded failed and the template sent",
  );
  assert.equal(fallback.find((m) => m.kind === "text")?.error?.code, 131047);
  const open = await messagesOf(openLead);
  assert.deepEqual(
    open.map((m) => [m.kind, m.status]),
    [["text", "sent"]],
    "inside the window: free-form text",
  );
  assert.equal(
    graph.state.messages.find((m) => m.waId === digits(openPhone))?.text,
    "Hi! Thanks for your interest.",
  );
});

test("whatsapp.greeting: an unreachable recipient flags the lead and the job ends without retrying", async () => {
  const t = await tenant();
  await enableAutomations(t.clientId, ["whatsapp_greeting"]);
  await connectWhatsApp(t.clientId);
  const phone = newPhone();
  graph.markUnreachable(digits(phone));
  const leadId = await insertLead(t.clientId, { phone });
  const job = await finishedJob(t.clientId, "whatsapp.greeting");
  assert.equal(job.status, "succeeded", "nothing to retry");
  assert.equal(job.attempts, 1);
  assert.equal(job.result?.outcome, "recipient_unreachable");
  const [lead] = await db()<
    { custom: Record<string, unknown> }[]
  >`select custom from public.leads where id = ${leadId}`;
  assert.equal(lead.custom.whatsapp_unreachable, true, "the lead is flagged");
  const [activity] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.lead_activities where lead_id = ${leadId} and kind = 'whatsapp_unreachable'`;
  assert.equal(activity.n, 1, "and its timeline says why");
  assert.deepEqual((await messagesOf(leadId)).map((m) => m.status), ["failed"]);
});

/** Drains until `probe` holds, leaving retry times alone (until() brings them forward). */
async function drainUntil<T>(what: string, probe: () => Promise<T | undefined | null | false>) {
  const deadline = Date.now() + 20_000;
  for (;;) {
    await drain();
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** A client with WhatsApp whose next send to a new lead fails with `fault`; returns the greeting's job. */
async function greetingWithFault(fault: "lost_reply" | "network") {
  const t = await tenant();
  const phone = await connectWhatsApp(t.clientId);
  const leadPhone = newPhone();
  const leadId = await insertLead(t.clientId, { phone: leadPhone });
  graph.failNext({ method: "POST", pathPattern: new RegExp(`^/${phone.id}/messages$`) }, fault);
  const jobId = await enqueue(t.clientId, "whatsapp.greeting", { lead_id: leadId });
  const sentTo = () => graph.state.messages.filter((m) => m.waId === digits(leadPhone));
  const waiting = await drainUntil("the first attempt", async () => {
    const job = await jobById(jobId);
    return job.attempts === 1 && job.status === "queued" && job;
  });
  assert.equal(
    waiting.errors[0].code,
    "whatsapp_send_unconfirmed",
    "an unanswered send is not resent at once",
  );
  return { phone, leadId, jobId, sentTo };
}

test("whatsapp.greeting: a send whose reply was lost is confirmed by its status webhook, never sent twice", async () => {
  const { phone, leadId, jobId, sentTo } = await greetingWithFault("lost_reply");
  const [sent] = sentTo();
  assert.ok(sent, "WhatsApp took the message; only its answer was lost");
  const [queued] = await db()<{ id: string; status: string }[]>`
    select id, status from public.lead_messages where lead_id = ${leadId} and direction = 'outbound'`;
  assert.equal(queued.status, "queued", "WA-90: unconfirmed, it stays queued");
  assert.equal(sent.callbackData, queued.id, "WA-91: the send carried the message's id for its statuses");

  const status = statusUpdate({
    phoneNumberId: phone.id,
    messageId: sent.id,
    recipientId: sent.waId,
    status: "delivered",
    callbackData: sent.callbackData,
  });
  const webhook = `${stack.url}/functions/v1/webhooks/whatsapp`;
  assert.equal((await deliver(webhook, status, { appSecret: graph.appSecret })).status, 200);
  const job = await drainUntil("the greeting to finish", async () => {
    const row = await jobById(jobId);
    return row.status === "succeeded" && row;
  });
  assert.equal(job.attempts, 2);
  assert.equal(sentTo().length, 1, "WA-92: the lead is greeted once");
  assert.deepEqual(
    (await messagesOf(leadId)).map((m) => [m.status, m.provider_message_id, m.error]),
    [["delivered", sent.id, null]],
    "WA-93: the status recorded the message as delivered under its wamid",
  );
});

test("whatsapp.greeting: a send that never reached WhatsApp is sent again once the wait for its status ends", async () => {
  const started = Date.now();
  const { leadId, jobId, sentTo } = await greetingWithFault("network");
  assert.equal(sentTo().length, 0, "the connection failed before WhatsApp took anything");
  const job = await drainUntil("the resend", async () => {
    const row = await jobById(jobId);
    return row.status === "succeeded" && row;
  });
  assert.ok(
    Date.now() - started >= UNCONFIRMED_WAIT_SECONDS * 1000,
    "WA-94: the resend waited for a status that never came",
  );
  assert.equal(job.attempts, 2);
  assert.equal(sentTo().length, 1, "WA-95: then sent once");
  assert.deepEqual((await messagesOf(leadId)).map((m) => [m.status, m.provider_message_id]), [[
    "sent",
    sentTo()[0].id,
  ]]);
});

test("whatsapp.greeting: a dead greeting retried once its template is fixed is sent and recorded sent", async () => {
  const t = await tenant();
  const phone = await connectWhatsApp(t.clientId, { template_name: "lead_greeting_v2" });
  const leadId = await insertLead(t.clientId);
  const jobId = await enqueue(t.clientId, "whatsapp.greeting", { lead_id: leadId });
  const dead = await until("the refused greeting", async () => {
    const job = await jobById(jobId);
    return job.status === "dead" && job;
  });
  assert.equal(dead.errors.at(-1)!.code, "whatsapp_refused", "WhatsApp does not know the template");
  assert.deepEqual((await messagesOf(leadId)).map((m) => m.status), ["failed"]);

  // The client fixes the template name and retries the job through the API.
  await db()`update public.integrations set settings = settings || ${
    db().json({ template_name: template.name })
  }
             where client_id = ${t.clientId} and kind = 'whatsapp'`;
  const retried = await call(stack, "POST", `/api/clients/${t.clientId}/jobs/${jobId}/retry`, {
    token: t.token,
  });
  assert.equal(retried.status, 200, JSON.stringify(retried.body));
  await until("the retried greeting", async () => (await jobById(jobId)).status === "succeeded");
  const [message] = await messagesOf(leadId);
  assert.equal(message.status, "sent", "WA-96: the message the retry sent is recorded sent, not failed");
  assert.equal(message.error, null);
  const sent = graph.state.messages.filter((m) => m.phoneNumberId === phone.id);
  assert.deepEqual(
    sent.map((m) => m.id),
    [message.provider_message_id],
    "sent once, under the recorded wamid",
  );
});

test("meta.backfill: a missed lead is created once, and the webhook path does not duplicate it", async () => {
  const t = await tenant();
  const { page, form } = await connectPage(t.clientId);
  const missed = graph.addLead(form.id, {
    fieldData: [
      { name: "full_name", values: ["Missed Lead"] },
      { name: "email", values: [`${uniq("missed")}@example.com`] },
      { name: "phone_number", values: [newPhone()] },
      { name: "city", values: ["Leeds"] },
    ],
  });

  const first = await finished(await enqueue(t.clientId, "meta.backfill", { form_id: form.id }));
  assert.equal(first.status, "succeeded", JSON.stringify(first.errors));
  assert.equal(first.result?.created, 1);
  const leads = () =>
    db()<{ id: string; source: string; custom: Record<string, string> }[]>`
      select id, source, custom from public.leads where client_id = ${t.clientId} and external_ref = ${missed.id}`;
  assert.equal((await leads()).length, 1);
  assert.equal((await leads())[0].source, "meta");
  assert.equal(
    (await leads())[0].custom.city,
    "Leeds",
    "mapped like the webhook path: extra answers in custom",
  );
  const [form1] = await db()<{ backfilled_until: string }[]>`
    select backfilled_until from public.meta_forms where form_id = ${form.id}`;
  assert.equal(
    new Date(form1.backfilled_until).getTime(),
    missed.createdTime.getTime(),
    "backfilled_until advances",
  );

  const again = await finished(await enqueue(t.clientId, "meta.backfill", { form_id: form.id }));
  assert.equal(again.result?.created, 0, "a second backfill creates nothing");

  // The webhook for the same leadgen arrives late: meta.fetch_lead finds the backfilled lead.
  const fetch = await finished(
    await enqueue(t.clientId, "meta.fetch_lead", {
      leadgen_id: missed.id,
      page_id: page.id,
      form_id: form.id,
      product_id: null,
      created_time: Math.floor(missed.createdTime.getTime() / 1000),
    }),
  );
  assert.equal(fetch.status, "succeeded", JSON.stringify(fetch.errors));
  assert.equal(fetch.result?.outcome, "existing");
  assert.equal((await leads()).length, 1, "webhook and backfill never duplicate a lead");
});

test("integrations.health: a dead token is marked broken and pauses only that client; a new one lifts it", async () => {
  const sick = await tenant();
  const well = await tenant();
  const phone = await connectWhatsApp(sick.clientId);
  await connectWhatsApp(well.clientId);
  const { page } = await connectPage(sick.clientId);
  graph.expireToken(phone.accessToken);
  // The page token expires in three days: the admins hear about it, once a day.
  graph.state.tokens.get(page.accessToken)!.expiresAt = new Date(Date.now() + 3 * 24 * 3600 * 1000);

  const check = await finished(await enqueue(sick.clientId, "integrations.health", {}));
  assert.equal(check.status, "succeeded", JSON.stringify(check.errors));
  const status = async (clientId: string) =>
    (await db()<{ status: string }[]>`
      select status from public.integrations where client_id = ${clientId} and kind = 'whatsapp'`)[0].status;
  assert.equal(await status(sick.clientId), "broken");
  const paused = await db()<{ client_id: string; kind_pattern: string }[]>`
    select client_id, kind_pattern from app.job_pauses where client_id = any (${[
    sick.clientId,
    well.clientId,
  ]}::text[])`;
  assert.deepEqual(
    [...paused],
    [{ client_id: sick.clientId, kind_pattern: "whatsapp.greeting" }],
    "only the sick client's WhatsApp",
  );
  const [pageRow] = await db()<{ status: string; token_expires_at: Date }[]>`
    select status, token_expires_at from public.meta_pages where page_id = ${page.id}`;
  assert.equal(pageRow.status, "ok");
  assert.ok(pageRow.token_expires_at);
  const expiring = async () =>
    (await db()<{ n: number }[]>`
      select count(*)::int as n from public.notifications
      where client_id = ${sick.clientId} and user_id = ${sick.ownerId} and kind = 'integration.expiring'`)[0]
      .n;
  assert.equal(await expiring(), 1);

  // WhatsApp reconnected with a working token: the next check lifts the pause; no second expiry notice today.
  const fresh = graph.addPhoneNumber();
  await storeIntegration(sick.clientId, "whatsapp", {
    phone_number_id: fresh.id,
    template_name: template.name,
    template_language: template.language,
  }, fresh.accessToken);
  const recheck = await finished(await enqueue(sick.clientId, "integrations.health", {}));
  assert.equal(recheck.status, "succeeded", JSON.stringify(recheck.errors));
  assert.equal(await status(sick.clientId), "ok");
  const [{ n }] = await db()<{ n: number }[]>`
    select count(*)::int as n from app.job_pauses where client_id = ${sick.clientId}`;
  assert.equal(n, 0, "the pause is lifted");
  assert.equal(await expiring(), 1, "an expiring token is announced once a day");
});

test("sheets.import: rows become leads once, bad rows are reported with their row numbers", async () => {
  const t = await tenant();
  const { spreadsheetId } = await connectSheets(t.clientId);
  const goodPhone = newPhone();
  google.setRows(spreadsheetId, "Leads", [
    ["Name", "Email", "Phone", "Budget", "Favourite colour"],
    ["Ann Example", `${uniq("ann")}@example.com`, goodPhone, "1000", "blue"],
    ["Bad Email", "not-an-email", "", "", ""],
    ["Bad Phone", "", "12345", "", ""],
    ["Bo Example", `${uniq("bo")}@example.com`, "", "", "green"],
  ]);

  const importOnce = async () => {
    const reply = await call(stack, "POST", `/api/clients/${t.clientId}/imports/google-sheets`, {
      token: t.token,
      body: {},
    });
    assert.equal(reply.status, 202, JSON.stringify(reply.body));
    return await finished(String(reply.body.job_id));
  };
  const first = await importOnce();
  assert.equal(first.status, "succeeded", JSON.stringify(first.errors));
  assert.equal(first.result?.created, 2);
  const invalid = first.result?.invalid as Array<{ row: number; errors: Array<{ path: string }> }>;
  assert.deepEqual(invalid.map((r) => r.row), [3, 4], "both bad rows are reported");
  assert.equal(invalid[0].errors[0].path, "email");
  assert.equal(invalid[1].errors[0].path, "phone");
  const [ann] = await db()<{ phone: string; source: string; custom: Record<string, string> }[]>`
    select phone, source, custom from public.leads
    where client_id = ${t.clientId} and external_ref = ${`${spreadsheetId}:Leads:2`}`;
  assert.equal(ann.source, "google_sheets");
  assert.equal(ann.phone, goodPhone);
  assert.deepEqual(ann.custom, { budget: "1000", "Favourite colour": "blue" }, "mapped and unknown columns");

  const second = await importOnce();
  assert.equal(second.result?.created, 0, "a second import creates nothing");
  assert.equal(second.result?.existing, 2);
  const [{ n }] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.leads where client_id = ${t.clientId} and source = 'google_sheets'`;
  assert.equal(n, 2);

  const none = await tenant();
  const refused = await call(stack, "POST", `/api/clients/${none.clientId}/imports/google-sheets`, {
    token: none.token,
    body: {},
  });
  assert.equal(refused.status, 409, "no integration, no import");
});

test("sheets.import: a cell PostgreSQL cannot store fails only its row; a column named like an Object method is kept", async () => {
  const t = await tenant();
  const { spreadsheetId } = await connectSheets(t.clientId);
  google.setRows(spreadsheetId, "Leads", [
    ["Name", "Email", "constructor", "toString"],
    ["Nul Cell", `${uniq("nul")}@example.com`, "a\u0000b", ""],
    ["Cy Example", `${uniq("cy")}@example.com`, "builder", "yes"],
  ]);
  const reply = await call(stack, "POST", `/api/clients/${t.clientId}/imports/google-sheets`, {
    token: t.token,
    body: {},
  });
  assert.equal(reply.status, 202, JSON.stringify(reply.body));
  const job = await finished(String(reply.body.job_id));
  assert.equal(job.status, "succeeded", JSON.stringify(job.errors));
  assert.equal(job.result?.created, 1);
  assert.deepEqual(job.result?.invalid, [{
    row: 2,
    errors: [{ path: "constructor", message: UNSTORABLE_TEXT_MESSAGE, code: "invalid_string" }],
  }]);
  const [cy] = await db()<{ custom: Record<string, string> }[]>`
    select custom from public.leads where client_id = ${t.clientId} and external_ref = ${`${spreadsheetId}:Leads:3`}`;
  assert.deepEqual(cy.custom, { constructor: "builder", toString: "yes" });
});

test("app.schedule_periodic_jobs enqueues each periodic job once per period", async () => {
  const t = await tenant();
  await connectWhatsApp(t.clientId);
  const { form } = await connectPage(t.clientId);
  // Connected two hours ago: due for its first check and backfill.
  await db()`update public.integrations set created_at = now() - interval '2 hours' where client_id = ${t.clientId}`;
  await db()`update public.meta_pages set created_at = now() - interval '2 hours' where client_id = ${t.clientId}`;
  await db()`update public.meta_forms set created_at = now() - interval '2 hours' where client_id = ${t.clientId}`;
  await db()`select app.schedule_periodic_jobs(8)`;
  await db()`select app.schedule_periodic_jobs(8)`;
  const jobs = await db()<{ kind: string; idempotency_key: string }[]>`
    select kind, idempotency_key from app.jobs where client_id = ${t.clientId} order by kind`;
  assert.deepEqual(jobs.map((j) => j.kind), ["integrations.health", "meta.backfill"], "one of each");
  assert.match(jobs[0].idempotency_key, new RegExp(`^health:${t.clientId}:\\d{4}-\\d{2}-\\d{2}-\\d{2}$`));
  assert.match(
    jobs[1].idempotency_key,
    new RegExp(`^backfill:${form.id}:\\d{4}-\\d{2}-\\d{2}T\\d{2}:(00|15|30|45)$`),
  );
});
