/**
 * The HTTP authorization matrix: every route of the api function (functions/api/catalog.ts, `apiRoutes`)
 * against the callers that must be refused, mirroring the database attack matrix
 * (tests/db/attack_matrix_test.ts) one layer up. For each route:
 *
 *   other_client       client B's owner addresses client A's ids (a client in the path, or a client-A-only
 *                      row) and gets 404, never 200 or 403, so existence does not leak;
 *   outside_hierarchy  a team-scoped caller addresses a row outside their part of the reporting hierarchy
 *                      (outside_agent's membership or account) and gets 404, or the check is marked n/a;
 *   no_permission      a member of A whose role lacks the route's x-permission gets 403 permission_denied;
 *                      a route without x-permission states the rule it follows, and that rule is tested;
 *   no_token           the request that succeeds with a token is a 401 without one;
 *   allowed            the positive control: an allowed caller gets 2xx on fresh fixtures, so a malformed
 *                      request can never pass as a denial.
 *
 * A final test requires the case keys to equal the route keys exactly, so a new route without an
 * authorization case fails CI, and prints the route x check table of observed statuses.
 *
 * Client A: owner > admin > manager > {agent, team_mate}; admin > {outside_agent, viewer, lead, noperm}.
 *   lead    holds "team_lead", a custom team-scoped role WITH members.manage: the manager template has no
 *           members.manage, so on members.manage routes the manager is stopped by the permission gate
 *           before any hierarchy check; the lead is the team-scoped caller that reaches the hierarchy gate.
 *           Both are probed on those routes: the manager gets 403 permission_denied (as for any id, so
 *           nothing leaks), the lead gets 404.
 *   noperm  holds "nothing", a custom role with no permissions at all (every template holds *.read).
 * Client B: its owner. Also a platform administrator, and "loner", a user who belongs to no client.
 *
 * Lead modules: a catalog industry > category with one product both clients sell and one only A sells; leads
 * of A owned by agent, team_mate and outside_agent and one of B (explicit owners, unique emails); notes on
 * the agent's lead (by the agent and by the admin) and on outside_agent's; one API key row per client. On
 * lead routes the outside_hierarchy check is the manager (team scope) addressing outside_agent's lead.
 * Probes that a wrong answer would make destructive use fresh rows (newLead, newRule, newApiKey, ...).
 */
import assert from "node:assert/strict";
import { apiRoutes } from "../../functions/api/catalog.ts";
import {
  addMember,
  call,
  createClient,
  createUser,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

const signIn = sessionToken;

// -- Fixtures ------------------------------------------------------------------------------------------

const A = await createClient(uniq("authz-a"), "Client A");
const B = await createClient(uniq("authz-b"), "Client B");
// The team lead holds the manager template's permissions plus members.manage, so the escalation guard lets
// them hand out the agent role.
await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
  select ${A}, 'team_lead', 'Team lead', 30, 'team', permissions || '{members.manage}'
  from public.roles where client_id = ${A} and key = 'manager'
  union all
  select ${A}, 'nothing', 'Nothing', 60, 'own', '{}'::text[]`;

const users = {
  owner: await createUser({ name: "Owner" }),
  admin: await createUser({ name: "Admin" }),
  manager: await createUser({ name: "Manager" }),
  agent: await createUser({ name: "Agent" }),
  team_mate: await createUser({ name: "Team mate" }),
  outside_agent: await createUser({ name: "Outside agent" }),
  viewer: await createUser({ name: "Viewer" }),
  lead: await createUser({ name: "Team lead" }),
  noperm: await createUser({ name: "No permissions" }),
  b_owner: await createUser({ name: "B owner" }),
  platform: await createUser({ name: "Platform admin", admin: true }),
  loner: await createUser({ name: "Member of no client" }),
};
const owner = await addMember(A, users.owner.id, "owner");
const admin = await addMember(A, users.admin.id, "admin", owner);
const manager = await addMember(A, users.manager.id, "manager", admin);
const m = {
  owner,
  admin,
  manager,
  agent: await addMember(A, users.agent.id, "agent", manager),
  team_mate: await addMember(A, users.team_mate.id, "agent", manager),
  outside_agent: await addMember(A, users.outside_agent.id, "agent", admin),
  viewer: await addMember(A, users.viewer.id, "viewer", admin),
  lead: await addMember(A, users.lead.id, "team_lead", admin),
  noperm: await addMember(A, users.noperm.id, "nothing", admin),
  b_owner: await addMember(B, users.b_owner.id, "owner"),
};

const t = {
  owner: await signIn(users.owner, A),
  admin: await signIn(users.admin, A),
  manager: await signIn(users.manager, A),
  agent: await signIn(users.agent, A),
  viewer: await signIn(users.viewer, A),
  lead: await signIn(users.lead, A),
  noperm: await signIn(users.noperm, A),
  b_owner: await signIn(users.b_owner, B),
  platform: await signIn(users.platform, null),
  loner: await signIn(users.loner, null),
};

async function roleId(clientId: string, key: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    select id from public.roles where client_id = ${clientId} and key = ${key}`;
  return row.id;
}
const aAgentRole = await roleId(A, "agent");

/** A fresh member of client A (a new account) reporting to reportsTo; optionally also a member of B. */
async function newMember(reportsTo: string, options: { role?: string; alsoInB?: boolean } = {}) {
  const user = await createUser({ name: "Fresh member" });
  const membership = await addMember(A, user.id, options.role ?? "agent", reportsTo);
  if (options.alsoInB) await addMember(B, user.id, "agent", m.b_owner);
  return { user, membership };
}

/** A fresh unused role of client A. */
async function newRole(): Promise<{ id: string; name: string }> {
  const [row] = await db()<{ id: string; name: string }[]>`
    insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${A}, ${uniq("tmp")}, 'Temporary', 70, 'own', '{members.read}') returning id, name`;
  return row;
}

/** A fresh client, optionally inactive, optionally with an owner. */
async function newClient(options: { inactive?: boolean; ownerId?: string } = {}): Promise<string> {
  const id = await createClient(uniq("authz-x"));
  if (options.ownerId) await addMember(id, options.ownerId, "owner");
  if (options.inactive) await db()`update public.clients set status = 'inactive' where id = ${id}`;
  return id;
}

const newEmail = () => `${uniq("authz")}@example.com`;

async function membershipExists(id: string): Promise<boolean> {
  return (await db()`select 1 from public.memberships where id = ${id}`).length > 0;
}
async function roleKeyOf(membershipId: string): Promise<string> {
  const [row] = await db()<{ key: string }[]>`
    select r.key from public.memberships m join public.roles r on r.id = m.role_id where m.id = ${membershipId}`;
  return row.key;
}
/** The memberships in a member's part of the hierarchy, from the closure table (depth 0 is the member). */
async function teamOf(membershipId: string, minDepth = 0): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`
    select descendant_id as id from app.membership_closure
    where ancestor_id = ${membershipId} and depth >= ${minDepth}`;
  return rows.map((row) => row.id).sort();
}
async function isDisabled(userId: string): Promise<boolean> {
  const [row] = await db()<{ disabled: boolean }[]>`
    select disabled_at is not null as disabled from public.users where id = ${userId}`;
  return row.disabled;
}
async function disableDirectly(userId: string): Promise<void> {
  await db()`update public.users set disabled_at = now() where id = ${userId}`;
}
async function clientStatus(id: string): Promise<string | undefined> {
  const [row] = await db()<{ status: string }[]>`select status from public.clients where id = ${id}`;
  return row?.status;
}
async function roleName(id: string): Promise<string | undefined> {
  const [row] = await db()<{ name: string }[]>`select name from public.roles where id = ${id}`;
  return row?.name;
}
async function userExists(email: string): Promise<boolean> {
  return (await db()`select 1 from public.users where email = ${email}`).length > 0;
}
/** Client A must stay active for the other cases; a wrongly allowed status change is undone. */
async function keepAActive(): Promise<void> {
  const status = await clientStatus(A);
  await db()`update public.clients set status = 'active' where id = ${A}`;
  assert.equal(status, "active", `client A's status was changed to ${status}`);
}

const ids = (reply: Reply): string[] => reply.body.data.map((row: { id: string }) => row.id);
const codes = (reply: Reply): string[] => reply.body.data.map((row: { code: string }) => row.code);

// -- Fixtures of the lead modules: catalog, client products, leads, notes, rules, API keys ----------------

async function newIndustry(): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.industries (name) values (${uniq("Authz industry")}) returning id`;
  return row.id;
}
async function newCategory(industryId: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.categories (industry_id, name) values (${industryId}, ${uniq("Authz category")})
    returning id`;
  return row.id;
}
/** A fresh catalog product, enabled for the given clients. */
async function newProduct(categoryId: string, enableFor: string[] = []): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.products (category_id, name) values (${categoryId}, ${uniq("Authz product")})
    returning id`;
  for (const clientId of enableFor) {
    await db()`insert into public.client_products (client_id, product_id) values (${clientId}, ${row.id})`;
  }
  return row.id;
}

const catalogIndustry = await newIndustry();
const catalogCategory = await newCategory(catalogIndustry);
const catalog = {
  industry: catalogIndustry,
  category: catalogCategory,
  /** Sold by both clients. */
  product: await newProduct(catalogCategory, [A, B]),
  /** Sold by client A only. */
  aOnlyProduct: await newProduct(catalogCategory, [A]),
};
const freshProduct = (enableFor: string[] = []) => newProduct(catalog.category, enableFor);

type CatalogTable = "industries" | "categories" | "products";
async function catalogName(table: CatalogTable, id: string): Promise<string | undefined> {
  const [row] = await db().unsafe<{ name: string }[]>(`select name from public.${table} where id = $1`, [id]);
  return row?.name;
}
async function catalogHasName(table: CatalogTable, name: string): Promise<boolean> {
  return (await db().unsafe(`select 1 from public.${table} where name = $1`, [name])).length > 0;
}
async function isEnabled(clientId: string, productId: string): Promise<boolean> {
  return (await db()`
    select 1 from public.client_products where client_id = ${clientId} and product_id = ${productId}`)
    .length > 0;
}
/** The product ids of a catalog tree (GET /catalog). */
function catalogProducts(reply: Reply): string[] {
  return reply.body.data.flatMap((industry: { categories: { products: { id: string }[] }[] }) =>
    industry.categories.flatMap((category) => category.products.map((product) => product.id))
  );
}
const productIds = (reply: Reply): string[] =>
  reply.body.data.map((row: { product_id: string }) => row.product_id);

/**
 * A lead of a client owned by the given membership, inserted with the database's rights (the routing trigger
 * keeps an explicit owner); its unique email keeps it from being anyone's duplicate.
 */
async function newLead(owner: string, clientId = A): Promise<{ id: string; email: string }> {
  const id = crypto.randomUUID();
  const email = newEmail();
  await db()`
    insert into public.leads (id, client_id, source, full_name, email, owner_membership_id)
    values (${id}, ${clientId}, 'manual', 'Fixture lead', ${email}, ${owner})`;
  return { id, email };
}
async function newNote(leadId: string, authorId: string, clientId = A): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.lead_notes (client_id, lead_id, author_id, body)
    values (${clientId}, ${leadId}, ${authorId}, 'Fixture note') returning id`;
  return row.id;
}

const leads = {
  agent: await newLead(m.agent),
  team_mate: await newLead(m.team_mate),
  outside: await newLead(m.outside_agent),
  b: await newLead(m.b_owner, B),
};
const notes = {
  agent: await newNote(leads.agent.id, users.agent.id),
  outside: await newNote(leads.outside.id, users.outside_agent.id),
  /** By the admin, above the manager's part of the hierarchy, on the agent's lead. */
  byAdmin: await newNote(leads.agent.id, users.admin.id),
};
const leadIds = (reply: Reply): string[] => reply.body.data.map((row: { id: string }) => row.id);
const noteIds = leadIds;

interface LeadState {
  client_id: string;
  full_name: string | null;
  status: string;
  owner_membership_id: string | null;
  notes: number;
}
async function leadState(id: string): Promise<LeadState> {
  const [row] = await db()<LeadState[]>`
    select client_id, full_name, status, owner_membership_id,
      (select count(*)::int from public.lead_notes n where n.lead_id = l.id) as notes
    from public.leads l where l.id = ${id}`;
  return row;
}
/** Records a lead's state now; the returned check fails when a refused request changed it. */
async function leadUnchanged(id: string): Promise<() => Promise<void>> {
  const before = await leadState(id);
  return async () => assert.deepEqual(await leadState(id), before, `lead ${id} was changed`);
}
/** Client A's leads owned by the given memberships. */
async function leadsOwnedBy(owners: string[]): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`
    select id from public.leads where client_id = ${A} and owner_membership_id = any (${owners}::uuid[])`;
  return rows.map((row) => row.id).sort();
}
async function leadsWithEmail(email: string): Promise<number> {
  const [row] = await db()<
    { n: number }[]
  >`select count(*)::int as n from public.leads where email = ${email}`;
  return row.n;
}

/** A fresh assignment rule of client A, for a fresh product A sells. */
async function newRule(): Promise<string> {
  const product = await freshProduct([A]);
  const [row] = await db()<{ id: string }[]>`
    insert into public.assignment_rules (client_id, product_id, role_keys)
    values (${A}, ${product}, '{agent}') returning id`;
  return row.id;
}
async function ruleEnabled(id: string): Promise<boolean | undefined> {
  const [row] = await db()<
    { enabled: boolean }[]
  >`select enabled from public.assignment_rules where id = ${id}`;
  return row?.enabled;
}
async function ruleForProduct(clientId: string, productId: string): Promise<boolean> {
  return (await db()`
    select 1 from public.assignment_rules where client_id = ${clientId} and product_id = ${productId}`)
    .length > 0;
}
async function isAvailable(membershipId: string): Promise<boolean> {
  const [row] = await db()<{ available: boolean }[]>`
    select available from public.memberships where id = ${membershipId}`;
  return row.available;
}

/** Every client's default pipeline (sql/0012_leads.sql). */
const DEFAULT_PIPELINE = [
  { key: "new", name: "New", position: 10, is_closed: false },
  { key: "contacted", name: "Contacted", position: 20, is_closed: false },
  { key: "qualified", name: "Qualified", position: 30, is_closed: false },
  { key: "won", name: "Won", position: 40, is_closed: true },
  { key: "lost", name: "Lost", position: 50, is_closed: true },
];
async function pipelineOf(clientId: string): Promise<string[]> {
  const rows = await db()<{ entry: string }[]>`
    select key || ':' || name as entry from public.lead_statuses where client_id = ${clientId}
    order by position, key`;
  return rows.map((row) => row.entry);
}
const defaultPipeline = DEFAULT_PIPELINE.map((status) => `${status.key}:${status.name}`);

/** An active API key row of a client (prefix unique, hash random), as the keys service would store it. */
async function newApiKey(clientId = A): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into app.api_keys (client_id, name, prefix, key_hash)
    values (${clientId}, 'Authz key', ${uniq("authz")}, ${crypto.getRandomValues(new Uint8Array(32))})
    returning id`;
  return row.id;
}
const apiKeys = { a: await newApiKey(A), b: await newApiKey(B) };
async function keyState(id: string): Promise<{ revoked: boolean; replaced: boolean }> {
  const [row] = await db()<{ revoked: boolean; replaced: boolean }[]>`
    select revoked_at is not null as revoked, replaced_by is not null as replaced
    from app.api_keys where id = ${id}`;
  return row;
}
async function keyNamed(clientId: string, name: string): Promise<boolean> {
  return (await db()`select 1 from app.api_keys where client_id = ${clientId} and name = ${name}`).length > 0;
}
const keyIntact = (id: string) => async () =>
  assert.deepEqual(await keyState(id), { revoked: false, replaced: false }, "the key was changed");

// -- Fixtures of the integrations module: settings, Meta pages and forms ---------------------------------

/** A fresh Graph-style id (15 digits, as a string). */
const graphDigits = () =>
  "9" + Array.from(crypto.getRandomValues(new Uint8Array(14)), (b) => b % 10).join("");

type IntegrationKindRow = "whatsapp" | "google_sheets";
/** A client's integration row, disabled (so no job ever uses it), without a stored secret. */
async function bareIntegration(kind: IntegrationKindRow, clientId = A): Promise<void> {
  await db()`delete from app.integration_secrets where client_id = ${clientId} and kind = ${kind}`;
  await db()`insert into public.integrations (client_id, kind, enabled) values (${clientId}, ${kind}, false)
    on conflict (client_id, kind) do update set enabled = false, status = 'unknown'`;
}
async function integrationState(kind: IntegrationKindRow, clientId = A) {
  const [row] = await db()`
    select i.enabled, i.settings, i.status, s.secret_sealed from public.integrations i
    left join app.integration_secrets s on s.client_id = i.client_id and s.kind = i.kind
    where i.client_id = ${clientId} and i.kind = ${kind}`;
  return row ?? null;
}
/** Records an integration's state now; the returned check fails when a refused request changed it. */
async function integrationUnchanged(kind: IntegrationKindRow, clientId = A) {
  const before = await integrationState(kind, clientId);
  return async () =>
    assert.deepEqual(await integrationState(kind, clientId), before, `${clientId}'s ${kind} was changed`);
}
/** A check that a refused request queued no sheets.import job for client A. */
async function noImportQueued() {
  const count = async () =>
    (await db()<{ n: number }[]>`
      select count(*)::int as n from app.jobs where client_id = ${A} and kind = 'sheets.import'`)[0].n;
  const before = await count();
  return async () => assert.equal(await count(), before, "an import job was queued");
}
/** A page connected to a client with a (placeholder) sealed token. */
async function newPage(clientId = A): Promise<string> {
  const pageId = graphDigits();
  await db()`insert into public.meta_pages (page_id, client_id, name) values (${pageId}, ${clientId}, 'Authz page')`;
  await db()`insert into app.meta_page_tokens (page_id, token_sealed) values (${pageId}, 'v1.fixture.fixture')`;
  return pageId;
}
async function newForm(pageId: string, clientId = A): Promise<string> {
  const formId = graphDigits();
  await db()`insert into public.meta_forms (form_id, page_id, client_id, name)
    values (${formId}, ${pageId}, ${clientId}, 'Authz form')`;
  return formId;
}
async function pageState(pageId: string) {
  const [row] = await db()`
    select p.client_id, p.name, t.token_sealed,
      (select count(*)::int from public.meta_forms f where f.page_id = p.page_id) as forms
    from public.meta_pages p left join app.meta_page_tokens t on t.page_id = p.page_id
    where p.page_id = ${pageId}`;
  return row ?? null;
}
/** Records a page's state (client, name, token, forms) now; the check fails when it changed. */
async function pageUnchanged(pageId: string) {
  const before = await pageState(pageId);
  return async () => assert.deepEqual(await pageState(pageId), before, `page ${pageId} was changed`);
}
async function formExists(formId: string): Promise<boolean> {
  return (await db()`select 1 from public.meta_forms where form_id = ${formId}`).length > 0;
}
const metaPages = { a: await newPage(A), b: await newPage(B) };
const metaForms = { a: await newForm(metaPages.a) };
const whatsAppSettings = (extra: Record<string, unknown> = {}) => ({
  phone_number_id: graphDigits(),
  access_token: "EAAauthzfixturetoken0123456789",
  template_name: "lead_welcome",
  template_language: "en_US",
  enabled: false,
  ...extra,
});
const sheetsSettings = (extra: Record<string, unknown> = {}) => ({
  spreadsheet_id: "authzSpreadsheet0123456789",
  sheet: "Leads",
  columns: [{ header: "Name", field: "full_name" }, { header: "Budget", field: "custom.budget" }],
  service_account_key: {
    client_email: "authz@example-project.iam.gserviceaccount.com",
    private_key:
      "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEA\n-----END PRIVATE KEY-----\n",
  },
  enabled: false,
  ...extra,
});

// -- Fixtures of the automation modules: jobs, automations, notifications, webhook endpoints ---------------

// Deliveries these cases queue (replays) are never run: no worker of a parallel file claims A's or B's.
await db()`insert into app.job_pauses (client_id, kind_pattern, reason)
  values (${A}, 'webhook.%', 'authorization matrix'), (${B}, 'webhook.%', 'authorization matrix')`;

/** A job of a client with a kind no worker handles, so no parallel worker claims it. */
async function newJob(
  clientId = A,
  status: "queued" | "dead" = "dead",
  payload: Record<string, unknown> = { n: 1 },
): Promise<number> {
  const [row] = await db()<{ id: string }[]>`
    insert into app.jobs (client_id, kind, payload, idempotency_key, status, attempts, max_attempts, finished_at)
    values (${clientId}, 'test.authz', ${db().json(payload as never)}, ${uniq("authz-job")}, ${status},
      ${status === "dead" ? 1 : 0}, 1, ${status === "dead" ? new Date().toISOString() : null})
    returning id::text`;
  return Number(row.id);
}
async function jobStatus(id: number): Promise<string> {
  const [row] = await db()<{ status: string }[]>`select status from app.jobs where id = ${id}`;
  return row.status;
}
const jobIntact = (id: number, status: string) => async () =>
  assert.equal(await jobStatus(id), status, `job ${id} was changed`);
const jobs = {
  a: await newJob(A),
  b: await newJob(B),
  /** Carries outside_agent's lead, as a webhook delivery's payload does. */
  outsideLead: await newJob(A, "dead", {
    data: { lead: { id: leads.outside.id, email: leads.outside.email } },
  }),
};
const jobIds = (reply: Reply): number[] => reply.body.data.map((row: { id: number }) => row.id);

async function automationOverride(
  clientId: string,
  event: string,
  action: string,
): Promise<boolean | undefined> {
  const [row] = await db()<{ enabled: boolean }[]>`
    select enabled from public.automations where client_id = ${clientId} and event = ${event} and action = ${action}`;
  return row?.enabled;
}
const noOverride = (event: string, action: string) => async () =>
  assert.equal(await automationOverride(A, event, action), undefined, `A's ${event}/${action} was switched`);

/** A fresh unread notification of a user in client A. */
async function newNotification(userId: string, clientId = A): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.notifications (client_id, user_id, kind, title) values (${clientId}, ${userId},
      'lead.created', 'Authz notification') returning id`;
  return row.id;
}
async function isRead(id: string): Promise<boolean> {
  const [row] = await db()<{ read: boolean }[]>`
    select read_at is not null as read from public.notifications where id = ${id}`;
  return row.read;
}
const stillUnread = (id: string) => async () =>
  assert.equal(await isRead(id), false, `${id} was marked read`);
const notifications = {
  owner: await newNotification(users.owner.id),
  agent: await newNotification(users.agent.id),
  outside: await newNotification(users.outside_agent.id),
};

/** A webhook endpoint of a client with a (fake) sealed secret, as the webhooks service stores them. */
async function newEndpoint(clientId = A): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.webhook_endpoints (client_id, url, description)
    values (${clientId}, 'https://hooks.example.com/authz', 'Authz endpoint') returning id`;
  await db()`insert into app.webhook_secrets (endpoint_id, secret_sealed) values (${row.id}, ${
    uniq("v1.sealed")
  })`;
  return row.id;
}
async function endpointState(id: string) {
  const [row] = await db()<{ description: string; enabled: boolean; sealed: string | null }[]>`
    select e.description, e.enabled, s.secret_sealed as sealed
    from public.webhook_endpoints e left join app.webhook_secrets s on s.endpoint_id = e.id where e.id = ${id}`;
  return row;
}
/** Records an endpoint's state now; the returned check fails when a refused request changed it. */
async function endpointUnchanged(id: string): Promise<() => Promise<void>> {
  const before = await endpointState(id);
  return async () => assert.deepEqual(await endpointState(id), before, `endpoint ${id} was changed`);
}
async function endpointsWithUrl(clientId: string, url: string): Promise<number> {
  const [row] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.webhook_endpoints where client_id = ${clientId} and url = ${url}`;
  return row.n;
}
/** A dead webhook.deliver job of an endpoint, with its logged attempt. */
async function newDelivery(endpointId: string, clientId = A): Promise<number> {
  const [row] = await db()<{ id: string }[]>`
    insert into app.jobs (client_id, kind, payload, idempotency_key, status, attempts, max_attempts, finished_at)
    values (${clientId}, 'webhook.deliver', ${
    db().json({
      endpoint_id: endpointId,
      message_id: `evt_${uniq("authz")}`,
      event: "lead.created",
      timestamp: new Date().toISOString(),
      data: {},
    })
  }, ${uniq("authz-delivery")}, 'dead', 1, 1, now())
    returning id::text`;
  await db()`insert into public.webhook_deliveries (client_id, endpoint_id, job_id, message_id, event, attempt,
      succeeded, status_code)
    values (${clientId}, ${endpointId}, ${row.id}, 'evt_authz', 'lead.created', 1, false, 500)`;
  return Number(row.id);
}
async function replaysOf(jobId: number): Promise<number> {
  const [row] = await db()<{ n: number }[]>`
    select count(*)::int as n from app.jobs where idempotency_key like ${`replay:${jobId}:%`}`;
  return row.n;
}
const noReplay = (jobId: number) => async () =>
  assert.equal(await replaysOf(jobId), 0, `job ${jobId} was replayed`);
const hooks = { a: await newEndpoint(A), b: await newEndpoint(B) };
const deliveries = { a: await newDelivery(hooks.a), b: await newDelivery(hooks.b, B) };

// -- The matrix ----------------------------------------------------------------------------------------

type Check = "other_client" | "outside_hierarchy" | "no_permission" | "no_token" | "allowed";
const CHECKS: Check[] = ["other_client", "outside_hierarchy", "no_permission", "no_token", "allowed"];

/** One concrete request and the answer it must get. */
interface Probe {
  /** Who does what, for failure messages. */
  label: string;
  token?: string;
  /** The path under /api, with every parameter filled. */
  path: string;
  body?: unknown;
  status: number;
  /** The problem+json code expected with an error status. */
  code?: string;
  /** Checks on the response body, run when the status is the expected one. */
  verify?: (reply: Reply) => void | Promise<void>;
  /** Checks that the request changed nothing it must not have changed; always run. */
  intact?: () => Promise<void>;
}

/** Probes built on demand (so each gets fresh fixtures), or the reason the check does not apply. */
type Step = string | (() => Probe[] | Promise<Probe[]>);

interface Case {
  /** For a route without x-permission: the rule that decides who may call it. */
  rule?: string;
  other_client: Step;
  outside_hierarchy: Step;
  no_permission: Step;
  /** The positive control(s); no_token sends the first one's request without the token. */
  allowed: () => Probe | Probe[] | Promise<Probe | Probe[]>;
}

const cases: Record<string, Case> = {
  // -- Clients -----------------------------------------------------------------------------------------
  "POST /clients": {
    rule: "platform administrators only (public.create_client refuses everyone else)",
    other_client: () => [{
      label: "B's owner creates a client with client A's id: 403, not 409 client_id_taken",
      token: t.b_owner,
      path: "/clients",
      body: { id: A, name: "Hijack" },
      status: 403,
      intact: async () => assert.equal(await clientStatus(A), "active"),
    }],
    outside_hierarchy: "creates a tenant; no row of a reporting hierarchy is addressed",
    no_permission: () => {
      const id = uniq("authz-new");
      return [{
        label: "client A's owner (not a platform administrator) creates a client",
        token: t.owner,
        path: "/clients",
        body: { id, name: "Not allowed" },
        status: 403,
        intact: async () => assert.equal(await clientStatus(id), undefined, "the client was not created"),
      }];
    },
    allowed: () => ({
      label: "the platform administrator creates a client",
      token: t.platform,
      path: "/clients",
      body: { id: uniq("authz-new"), name: "Created" },
      status: 201,
      verify: (reply) => assert.equal(reply.body.status, "active"),
    }),
  },

  "GET /clients": {
    rule: "any signed-in user; the list holds only the clients they belong to (all for platform admins)",
    other_client: () => [{
      label: "B's owner lists clients: 200 without client A",
      token: t.b_owner,
      path: "/clients?limit=200",
      status: 200,
      verify: (reply) => {
        assert.ok(!ids(reply).includes(A), "client A leaks into B's owner's list");
        assert.ok(ids(reply).includes(B), "B's owner sees B");
      },
    }],
    outside_hierarchy: "clients are not part of the reporting hierarchy; membership alone decides",
    no_permission: () => [{
      label: "a member of A with no permissions lists exactly [A]",
      token: t.noperm,
      path: "/clients?limit=200",
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [A]),
    }],
    allowed: () => ({
      label: "A's viewer lists clients",
      token: t.viewer,
      path: "/clients",
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [A]),
    }),
  },

  "GET /clients/{clientId}": {
    rule: "any member of the client, whatever their role (no permission); anyone else gets 404",
    other_client: () => [{
      label: "B's owner reads client A",
      token: t.b_owner,
      path: `/clients/${A}`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client is not a row of the reporting hierarchy; every member sees their client",
    no_permission: () => [{
      label: "a member of A with no permissions still reads A (membership is the rule)",
      token: t.noperm,
      path: `/clients/${A}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, A),
    }],
    allowed: () => ({
      label: "A's viewer reads A",
      token: t.viewer,
      path: `/clients/${A}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, A),
    }),
  },

  "PATCH /clients/{clientId}": {
    other_client: () => [{
      label: "B's owner renames client A",
      token: t.b_owner,
      path: `/clients/${A}`,
      body: { name: "Hijacked" },
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client is not a row of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's viewer renames A",
        token: t.viewer,
        path: `/clients/${A}`,
        body: { name: "Hijacked" },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's manager renames A",
        token: t.manager,
        path: `/clients/${A}`,
        body: { name: "Hijacked" },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin renames A",
      token: t.admin,
      path: `/clients/${A}`,
      body: { name: "Client A" },
      status: 200,
      verify: (reply) => assert.equal(reply.body.name, "Client A"),
    }),
  },

  "POST /clients/{clientId}/deactivate": {
    rule: "platform administrators only, even the client's own owner is refused",
    other_client: () => [{
      label: "B's owner deactivates client A",
      token: t.b_owner,
      path: `/clients/${A}/deactivate`,
      status: 404,
      code: "client_not_found",
      intact: keepAActive,
    }, {
      label: "(reference) B's owner deactivates a client that does not exist",
      token: t.b_owner,
      path: `/clients/${uniq("missing")}/deactivate`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client-level action; no row of a reporting hierarchy is addressed",
    no_permission: () => [{
      label: "A's owner deactivates A",
      token: t.owner,
      path: `/clients/${A}/deactivate`,
      status: 403,
      code: "permission_denied",
      intact: keepAActive,
    }],
    allowed: async () => {
      const id = await newClient();
      return {
        label: "the platform administrator deactivates a fresh client",
        token: t.platform,
        path: `/clients/${id}/deactivate`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "inactive");
          assert.equal(await clientStatus(id), "inactive");
        },
      };
    },
  },

  "POST /clients/{clientId}/activate": {
    rule: "platform administrators only, even the client's own owner is refused",
    other_client: async () => {
      const id = await newClient({ inactive: true, ownerId: users.owner.id });
      return [{
        label: "B's owner reactivates an inactive client of A's owner",
        token: t.b_owner,
        path: `/clients/${id}/activate`,
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await clientStatus(id), "inactive"),
      }, {
        label: "(reference) B's owner reactivates a client that does not exist",
        token: t.b_owner,
        path: `/clients/${uniq("missing")}/activate`,
        status: 404,
        code: "client_not_found",
      }];
    },
    outside_hierarchy: "a client-level action; no row of a reporting hierarchy is addressed",
    no_permission: async () => {
      const id = await newClient({ inactive: true, ownerId: users.owner.id });
      return [{
        // A deactivated client is invisible to its own members, so even its owner gets the 404.
        label: "the owner of a deactivated client reactivates it",
        token: await signIn(users.owner, null),
        path: `/clients/${id}/activate`,
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await clientStatus(id), "inactive"),
      }];
    },
    allowed: async () => {
      const id = await newClient({ inactive: true });
      return {
        label: "the platform administrator reactivates a fresh inactive client",
        token: t.platform,
        path: `/clients/${id}/activate`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "active");
          assert.equal(await clientStatus(id), "active");
        },
      };
    },
  },

  // -- Members and users -------------------------------------------------------------------------------
  "GET /clients/{clientId}/members": {
    other_client: () => [{
      label: "B's owner lists A's members",
      token: t.b_owner,
      path: `/clients/${A}/members`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: () => [{
      label: "A's manager lists members: 200, their team only (outside_agent filtered out)",
      token: t.manager,
      path: `/clients/${A}/members?limit=200`,
      status: 200,
      verify: async (reply) => {
        assert.ok(!ids(reply).includes(m.outside_agent), "outside_agent leaks into the manager's list");
        assert.deepEqual(ids(reply).sort(), await teamOf(m.manager), "exactly the manager and their team");
      },
    }],
    no_permission: () => [{
      label: "A's member without permissions lists members",
      token: t.noperm,
      path: `/clients/${A}/members`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's admin lists every member",
      token: t.admin,
      path: `/clients/${A}/members?limit=200`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(m.outside_agent) && ids(reply).includes(m.agent)),
    }),
  },

  "POST /clients/{clientId}/members": {
    other_client: () => {
      const email = newEmail();
      return [
        {
          label: "B's owner adds someone to client A",
          token: t.b_owner,
          path: `/clients/${A}/members`,
          body: { email, full_name: "Intruder", role: "agent", reports_to: m.manager },
          status: 404,
          code: "client_not_found",
          intact: async () => assert.ok(!await userExists(email), "no account was created"),
        },
        {
          label: "B's owner adds someone to B reporting to A's manager: same 422 as for an unknown id",
          token: t.b_owner,
          path: `/clients/${B}/members`,
          body: { email: newEmail(), full_name: "Intruder", role: "agent", reports_to: m.manager },
          status: 422,
          code: "invalid_reference",
        },
        {
          label: "(reference) the same with a random reports_to",
          token: t.b_owner,
          path: `/clients/${B}/members`,
          body: { email: newEmail(), full_name: "Intruder", role: "agent", reports_to: crypto.randomUUID() },
          status: 422,
          code: "invalid_reference",
        },
      ];
    },
    outside_hierarchy: () => {
      const email = newEmail();
      return [
        {
          label:
            "A's team lead places someone under outside_agent: refused exactly as for an unknown id (403)",
          token: t.lead,
          path: `/clients/${A}/members`,
          body: { email, full_name: "Misplaced", role: "agent", reports_to: m.outside_agent },
          status: 403,
          code: "forbidden",
          intact: async () => assert.ok(!await userExists(email), "no account was created"),
        },
        {
          label: "(reference) the same with a random reports_to",
          token: t.lead,
          path: `/clients/${A}/members`,
          body: { email: newEmail(), full_name: "Misplaced", role: "agent", reports_to: crypto.randomUUID() },
          status: 403,
          code: "forbidden",
        },
      ];
    },
    no_permission: () => [
      {
        label: "A's manager (no members.manage) adds someone to their own team",
        token: t.manager,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New", role: "agent", reports_to: m.manager },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer adds someone",
        token: t.viewer,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New", role: "viewer", reports_to: m.viewer },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => [
      {
        label: "A's owner adds a new person below the team lead",
        token: t.owner,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New agent", role: "agent", reports_to: m.lead },
        status: 201,
        verify: (reply) => assert.equal(reply.body.member.reports_to, m.lead),
      },
      {
        label: "A's team lead (team scope, members.manage) adds a new person to their own team",
        token: t.lead,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New agent", role: "agent", reports_to: m.lead },
        status: 201,
        verify: (reply) => assert.equal(reply.body.member.reports_to, m.lead),
      },
    ],
  },

  "PATCH /clients/{clientId}/members/{membershipId}": {
    other_client: () => [
      {
        label: "B's owner changes outside_agent's role through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
      {
        label: "B's owner changes A's outside_agent through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "member_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager (no members.manage: the permission gate answers first, as for any id)",
        token: t.manager,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
      {
        label: "A's team lead (team scope, members.manage) changes outside_agent's role",
        token: t.lead,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "member_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
    ],
    no_permission: () => [
      {
        label: "A's manager (no members.manage) changes their own agent's role",
        token: t.manager,
        path: `/clients/${A}/members/${m.agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.agent), "agent"),
      },
      {
        label: "A's agent changes their own role",
        token: t.agent,
        path: `/clients/${A}/members/${m.agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.agent), "agent"),
      },
      {
        label: "A's viewer changes team_mate's role",
        token: t.viewer,
        path: `/clients/${A}/members/${m.team_mate}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.team_mate), "agent"),
      },
    ],
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead changes the role of a member of their team",
        token: t.lead,
        path: `/clients/${A}/members/${fresh.membership}`,
        body: { role: "viewer" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.role.key, "viewer"),
      };
    },
  },

  "DELETE /clients/{clientId}/members/{membershipId}": {
    other_client: async () => {
      const victim = await newMember(m.admin);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "B's owner removes an outside agent through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner removes an A member through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/members/${victim.membership}`,
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "A's manager (no members.manage: the permission gate answers first, as for any id)",
          token: t.manager,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's team lead removes an agent placed like outside_agent (fresh, reporting to admin)",
          token: t.lead,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    no_permission: async () => {
      const victim = await newMember(m.manager);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "A's manager (no members.manage) removes an agent of their team",
          token: t.manager,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer removes a member",
          token: t.viewer,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead removes a member of their team",
        token: t.lead,
        path: `/clients/${A}/members/${fresh.membership}`,
        status: 204,
        verify: async () => assert.ok(!await membershipExists(fresh.membership)),
      };
    },
  },

  "GET /users/{userId}": {
    rule: "no permission: visible accounts only (self, users whose membership the caller sees, all for " +
      "platform admins); an invisible account is 404",
    other_client: () => [{
      label: "B's owner reads A's outside_agent",
      token: t.b_owner,
      path: `/users/${users.outside_agent.id}`,
      status: 404,
      code: "user_not_found",
    }],
    outside_hierarchy: () => [{
      label: "A's manager reads outside_agent",
      token: t.manager,
      path: `/users/${users.outside_agent.id}`,
      status: 404,
      code: "user_not_found",
    }],
    no_permission: () => [
      {
        label: "A's viewer (own scope) reads the agent",
        token: t.viewer,
        path: `/users/${users.agent.id}`,
        status: 404,
        code: "user_not_found",
      },
      {
        label: "A's viewer reads themselves",
        token: t.viewer,
        path: `/users/${users.viewer.id}`,
        status: 200,
        verify: (reply) => assert.equal(reply.body.id, users.viewer.id),
      },
    ],
    allowed: () => ({
      label: "A's manager reads their agent",
      token: t.manager,
      path: `/users/${users.agent.id}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, users.agent.id),
    }),
  },

  "POST /users/{userId}/disable": {
    rule: "platform admins, or a caller with members.manage in every client of the user, ranked at least " +
      "as high there and seeing the user's membership (public.set_user_disabled); invisible account: 404",
    other_client: async () => {
      const victim = await newMember(m.admin);
      return [{
        label: "B's owner disables an A-only account",
        token: t.b_owner,
        path: `/users/${victim.user.id}/disable`,
        status: 404,
        code: "user_not_found",
        intact: async () => assert.equal(await isDisabled(victim.user.id), false),
      }];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      return [
        {
          label: "A's manager disables outside_agent",
          token: t.manager,
          path: `/users/${users.outside_agent.id}/disable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(users.outside_agent.id), false),
        },
        {
          label: "A's team lead (members.manage) disables an agent outside their team",
          token: t.lead,
          path: `/users/${victim.user.id}/disable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(victim.user.id), false),
        },
      ];
    },
    no_permission: async () => {
      const inTeam = await newMember(m.manager);
      const twoClients = await newMember(m.admin, { alsoInB: true });
      return [
        {
          label: "A's manager (sees them, no members.manage) disables an agent of their team",
          token: t.manager,
          path: `/users/${inTeam.user.id}/disable`,
          status: 403,
          intact: async () => assert.equal(await isDisabled(inTeam.user.id), false),
        },
        {
          label: "A's admin disables someone who is also a member of client B",
          token: t.admin,
          path: `/users/${twoClients.user.id}/disable`,
          status: 403,
          intact: async () => assert.equal(await isDisabled(twoClients.user.id), false),
        },
      ];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead disables a member of their team",
        token: t.lead,
        path: `/users/${fresh.user.id}/disable`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.disabled, true);
          assert.equal(await isDisabled(fresh.user.id), true);
        },
      };
    },
  },

  "POST /users/{userId}/enable": {
    rule: "the same as disable: platform admins, or members.manage in every client of the user with " +
      "rank and scope over them; invisible account: 404",
    other_client: async () => {
      const victim = await newMember(m.admin);
      await disableDirectly(victim.user.id);
      return [{
        label: "B's owner re-enables a disabled A-only account",
        token: t.b_owner,
        path: `/users/${victim.user.id}/enable`,
        status: 404,
        code: "user_not_found",
        intact: async () => assert.equal(await isDisabled(victim.user.id), true),
      }];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      await disableDirectly(victim.user.id);
      return [
        {
          label: "A's manager enables outside_agent",
          token: t.manager,
          path: `/users/${users.outside_agent.id}/enable`,
          status: 404,
          code: "user_not_found",
        },
        {
          label: "A's team lead (members.manage) re-enables a disabled agent outside their team",
          token: t.lead,
          path: `/users/${victim.user.id}/enable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(victim.user.id), true),
        },
      ];
    },
    no_permission: async () => {
      const inTeam = await newMember(m.manager);
      await disableDirectly(inTeam.user.id);
      return [{
        label: "A's manager (no members.manage) re-enables a disabled agent of their team",
        token: t.manager,
        path: `/users/${inTeam.user.id}/enable`,
        status: 403,
        intact: async () => assert.equal(await isDisabled(inTeam.user.id), true),
      }];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      await disableDirectly(fresh.user.id);
      return {
        label: "A's team lead re-enables a disabled member of their team",
        token: t.lead,
        path: `/users/${fresh.user.id}/enable`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.disabled, false);
          assert.equal(await isDisabled(fresh.user.id), false);
        },
      };
    },
  },

  // -- Hierarchy ---------------------------------------------------------------------------------------
  "GET /clients/{clientId}/members/{membershipId}/managers": {
    other_client: () => [
      {
        label: "B's owner reads the agent's managers through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.agent}/managers`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the agent's managers through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.agent}/managers`,
        status: 404,
        code: "member_not_found",
      },
    ],
    outside_hierarchy: () => [{
      label: "A's manager reads outside_agent's managers",
      token: t.manager,
      path: `/clients/${A}/members/${m.outside_agent}/managers`,
      status: 404,
      code: "member_not_found",
    }],
    no_permission: () => [{
      label: "A's member without permissions reads their own managers",
      token: t.noperm,
      path: `/clients/${A}/members/${m.noperm}/managers`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's manager reads their agent's managers (only the part they can see)",
      token: t.manager,
      path: `/clients/${A}/members/${m.agent}/managers`,
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [m.manager]),
    }),
  },

  "GET /clients/{clientId}/members/{membershipId}/subtree": {
    other_client: () => [
      {
        label: "B's owner reads the manager's team through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.manager}/subtree`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the manager's team through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.manager}/subtree`,
        status: 404,
        code: "member_not_found",
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager reads outside_agent's subtree",
        token: t.manager,
        path: `/clients/${A}/members/${m.outside_agent}/subtree`,
        status: 404,
        code: "member_not_found",
      },
      {
        label: "A's manager reads their own admin's subtree (above them, holds outside_agent)",
        token: t.manager,
        path: `/clients/${A}/members/${m.admin}/subtree`,
        status: 404,
        code: "member_not_found",
      },
    ],
    no_permission: () => [{
      label: "A's member without permissions reads their own subtree",
      token: t.noperm,
      path: `/clients/${A}/members/${m.noperm}/subtree`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's manager reads their own team",
      token: t.manager,
      path: `/clients/${A}/members/${m.manager}/subtree`,
      status: 200,
      verify: async (reply) => {
        assert.ok(ids(reply).includes(m.agent) && ids(reply).includes(m.team_mate));
        assert.deepEqual(ids(reply).sort(), await teamOf(m.manager, 1), "exactly everyone below");
      },
    }),
  },

  // -- Permissions and roles ---------------------------------------------------------------------------
  "GET /permissions": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global permission catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global permission catalog; no row of a reporting hierarchy",
    no_permission: () => [
      {
        label: "a user who belongs to no client reads the catalog",
        token: t.loner,
        path: "/permissions",
        status: 200,
        verify: (reply) => assert.ok(codes(reply).includes("members.manage")),
      },
      {
        label: "A's member without permissions reads the catalog",
        token: t.noperm,
        path: "/permissions",
        status: 200,
        verify: (reply) => assert.ok(codes(reply).includes("members.manage")),
      },
    ],
    allowed: () => ({
      label: "A's viewer reads the catalog",
      token: t.viewer,
      path: "/permissions",
      status: 200,
      verify: (reply) => assert.ok(codes(reply).includes("roles.manage")),
    }),
  },

  "GET /clients/{clientId}/roles": {
    other_client: () => [{
      label: "B's owner lists A's roles",
      token: t.b_owner,
      path: `/clients/${A}/roles`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: () => [{
      label: "A's member without permissions lists roles",
      token: t.noperm,
      path: `/clients/${A}/roles`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's viewer lists A's roles",
      token: t.viewer,
      path: `/clients/${A}/roles`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(aAgentRole)),
    }),
  },

  "POST /clients/{clientId}/roles": {
    other_client: () => [{
      label: "B's owner creates a role in A",
      token: t.b_owner,
      path: `/clients/${A}/roles`,
      body: { key: uniq("evil"), name: "Evil", rank: 70, scope: "own", permissions: [] },
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no roles.manage) creates a role",
        token: t.manager,
        path: `/clients/${A}/roles`,
        body: { key: uniq("role"), name: "Nope", rank: 70, scope: "own", permissions: [] },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer creates a role",
        token: t.viewer,
        path: `/clients/${A}/roles`,
        body: { key: uniq("role"), name: "Nope", rank: 70, scope: "own", permissions: [] },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin creates a role",
      token: t.admin,
      path: `/clients/${A}/roles`,
      body: { key: uniq("role"), name: "Helper", rank: 70, scope: "own", permissions: ["members.read"] },
      status: 201,
      verify: (reply) => assert.equal(reply.body.client_id, A),
    }),
  },

  "PATCH /clients/{clientId}/roles/{roleId}": {
    other_client: async () => {
      const role = await newRole();
      const intact = async () => assert.equal(await roleName(role.id), role.name);
      return [
        {
          label: "B's owner renames an A role through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Hijacked" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner renames an A role through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/roles/${role.id}`,
          body: { name: "Hijacked" },
          status: 404,
          code: "role_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: async () => {
      const role = await newRole();
      const intact = async () => assert.equal(await roleName(role.id), role.name);
      return [
        {
          label: "A's manager (no roles.manage) renames a role",
          token: t.manager,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Renamed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer renames a role",
          token: t.viewer,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Renamed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const role = await newRole();
      return {
        label: "A's admin renames a role",
        token: t.admin,
        path: `/clients/${A}/roles/${role.id}`,
        body: { name: "Renamed" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.name, "Renamed"),
      };
    },
  },

  "DELETE /clients/{clientId}/roles/{roleId}": {
    other_client: async () => {
      const role = await newRole();
      const intact = async () => assert.ok(await roleName(role.id), "the role was deleted");
      return [
        {
          label: "B's owner deletes an A role through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/roles/${role.id}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner deletes an unused A role through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/roles/${role.id}`,
          status: 404,
          code: "role_not_found",
          intact,
        },
        {
          label: "B's owner deletes A's agent role (in use) through B's path: 404, not 409 role_in_use",
          token: t.b_owner,
          path: `/clients/${B}/roles/${aAgentRole}`,
          status: 404,
          code: "role_not_found",
        },
      ];
    },
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: async () => {
      const role = await newRole();
      const intact = async () => assert.ok(await roleName(role.id), "the role was deleted");
      return [
        {
          label: "A's manager (no roles.manage) deletes a role",
          token: t.manager,
          path: `/clients/${A}/roles/${role.id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer deletes a role",
          token: t.viewer,
          path: `/clients/${A}/roles/${role.id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const role = await newRole();
      return {
        label: "A's admin deletes an unused role",
        token: t.admin,
        path: `/clients/${A}/roles/${role.id}`,
        status: 204,
        verify: async () => assert.equal(await roleName(role.id), undefined),
      };
    },
  },

  // -- Product catalog ---------------------------------------------------------------------------------
  "GET /catalog": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [
      {
        label: "a user who belongs to no client reads the catalog",
        token: t.loner,
        path: "/catalog",
        status: 200,
        verify: (reply) => assert.ok(catalogProducts(reply).includes(catalog.product)),
      },
      {
        label: "A's member without permissions reads the catalog",
        token: t.noperm,
        path: "/catalog",
        status: 200,
        verify: (reply) => assert.ok(catalogProducts(reply).includes(catalog.product)),
      },
    ],
    allowed: () => ({
      label: "A's viewer reads the catalog",
      token: t.viewer,
      path: "/catalog",
      status: 200,
      verify: (reply) => assert.ok(catalogProducts(reply).includes(catalog.aOnlyProduct)),
    }),
  },

  "GET /industries": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client lists industries",
      token: t.loner,
      path: "/industries",
      status: 200,
      verify: (reply) => assert.ok(Array.isArray(reply.body.data) && reply.body.data.length > 0),
    }],
    allowed: () => ({
      label: "A's viewer lists industries",
      token: t.viewer,
      path: "/industries?limit=200",
      status: 200,
      verify: (reply) => assert.ok(Array.isArray(reply.body.data) && reply.body.data.length > 0),
    }),
  },

  "GET /industries/{industryId}": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client reads an industry",
      token: t.loner,
      path: `/industries/${catalog.industry}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, catalog.industry),
    }],
    allowed: () => ({
      label: "A's viewer reads an industry",
      token: t.viewer,
      path: `/industries/${catalog.industry}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, catalog.industry),
    }),
  },

  "POST /industries": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => {
      const name = uniq("Refused industry");
      const intact = async () => assert.ok(!await catalogHasName("industries", name), "it was created");
      return [
        {
          label: "client A's owner (not a platform administrator) creates an industry",
          token: t.owner,
          path: "/industries",
          body: { name },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "a user who belongs to no client creates an industry",
          token: t.loner,
          path: "/industries",
          body: { name },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: () => {
      const name = uniq("Authz industry");
      return {
        label: "the platform administrator creates an industry",
        token: t.platform,
        path: "/industries",
        body: { name },
        status: 201,
        verify: (reply) => assert.equal(reply.body.name, name),
      };
    },
  },

  "PATCH /industries/{industryId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await newIndustry();
      const name = await catalogName("industries", id);
      return [{
        label: "client A's owner renames an industry",
        token: t.owner,
        path: `/industries/${id}`,
        body: { name: uniq("Hijacked") },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await catalogName("industries", id), name),
      }];
    },
    allowed: async () => {
      const id = await newIndustry();
      const name = uniq("Renamed industry");
      return {
        label: "the platform administrator renames a fresh industry",
        token: t.platform,
        path: `/industries/${id}`,
        body: { name },
        status: 200,
        verify: (reply) => assert.equal(reply.body.name, name),
      };
    },
  },

  "DELETE /industries/{industryId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await newIndustry();
      return [{
        label: "client A's owner deletes an empty industry",
        token: t.owner,
        path: `/industries/${id}`,
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(await catalogName("industries", id), "the industry was deleted"),
      }];
    },
    allowed: async () => {
      const id = await newIndustry();
      return {
        label: "the platform administrator deletes a fresh empty industry",
        token: t.platform,
        path: `/industries/${id}`,
        status: 204,
        verify: async () => assert.equal(await catalogName("industries", id), undefined),
      };
    },
  },

  "GET /industries/{industryId}/categories": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client lists an industry's categories",
      token: t.loner,
      path: `/industries/${catalog.industry}/categories`,
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [catalog.category]),
    }],
    allowed: () => ({
      label: "A's viewer lists an industry's categories",
      token: t.viewer,
      path: `/industries/${catalog.industry}/categories`,
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [catalog.category]),
    }),
  },

  "POST /industries/{industryId}/categories": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => {
      const name = uniq("Refused category");
      return [{
        label: "client A's owner creates a category",
        token: t.owner,
        path: `/industries/${catalog.industry}/categories`,
        body: { name },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(!await catalogHasName("categories", name), "it was created"),
      }];
    },
    allowed: async () => {
      const industry = await newIndustry();
      const name = uniq("Authz category");
      return {
        label: "the platform administrator creates a category in a fresh industry",
        token: t.platform,
        path: `/industries/${industry}/categories`,
        body: { name },
        status: 201,
        verify: (reply) => assert.equal(reply.body.industry_id, industry),
      };
    },
  },

  "GET /categories/{categoryId}": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client reads a category",
      token: t.loner,
      path: `/categories/${catalog.category}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, catalog.category),
    }],
    allowed: () => ({
      label: "A's viewer reads a category",
      token: t.viewer,
      path: `/categories/${catalog.category}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.industry_id, catalog.industry),
    }),
  },

  "PATCH /categories/{categoryId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await newCategory(catalog.industry);
      const name = await catalogName("categories", id);
      return [{
        label: "client A's owner renames a category",
        token: t.owner,
        path: `/categories/${id}`,
        body: { name: uniq("Hijacked") },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await catalogName("categories", id), name),
      }];
    },
    allowed: async () => {
      const id = await newCategory(catalog.industry);
      const name = uniq("Renamed category");
      return {
        label: "the platform administrator renames a fresh category",
        token: t.platform,
        path: `/categories/${id}`,
        body: { name },
        status: 200,
        verify: (reply) => assert.equal(reply.body.name, name),
      };
    },
  },

  "DELETE /categories/{categoryId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await newCategory(catalog.industry);
      return [{
        label: "client A's owner deletes an empty category",
        token: t.owner,
        path: `/categories/${id}`,
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(await catalogName("categories", id), "the category was deleted"),
      }];
    },
    allowed: async () => {
      const id = await newCategory(catalog.industry);
      return {
        label: "the platform administrator deletes a fresh empty category",
        token: t.platform,
        path: `/categories/${id}`,
        status: 204,
        verify: async () => assert.equal(await catalogName("categories", id), undefined),
      };
    },
  },

  "GET /categories/{categoryId}/products": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client lists a category's products",
      token: t.loner,
      path: `/categories/${catalog.category}/products?limit=200`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(catalog.product)),
    }],
    allowed: () => ({
      label: "A's viewer lists a category's products",
      token: t.viewer,
      path: `/categories/${catalog.category}/products?limit=200`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(catalog.aOnlyProduct)),
    }),
  },

  "POST /categories/{categoryId}/products": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => {
      const name = uniq("Refused product");
      return [{
        label: "client A's owner creates a product",
        token: t.owner,
        path: `/categories/${catalog.category}/products`,
        body: { name },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(!await catalogHasName("products", name), "it was created"),
      }];
    },
    allowed: () => {
      const name = uniq("Authz product");
      return {
        label: "the platform administrator creates a product",
        token: t.platform,
        path: `/categories/${catalog.category}/products`,
        body: { name },
        status: 201,
        verify: (reply) => assert.equal(reply.body.category_id, catalog.category),
      };
    },
  },

  "GET /products/{productId}": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: () => [{
      label: "a user who belongs to no client reads a product",
      token: t.loner,
      path: `/products/${catalog.product}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, catalog.product),
    }],
    allowed: () => ({
      label: "A's viewer reads a product",
      token: t.viewer,
      path: `/products/${catalog.aOnlyProduct}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, catalog.aOnlyProduct),
    }),
  },

  "PATCH /products/{productId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await freshProduct([A]);
      const name = await catalogName("products", id);
      return [{
        label: "client A's owner renames a product A sells",
        token: t.owner,
        path: `/products/${id}`,
        body: { name: uniq("Hijacked") },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await catalogName("products", id), name),
      }];
    },
    allowed: async () => {
      const id = await freshProduct();
      const name = uniq("Renamed product");
      return {
        label: "the platform administrator renames a fresh product",
        token: t.platform,
        path: `/products/${id}`,
        body: { name },
        status: 200,
        verify: (reply) => assert.equal(reply.body.name, name),
      };
    },
  },

  "DELETE /products/{productId}": {
    rule: "platform administrators only (the handler refuses everyone else, and so do the policies)",
    other_client: "the global product catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global product catalog; no row of a reporting hierarchy",
    no_permission: async () => {
      const id = await freshProduct();
      return [{
        label: "client A's owner deletes a product no client sells",
        token: t.owner,
        path: `/products/${id}`,
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(await catalogName("products", id), "the product was deleted"),
      }];
    },
    allowed: async () => {
      const id = await freshProduct();
      return {
        label: "the platform administrator deletes a fresh product",
        token: t.platform,
        path: `/products/${id}`,
        status: 204,
        verify: async () => assert.equal(await catalogName("products", id), undefined),
      };
    },
  },

  // -- A client's products -----------------------------------------------------------------------------
  "GET /clients/{clientId}/products": {
    rule: "any member of the client, whatever their role (no permission); anyone else gets 404",
    other_client: () => [
      {
        label: "B's owner lists A's products",
        token: t.b_owner,
        path: `/clients/${A}/products`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's products: the shared one, not the one only A sells",
        token: t.b_owner,
        path: `/clients/${B}/products?limit=200`,
        status: 200,
        verify: (reply) => {
          assert.ok(productIds(reply).includes(catalog.product));
          assert.ok(!productIds(reply).includes(catalog.aOnlyProduct), "A's product leaks into B's list");
          assert.ok(reply.body.data.every((row: { client_id: string }) => row.client_id === B));
        },
      },
    ],
    outside_hierarchy: "what a client sells is client-wide; no row of the reporting hierarchy",
    no_permission: () => [
      {
        label: "a member of A with no permissions lists A's products (membership is the rule)",
        token: t.noperm,
        path: `/clients/${A}/products?limit=200`,
        status: 200,
        verify: (reply) => assert.ok(productIds(reply).includes(catalog.aOnlyProduct)),
      },
      {
        label: "a user who belongs to no client lists A's products",
        token: t.loner,
        path: `/clients/${A}/products`,
        status: 404,
        code: "client_not_found",
      },
    ],
    allowed: () => ({
      label: "A's viewer lists A's products",
      token: t.viewer,
      path: `/clients/${A}/products?limit=200`,
      status: 200,
      verify: (reply) => {
        assert.ok(
          productIds(reply).includes(catalog.product) && productIds(reply).includes(catalog.aOnlyProduct),
        );
      },
    }),
  },

  "PUT /clients/{clientId}/products/{productId}": {
    other_client: async () => {
      const product = await freshProduct();
      return [{
        label: "B's owner enables a product for client A",
        token: t.b_owner,
        path: `/clients/${A}/products/${product}`,
        status: 404,
        code: "client_not_found",
        intact: async () => assert.ok(!await isEnabled(A, product), "the product was enabled for A"),
      }];
    },
    outside_hierarchy: "what a client sells is client-wide; no row of the reporting hierarchy",
    no_permission: async () => {
      const product = await freshProduct();
      const intact = async () => assert.ok(!await isEnabled(A, product), "the product was enabled");
      return [
        {
          label: "A's manager (no products.manage) enables a product",
          token: t.manager,
          path: `/clients/${A}/products/${product}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer enables a product",
          token: t.viewer,
          path: `/clients/${A}/products/${product}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const product = await freshProduct();
      return {
        label: "A's admin enables a fresh product",
        token: t.admin,
        path: `/clients/${A}/products/${product}`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.product_id, product);
          assert.ok(await isEnabled(A, product));
        },
      };
    },
  },

  "DELETE /clients/{clientId}/products/{productId}": {
    other_client: async () => {
      const product = await freshProduct([A]);
      const intact = async () => assert.ok(await isEnabled(A, product), "A's product was disabled");
      return [
        {
          label: "B's owner disables a product client A sells",
          token: t.b_owner,
          path: `/clients/${A}/products/${product}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner disables, through B's path, a product only A sells",
          token: t.b_owner,
          path: `/clients/${B}/products/${product}`,
          status: 404,
          code: "product_not_enabled",
          intact,
        },
      ];
    },
    outside_hierarchy: "what a client sells is client-wide; no row of the reporting hierarchy",
    no_permission: async () => {
      const product = await freshProduct([A]);
      const intact = async () => assert.ok(await isEnabled(A, product), "the product was disabled");
      return [
        {
          label: "A's manager (no products.manage) disables a product",
          token: t.manager,
          path: `/clients/${A}/products/${product}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer disables a product",
          token: t.viewer,
          path: `/clients/${A}/products/${product}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const product = await freshProduct([A]);
      return {
        label: "A's admin disables a fresh product without leads",
        token: t.admin,
        path: `/clients/${A}/products/${product}`,
        status: 204,
        verify: async () => assert.ok(!await isEnabled(A, product)),
      };
    },
  },

  // -- Leads -------------------------------------------------------------------------------------------
  "GET /clients/{clientId}/leads": {
    other_client: () => [
      {
        label: "B's owner lists A's leads",
        token: t.b_owner,
        path: `/clients/${A}/leads`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's leads: 200 without any of A's",
        token: t.b_owner,
        path: `/clients/${B}/leads?limit=200`,
        status: 200,
        verify: (reply) => {
          assert.ok(leadIds(reply).includes(leads.b.id));
          assert.ok(reply.body.data.every((row: { client_id: string }) => row.client_id === B), "A leaks");
        },
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager lists leads (visibility index): exactly their team's, not outside_agent's",
        token: t.manager,
        path: `/clients/${A}/leads?limit=200`,
        status: 200,
        verify: async (reply) => {
          assert.ok(!leadIds(reply).includes(leads.outside.id), "outside_agent's lead leaks");
          assert.deepEqual(leadIds(reply).sort(), await leadsOwnedBy(await teamOf(m.manager)));
        },
      },
      {
        label: "A's manager lists leads with a filter (row-level security path): not outside_agent's",
        token: t.manager,
        path: `/clients/${A}/leads?limit=200&duplicates=exclude`,
        status: 200,
        verify: (reply) => {
          assert.ok(!leadIds(reply).includes(leads.outside.id), "outside_agent's lead leaks");
          assert.ok(leadIds(reply).includes(leads.agent.id) && leadIds(reply).includes(leads.team_mate.id));
        },
      },
      {
        label: "A's manager filters by owner=outside_agent: an empty page",
        token: t.manager,
        path: `/clients/${A}/leads?owner=${m.outside_agent}`,
        status: 200,
        verify: (reply) => assert.deepEqual(leadIds(reply), []),
      },
    ],
    no_permission: () => [{
      label: "A's member without permissions lists leads",
      token: t.noperm,
      path: `/clients/${A}/leads`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's admin lists every lead of A",
      token: t.admin,
      path: `/clients/${A}/leads?limit=200`,
      status: 200,
      verify: (reply) => {
        for (const lead of [leads.agent, leads.team_mate, leads.outside]) {
          assert.ok(leadIds(reply).includes(lead.id));
        }
        assert.ok(!leadIds(reply).includes(leads.b.id));
      },
    }),
  },

  "GET /clients/{clientId}/leads/export.csv": {
    other_client: () => [{
      label: "B's owner exports A's leads",
      token: t.b_owner,
      path: `/clients/${A}/leads/export.csv`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: () => [{
      label: "A's manager exports: their team's leads, not outside_agent's",
      token: t.manager,
      path: `/clients/${A}/leads/export.csv`,
      status: 200,
      verify: (reply) => {
        const csv = String(reply.body);
        assert.ok(csv.includes(leads.agent.id), "the team's lead is exported");
        assert.ok(!csv.includes(leads.outside.id), "outside_agent's lead leaks into the export");
      },
    }],
    no_permission: () => [
      {
        label: "A's agent (no leads.export) exports",
        token: t.agent,
        path: `/clients/${A}/leads/export.csv`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer exports",
        token: t.viewer,
        path: `/clients/${A}/leads/export.csv`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin exports every lead of A",
      token: t.admin,
      path: `/clients/${A}/leads/export.csv`,
      status: 200,
      verify: (reply) => {
        const csv = String(reply.body);
        assert.ok(csv.includes(leads.outside.id) && csv.includes(leads.agent.id));
        assert.ok(!csv.includes(leads.b.id), "B's lead leaks into A's export");
      },
    }),
  },

  "GET /clients/{clientId}/leads/{leadId}": {
    other_client: () => [
      {
        label: "B's owner reads A's lead through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/leads/${leads.agent.id}`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads A's lead through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/leads/${leads.agent.id}`,
        status: 404,
        code: "lead_not_found",
      },
      {
        label: "A's admin (client scope) reads B's lead through client A's path",
        token: t.admin,
        path: `/clients/${A}/leads/${leads.b.id}`,
        status: 404,
        code: "lead_not_found",
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager reads outside_agent's lead",
        token: t.manager,
        path: `/clients/${A}/leads/${leads.outside.id}`,
        status: 404,
        code: "lead_not_found",
      },
      {
        label: "A's agent (own scope) reads their team mate's lead",
        token: t.agent,
        path: `/clients/${A}/leads/${leads.team_mate.id}`,
        status: 404,
        code: "lead_not_found",
      },
    ],
    no_permission: () => [{
      label: "A's member without permissions reads a lead",
      token: t.noperm,
      path: `/clients/${A}/leads/${leads.agent.id}`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's manager reads their agent's lead",
      token: t.manager,
      path: `/clients/${A}/leads/${leads.agent.id}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, leads.agent.id),
    }),
  },

  "POST /clients/{clientId}/leads": {
    other_client: () => {
      const email = newEmail();
      return [
        {
          label: "B's owner enters a lead into client A",
          token: t.b_owner,
          path: `/clients/${A}/leads`,
          body: { full_name: "Intruder", email },
          status: 404,
          code: "client_not_found",
          intact: async () => assert.equal(await leadsWithEmail(email), 0, "a lead was stored"),
        },
        {
          label: "B's owner enters into B a lead with the email of an A lead: not linked to it",
          token: t.b_owner,
          path: `/clients/${B}/leads`,
          body: { full_name: "Same person", email: leads.agent.email },
          status: 201,
          verify: (reply) => {
            assert.equal(reply.body.client_id, B);
            assert.equal(reply.body.duplicate_of, null, "deduplicated against client A's lead");
          },
        },
      ];
    },
    outside_hierarchy: () => [{
      label: "A's manager enters a duplicate of outside_agent's lead: 201 with its id only (the stated rule)",
      token: t.manager,
      path: `/clients/${A}/leads`,
      body: { full_name: "Same person", email: leads.outside.email },
      status: 201,
      verify: async (reply) => {
        assert.deepEqual(Object.keys(reply.body).sort(), ["id", "visible"], "only the id is shown");
        assert.equal(reply.body.visible, false);
        const [stored] = await db()<{ duplicate_of: string; owner_membership_id: string }[]>`
          select duplicate_of, owner_membership_id from public.leads where id = ${reply.body.id}`;
        assert.deepEqual(stored, { duplicate_of: leads.outside.id, owner_membership_id: m.outside_agent });
      },
    }],
    no_permission: () => {
      const email = newEmail();
      const intact = async () => assert.equal(await leadsWithEmail(email), 0, "a lead was stored");
      return [
        {
          label: "A's agent (no leads.create) enters a lead",
          token: t.agent,
          path: `/clients/${A}/leads`,
          body: { full_name: "New", email },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer enters a lead",
          token: t.viewer,
          path: `/clients/${A}/leads`,
          body: { full_name: "New", email },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: () => {
      const email = newEmail();
      return {
        label: "A's admin enters a lead",
        token: t.admin,
        path: `/clients/${A}/leads`,
        body: { full_name: "New lead", email },
        status: 201,
        verify: (reply) => {
          assert.equal(reply.body.client_id, A);
          assert.equal(reply.body.email, email);
        },
      };
    },
  },

  "PATCH /clients/{clientId}/leads/{leadId}": {
    other_client: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      const bIntact = await leadUnchanged(leads.b.id);
      return [
        {
          label: "B's owner edits A's lead through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/leads/${lead.id}`,
          body: { full_name: "Hijacked" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner edits A's lead through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/leads/${lead.id}`,
          body: { full_name: "Hijacked" },
          status: 404,
          code: "lead_not_found",
          intact,
        },
        {
          label: "A's admin (client scope) edits B's lead through client A's path",
          token: t.admin,
          path: `/clients/${A}/leads/${leads.b.id}`,
          body: { full_name: "Hijacked" },
          status: 404,
          code: "lead_not_found",
          intact: bIntact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const outside = await newLead(m.outside_agent);
      const mate = await newLead(m.team_mate);
      return [
        {
          label: "A's manager edits outside_agent's lead",
          token: t.manager,
          path: `/clients/${A}/leads/${outside.id}`,
          body: { full_name: "Hijacked" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(outside.id),
        },
        {
          label: "A's agent (own scope) edits their team mate's lead",
          token: t.agent,
          path: `/clients/${A}/leads/${mate.id}`,
          body: { full_name: "Hijacked" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(mate.id),
        },
      ];
    },
    no_permission: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "A's viewer (no leads.update) edits a lead",
          token: t.viewer,
          path: `/clients/${A}/leads/${lead.id}`,
          body: { full_name: "Changed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's member without permissions edits a lead",
          token: t.noperm,
          path: `/clients/${A}/leads/${lead.id}`,
          body: { full_name: "Changed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const lead = await newLead(m.agent);
      return {
        label: "A's agent edits their own lead",
        token: t.agent,
        path: `/clients/${A}/leads/${lead.id}`,
        body: { full_name: "Corrected" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.full_name, "Corrected"),
      };
    },
  },

  "POST /clients/{clientId}/leads/{leadId}/status": {
    other_client: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "B's owner moves A's lead through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/leads/${lead.id}/status`,
          body: { status: "lost" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner moves A's lead through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/leads/${lead.id}/status`,
          body: { status: "lost" },
          status: 404,
          code: "lead_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const outside = await newLead(m.outside_agent);
      const mate = await newLead(m.team_mate);
      return [
        {
          label: "A's manager moves outside_agent's lead",
          token: t.manager,
          path: `/clients/${A}/leads/${outside.id}/status`,
          body: { status: "lost" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(outside.id),
        },
        {
          label: "A's manager moves outside_agent's lead to an unknown status: still 404, not 422",
          token: t.manager,
          path: `/clients/${A}/leads/${outside.id}/status`,
          body: { status: "no_such_status" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(outside.id),
        },
        {
          label: "A's agent (own scope) moves their team mate's lead",
          token: t.agent,
          path: `/clients/${A}/leads/${mate.id}/status`,
          body: { status: "lost" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(mate.id),
        },
      ];
    },
    no_permission: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "A's viewer (no leads.update) moves a lead",
          token: t.viewer,
          path: `/clients/${A}/leads/${lead.id}/status`,
          body: { status: "contacted" },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's member without permissions moves a lead",
          token: t.noperm,
          path: `/clients/${A}/leads/${lead.id}/status`,
          body: { status: "contacted" },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const lead = await newLead(m.agent);
      return {
        label: "A's agent moves their own lead to contacted",
        token: t.agent,
        path: `/clients/${A}/leads/${lead.id}/status`,
        body: { status: "contacted" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.status, "contacted"),
      };
    },
  },

  "POST /clients/{clientId}/leads/{leadId}/assign": {
    other_client: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "B's owner reassigns A's lead through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/leads/${lead.id}/assign`,
          body: { membership_id: m.team_mate },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner gives A's lead to themselves through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/leads/${lead.id}/assign`,
          body: { membership_id: m.b_owner },
          status: 404,
          code: "lead_not_found",
          intact,
        },
        {
          label: "A's admin gives A's lead to B's owner's membership: the same 422 as for an unknown id",
          token: t.admin,
          path: `/clients/${A}/leads/${lead.id}/assign`,
          body: { membership_id: m.b_owner },
          status: 422,
          code: "validation_failed",
          verify: (reply) => assert.equal(reply.body.errors[0].code, "member_not_found"),
          intact,
        },
        {
          label: "(reference) the same with a random membership id",
          token: t.admin,
          path: `/clients/${A}/leads/${lead.id}/assign`,
          body: { membership_id: crypto.randomUUID() },
          status: 422,
          code: "validation_failed",
          verify: (reply) => assert.equal(reply.body.errors[0].code, "member_not_found"),
          intact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const outside = await newLead(m.outside_agent);
      const own = await newLead(m.agent);
      const ownIntact = await leadUnchanged(own.id);
      return [
        {
          label: "A's manager takes outside_agent's lead into their team",
          token: t.manager,
          path: `/clients/${A}/leads/${outside.id}/assign`,
          body: { membership_id: m.agent },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(outside.id),
        },
        {
          label: "A's manager gives their team's lead to outside_agent: 403 (the route's stated answer)",
          token: t.manager,
          path: `/clients/${A}/leads/${own.id}/assign`,
          body: { membership_id: m.outside_agent },
          status: 403,
          code: "assignee_outside_scope",
          intact: ownIntact,
        },
        {
          label: "(reference) the same with a random membership id: the same 403",
          token: t.manager,
          path: `/clients/${A}/leads/${own.id}/assign`,
          body: { membership_id: crypto.randomUUID() },
          status: 403,
          code: "assignee_outside_scope",
          intact: ownIntact,
        },
      ];
    },
    no_permission: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "A's agent (no leads.assign) gives their own lead to their team mate",
          token: t.agent,
          path: `/clients/${A}/leads/${lead.id}/assign`,
          body: { membership_id: m.team_mate },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer reassigns a lead",
          token: t.viewer,
          path: `/clients/${A}/leads/${lead.id}/assign`,
          body: { membership_id: m.team_mate },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const lead = await newLead(m.agent);
      return {
        label: "A's manager gives their agent's lead to the team mate",
        token: t.manager,
        path: `/clients/${A}/leads/${lead.id}/assign`,
        body: { membership_id: m.team_mate },
        status: 200,
        verify: (reply) => assert.equal(reply.body.owner_membership_id, m.team_mate),
      };
    },
  },

  "GET /clients/{clientId}/leads/{leadId}/notes": {
    other_client: () => [
      {
        label: "B's owner reads the notes of A's lead through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/leads/${leads.agent.id}/notes`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the notes of A's lead through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/leads/${leads.agent.id}/notes`,
        status: 404,
        code: "lead_not_found",
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager reads the notes of outside_agent's lead",
        token: t.manager,
        path: `/clients/${A}/leads/${leads.outside.id}/notes`,
        status: 404,
        code: "lead_not_found",
      },
      {
        label: "A's manager reads their agent's lead's notes: the admin above them is not named",
        token: t.manager,
        path: `/clients/${A}/leads/${leads.agent.id}/notes`,
        status: 200,
        verify: (reply) => {
          const names = Object.fromEntries(
            reply.body.data.map((
              note: { id: string; author_name: string | null },
            ) => [note.id, note.author_name]),
          );
          assert.equal(names[notes.agent], "Agent", "the agent, in the manager's team, is named");
          assert.equal(names[notes.byAdmin], null, "the admin's name leaks");
        },
      },
    ],
    no_permission: () => [{
      label: "A's member without permissions reads a lead's notes",
      token: t.noperm,
      path: `/clients/${A}/leads/${leads.agent.id}/notes`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's agent reads the notes of their own lead",
      token: t.agent,
      path: `/clients/${A}/leads/${leads.agent.id}/notes`,
      status: 200,
      verify: (reply) => assert.ok(noteIds(reply).includes(notes.agent)),
    }),
  },

  "POST /clients/{clientId}/leads/{leadId}/notes": {
    other_client: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "B's owner adds a note to A's lead through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/leads/${lead.id}/notes`,
          body: { body: "Intruder" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner adds a note to A's lead through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/leads/${lead.id}/notes`,
          body: { body: "Intruder" },
          status: 404,
          code: "lead_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const outside = await newLead(m.outside_agent);
      const mate = await newLead(m.team_mate);
      return [
        {
          label: "A's manager adds a note to outside_agent's lead",
          token: t.manager,
          path: `/clients/${A}/leads/${outside.id}/notes`,
          body: { body: "Not mine" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(outside.id),
        },
        {
          label: "A's agent (own scope) adds a note to their team mate's lead",
          token: t.agent,
          path: `/clients/${A}/leads/${mate.id}/notes`,
          body: { body: "Not mine" },
          status: 404,
          code: "lead_not_found",
          intact: await leadUnchanged(mate.id),
        },
      ];
    },
    no_permission: async () => {
      const lead = await newLead(m.agent);
      const intact = await leadUnchanged(lead.id);
      return [
        {
          label: "A's viewer (no leads.notes) adds a note",
          token: t.viewer,
          path: `/clients/${A}/leads/${lead.id}/notes`,
          body: { body: "Nope" },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's member without permissions adds a note",
          token: t.noperm,
          path: `/clients/${A}/leads/${lead.id}/notes`,
          body: { body: "Nope" },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const lead = await newLead(m.agent);
      return {
        label: "A's agent adds a note to their own lead",
        token: t.agent,
        path: `/clients/${A}/leads/${lead.id}/notes`,
        body: { body: "Called back" },
        status: 201,
        verify: (reply) => {
          assert.equal(reply.body.lead_id, lead.id);
          assert.equal(reply.body.author_id, users.agent.id);
        },
      };
    },
  },

  "GET /clients/{clientId}/leads/{leadId}/timeline": {
    other_client: () => [
      {
        label: "B's owner reads the timeline of A's lead through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/leads/${leads.agent.id}/timeline`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the timeline of A's lead through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/leads/${leads.agent.id}/timeline`,
        status: 404,
        code: "lead_not_found",
      },
    ],
    outside_hierarchy: () => [{
      label: "A's manager reads the timeline of outside_agent's lead",
      token: t.manager,
      path: `/clients/${A}/leads/${leads.outside.id}/timeline`,
      status: 404,
      code: "lead_not_found",
    }],
    no_permission: () => [{
      label: "A's member without permissions reads a lead's timeline",
      token: t.noperm,
      path: `/clients/${A}/leads/${leads.agent.id}/timeline`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's agent reads the timeline of their own lead",
      token: t.agent,
      path: `/clients/${A}/leads/${leads.agent.id}/timeline`,
      status: 200,
      verify: (reply) => {
        assert.equal(reply.body.data[0].kind, "created");
        assert.ok(leadIds(reply).includes(`note:${notes.agent}`));
      },
    }),
  },

  "GET /clients/{clientId}/lead-statuses": {
    other_client: () => [{
      label: "B's owner reads A's pipeline",
      token: t.b_owner,
      path: `/clients/${A}/lead-statuses`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "the pipeline is client-wide, not a row of the reporting hierarchy",
    no_permission: () => [{
      label: "A's member without permissions reads the pipeline",
      token: t.noperm,
      path: `/clients/${A}/lead-statuses`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's viewer reads the pipeline",
      token: t.viewer,
      path: `/clients/${A}/lead-statuses`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.data[0].key, "new"),
    }),
  },

  // -- Assignment, availability and the pipeline -------------------------------------------------------
  "GET /clients/{clientId}/assignment-rules": {
    other_client: () => [{
      label: "B's owner lists A's assignment rules",
      token: t.b_owner,
      path: `/clients/${A}/assignment-rules`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "assignment rules are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no assignment.manage) lists the rules",
        token: t.manager,
        path: `/clients/${A}/assignment-rules`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer lists the rules",
        token: t.viewer,
        path: `/clients/${A}/assignment-rules`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin lists A's rules, the default first",
      token: t.admin,
      path: `/clients/${A}/assignment-rules`,
      status: 200,
      verify: (reply) => {
        assert.ok(reply.body.data.every((rule: { client_id: string }) => rule.client_id === A));
        assert.equal(reply.body.data[0].product_id, null);
      },
    }),
  },

  "POST /clients/{clientId}/assignment-rules": {
    other_client: async () => {
      const product = await freshProduct([A]);
      return [
        {
          label: "B's owner creates a rule in client A",
          token: t.b_owner,
          path: `/clients/${A}/assignment-rules`,
          body: { product_id: product, role_keys: ["agent"] },
          status: 404,
          code: "client_not_found",
          intact: async () => assert.ok(!await ruleForProduct(A, product), "a rule was created"),
        },
        {
          label: "B's owner creates a rule in B naming A's agent: the same 422 as for an unknown id",
          token: t.b_owner,
          path: `/clients/${B}/assignment-rules`,
          body: { membership_ids: [m.agent] },
          status: 422,
          code: "validation_failed",
          verify: (reply) => assert.equal(reply.body.errors[0].code, "unknown_member"),
        },
        {
          label: "(reference) the same with a random membership id",
          token: t.b_owner,
          path: `/clients/${B}/assignment-rules`,
          body: { membership_ids: [crypto.randomUUID()] },
          status: 422,
          code: "validation_failed",
          verify: (reply) => assert.equal(reply.body.errors[0].code, "unknown_member"),
        },
      ];
    },
    outside_hierarchy: "assignment rules are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const product = await freshProduct([A]);
      const intact = async () => assert.ok(!await ruleForProduct(A, product), "a rule was created");
      return [
        {
          label: "A's manager (no assignment.manage) creates a rule",
          token: t.manager,
          path: `/clients/${A}/assignment-rules`,
          body: { product_id: product, role_keys: ["agent"] },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer creates a rule",
          token: t.viewer,
          path: `/clients/${A}/assignment-rules`,
          body: { product_id: product, role_keys: ["agent"] },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const product = await freshProduct([A]);
      return {
        label: "A's admin creates a rule for a fresh product A sells",
        token: t.admin,
        path: `/clients/${A}/assignment-rules`,
        body: { product_id: product, role_keys: ["agent"] },
        status: 201,
        verify: (reply) => assert.equal(reply.body.product_id, product),
      };
    },
  },

  "PATCH /clients/{clientId}/assignment-rules/{ruleId}": {
    other_client: async () => {
      const rule = await newRule();
      const intact = async () => assert.equal(await ruleEnabled(rule), true, "the rule was changed");
      return [
        {
          label: "B's owner disables A's rule through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/assignment-rules/${rule}`,
          body: { enabled: false },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner disables A's rule through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/assignment-rules/${rule}`,
          body: { enabled: false },
          status: 404,
          code: "rule_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "assignment rules are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const rule = await newRule();
      const intact = async () => assert.equal(await ruleEnabled(rule), true, "the rule was changed");
      return [
        {
          label: "A's manager (no assignment.manage) disables a rule",
          token: t.manager,
          path: `/clients/${A}/assignment-rules/${rule}`,
          body: { enabled: false },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer disables a rule",
          token: t.viewer,
          path: `/clients/${A}/assignment-rules/${rule}`,
          body: { enabled: false },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const rule = await newRule();
      return {
        label: "A's admin disables a fresh rule",
        token: t.admin,
        path: `/clients/${A}/assignment-rules/${rule}`,
        body: { enabled: false },
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.enabled, false);
          assert.equal(await ruleEnabled(rule), false);
        },
      };
    },
  },

  "DELETE /clients/{clientId}/assignment-rules/{ruleId}": {
    other_client: async () => {
      const rule = await newRule();
      const intact = async () => assert.equal(await ruleEnabled(rule), true, "the rule was deleted");
      return [
        {
          label: "B's owner deletes A's rule through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/assignment-rules/${rule}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner deletes A's rule through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/assignment-rules/${rule}`,
          status: 404,
          code: "rule_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "assignment rules are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const rule = await newRule();
      const intact = async () => assert.equal(await ruleEnabled(rule), true, "the rule was deleted");
      return [
        {
          label: "A's manager (no assignment.manage) deletes a rule",
          token: t.manager,
          path: `/clients/${A}/assignment-rules/${rule}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer deletes a rule",
          token: t.viewer,
          path: `/clients/${A}/assignment-rules/${rule}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const rule = await newRule();
      return {
        label: "A's admin deletes a fresh rule",
        token: t.admin,
        path: `/clients/${A}/assignment-rules/${rule}`,
        status: 204,
        verify: async () => assert.equal(await ruleEnabled(rule), undefined),
      };
    },
  },

  "PUT /clients/{clientId}/members/{membershipId}/availability": {
    rule: "the member themself, whatever their role; anyone else needs members.manage, sees the member in " +
      "their part of the hierarchy (else 404) and ranks at least as high (else 403)",
    other_client: async () => {
      const victim = await newMember(m.admin);
      const intact = async () => assert.equal(await isAvailable(victim.membership), true, "it was changed");
      return [
        {
          label: "B's owner marks an A member unavailable through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/members/${victim.membership}/availability`,
          body: { available: false },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner marks an A member unavailable through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/members/${victim.membership}/availability`,
          body: { available: false },
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: () => {
      const intact = async () =>
        assert.equal(await isAvailable(m.outside_agent), true, "outside_agent's availability was changed");
      return [
        {
          label: "A's manager (no members.manage: the permission check answers first, as for any id)",
          token: t.manager,
          path: `/clients/${A}/members/${m.outside_agent}/availability`,
          body: { available: false },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's team lead (team scope, members.manage) marks outside_agent unavailable",
          token: t.lead,
          path: `/clients/${A}/members/${m.outside_agent}/availability`,
          body: { available: false },
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    no_permission: async () => {
      const mate = await newMember(m.manager);
      const senior = await newMember(m.lead, { role: "admin" });
      const self = await newMember(m.admin, { role: "nothing" });
      const selfToken = await signIn(self.user, A);
      return [
        {
          label: "A's agent (no members.manage) marks a member of their team unavailable",
          token: t.agent,
          path: `/clients/${A}/members/${mate.membership}/availability`,
          body: { available: false },
          status: 403,
          code: "permission_denied",
          intact: async () => assert.equal(await isAvailable(mate.membership), true),
        },
        {
          label: "A's member without permissions marks the agent unavailable",
          token: t.noperm,
          path: `/clients/${A}/members/${m.agent}/availability`,
          body: { available: false },
          status: 403,
          code: "permission_denied",
          intact: async () => assert.equal(await isAvailable(m.agent), true),
        },
        {
          label: "A's team lead (rank 30) marks an admin-ranked member of their team unavailable",
          token: t.lead,
          path: `/clients/${A}/members/${senior.membership}/availability`,
          body: { available: false },
          status: 403,
          code: "forbidden",
          intact: async () => assert.equal(await isAvailable(senior.membership), true),
        },
        {
          label: "a member without permissions switches their own availability (the member-themself rule)",
          token: selfToken,
          path: `/clients/${A}/members/${self.membership}/availability`,
          body: { available: false },
          status: 200,
          verify: async () => assert.equal(await isAvailable(self.membership), false),
        },
      ];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead marks a member of their team unavailable",
        token: t.lead,
        path: `/clients/${A}/members/${fresh.membership}/availability`,
        body: { available: false },
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.available, false);
          assert.equal(await isAvailable(fresh.membership), false);
        },
      };
    },
  },

  "PUT /clients/{clientId}/lead-statuses": {
    other_client: () => [{
      label: "B's owner replaces A's pipeline",
      token: t.b_owner,
      path: `/clients/${A}/lead-statuses`,
      body: [{ key: "new", name: "Hijacked", position: 10 }],
      status: 404,
      code: "client_not_found",
      intact: async () => assert.deepEqual(await pipelineOf(A), defaultPipeline),
    }],
    outside_hierarchy: "the pipeline is client-wide, not a row of the reporting hierarchy",
    no_permission: () => {
      const intact = async () => assert.deepEqual(await pipelineOf(A), defaultPipeline);
      return [
        {
          label: "A's manager (no pipeline.manage) replaces the pipeline",
          token: t.manager,
          path: `/clients/${A}/lead-statuses`,
          body: [{ key: "new", name: "Changed", position: 10 }],
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer replaces the pipeline",
          token: t.viewer,
          path: `/clients/${A}/lead-statuses`,
          body: [{ key: "new", name: "Changed", position: 10 }],
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: () => ({
      label: "A's admin replaces the pipeline (with the default one, which the other cases rely on)",
      token: t.admin,
      path: `/clients/${A}/lead-statuses`,
      body: DEFAULT_PIPELINE,
      status: 200,
      verify: async (reply) => {
        assert.deepEqual(
          reply.body.data.map((s: { key: string }) => s.key),
          DEFAULT_PIPELINE.map((s) => s.key),
        );
        assert.deepEqual(await pipelineOf(A), defaultPipeline);
      },
    }),
  },

  // -- API keys ----------------------------------------------------------------------------------------
  "GET /clients/{clientId}/integrations": {
    other_client: () => [
      {
        label: "B's owner lists A's integrations",
        token: t.b_owner,
        path: `/clients/${A}/integrations`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's integrations: 200 without A's pages",
        token: t.b_owner,
        path: `/clients/${B}/integrations`,
        status: 200,
        verify: (reply) => {
          const listed = reply.body.meta_pages.map((page: { page_id: string }) => page.page_id);
          assert.ok(listed.includes(metaPages.b));
          assert.ok(!listed.includes(metaPages.a), "A's page leaks into B's list");
        },
      },
    ],
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's noperm (no integrations.read) lists the integrations",
        token: t.noperm,
        path: `/clients/${A}/integrations`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's viewer lists A's integrations and pages, without any secret",
      token: t.viewer,
      path: `/clients/${A}/integrations`,
      status: 200,
      verify: (reply) => {
        const listed = reply.body.meta_pages.map((page: { page_id: string }) => page.page_id);
        assert.ok(listed.includes(metaPages.a) && !listed.includes(metaPages.b));
        assert.ok(!JSON.stringify(reply.body).includes("v1.fixture"), "a sealed token is listed");
      },
    }),
  },

  "PUT /clients/{clientId}/integrations/whatsapp": {
    other_client: async () => [{
      label: "B's owner sets up WhatsApp for A",
      token: t.b_owner,
      path: `/clients/${A}/integrations/whatsapp`,
      body: whatsAppSettings(),
      status: 404,
      code: "client_not_found",
      intact: await integrationUnchanged("whatsapp"),
    }],
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const intact = await integrationUnchanged("whatsapp");
      return [
        {
          label: "A's manager (no integrations.manage) sets up WhatsApp",
          token: t.manager,
          path: `/clients/${A}/integrations/whatsapp`,
          body: whatsAppSettings(),
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer sets up WhatsApp",
          token: t.viewer,
          path: `/clients/${A}/integrations/whatsapp`,
          body: whatsAppSettings(),
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      await db()`delete from public.integrations where client_id = ${A} and kind = 'whatsapp'`;
      return {
        label: "A's admin sets up WhatsApp (disabled), the token sealed",
        token: t.admin,
        path: `/clients/${A}/integrations/whatsapp`,
        body: whatsAppSettings(),
        status: 201,
        verify: async (reply) => {
          assert.equal(reply.body.has_secret, true);
          assert.ok(!JSON.stringify(reply.body).includes("EAAauthz"), "the token is returned");
          assert.ok((await integrationState("whatsapp"))?.secret_sealed.startsWith("v1."));
        },
      };
    },
  },

  "PUT /clients/{clientId}/integrations/google-sheets": {
    other_client: async () => [{
      label: "B's owner sets up A's Google Sheet",
      token: t.b_owner,
      path: `/clients/${A}/integrations/google-sheets`,
      body: sheetsSettings(),
      status: 404,
      code: "client_not_found",
      intact: await integrationUnchanged("google_sheets"),
    }],
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const intact = await integrationUnchanged("google_sheets");
      return [
        {
          label: "A's manager (no integrations.manage) sets up the sheet",
          token: t.manager,
          path: `/clients/${A}/integrations/google-sheets`,
          body: sheetsSettings(),
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's agent sets up the sheet",
          token: t.agent,
          path: `/clients/${A}/integrations/google-sheets`,
          body: sheetsSettings(),
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      await db()`delete from public.integrations where client_id = ${A} and kind = 'google_sheets'`;
      return {
        label: "A's owner sets up the sheet (disabled), the key sealed",
        token: t.owner,
        path: `/clients/${A}/integrations/google-sheets`,
        body: sheetsSettings(),
        status: 201,
        verify: (reply) => {
          assert.equal(reply.body.has_secret, true);
          assert.ok(!JSON.stringify(reply.body).includes("PRIVATE KEY"), "the key is returned");
        },
      };
    },
  },

  "DELETE /clients/{clientId}/integrations/{kind}": {
    other_client: async () => {
      await bareIntegration("whatsapp");
      const intact = await integrationUnchanged("whatsapp");
      return [
        {
          label: "B's owner removes A's WhatsApp through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/integrations/whatsapp`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner removes WhatsApp through client B's path (B has none)",
          token: t.b_owner,
          path: `/clients/${B}/integrations/whatsapp`,
          status: 404,
          code: "integration_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      await bareIntegration("whatsapp");
      return [{
        label: "A's manager (no integrations.manage) removes WhatsApp",
        token: t.manager,
        path: `/clients/${A}/integrations/whatsapp`,
        status: 403,
        code: "permission_denied",
        intact: await integrationUnchanged("whatsapp"),
      }];
    },
    allowed: async () => {
      await bareIntegration("whatsapp");
      return {
        label: "A's admin removes WhatsApp",
        token: t.admin,
        path: `/clients/${A}/integrations/whatsapp`,
        status: 204,
        verify: async () => assert.equal(await integrationState("whatsapp"), null),
      };
    },
  },

  "POST /clients/{clientId}/integrations/{kind}/test": {
    other_client: async () => {
      await bareIntegration("whatsapp");
      const intact = await integrationUnchanged("whatsapp");
      return [
        {
          label: "B's owner tests A's WhatsApp through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/integrations/whatsapp/test`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner tests WhatsApp through client B's path (B has none)",
          token: t.b_owner,
          path: `/clients/${B}/integrations/whatsapp/test`,
          status: 404,
          code: "integration_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      await bareIntegration("whatsapp");
      const intact = await integrationUnchanged("whatsapp");
      return [
        {
          label: "A's manager (no integrations.manage) tests WhatsApp",
          token: t.manager,
          path: `/clients/${A}/integrations/whatsapp/test`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer tests WhatsApp",
          token: t.viewer,
          path: `/clients/${A}/integrations/whatsapp/test`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      // No stored credential: the test answers without calling Meta, which these tests do not emulate.
      await bareIntegration("whatsapp");
      return {
        label: "A's admin tests WhatsApp with no stored token: 200, recorded broken",
        token: t.admin,
        path: `/clients/${A}/integrations/whatsapp/test`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.ok, false);
          assert.equal(reply.body.status, "broken");
          assert.equal((await integrationState("whatsapp"))?.status, "broken");
        },
      };
    },
  },

  "POST /clients/{clientId}/meta/pages": {
    other_client: async () => {
      const pageId = graphDigits();
      return [
        {
          label: "B's owner connects a page to A",
          token: t.b_owner,
          path: `/clients/${A}/meta/pages`,
          body: { page_id: pageId, page_access_token: "EAAauthzfixturetoken0123456789" },
          status: 404,
          code: "client_not_found",
          intact: async () => assert.equal(await pageState(pageId), null, "the page was connected"),
        },
        {
          label: "B's owner connects A's page to B: 409 that does not name A",
          token: t.b_owner,
          path: `/clients/${B}/meta/pages`,
          body: { page_id: metaPages.a, page_access_token: "EAAauthzfixturetoken0123456789" },
          status: 409,
          code: "meta_page_taken",
          verify: (reply) => assert.ok(!JSON.stringify(reply.body).includes(A), "the 409 names client A"),
          intact: await pageUnchanged(metaPages.a),
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => {
      const pageId = graphDigits();
      return [{
        label: "A's manager (no integrations.manage) connects a page",
        token: t.manager,
        path: `/clients/${A}/meta/pages`,
        body: { page_id: pageId, page_access_token: "EAAauthzfixturetoken0123456789" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await pageState(pageId), null, "the page was connected"),
      }];
    },
    allowed: () => ({
      label: "A's admin connects a fresh page",
      token: t.admin,
      path: `/clients/${A}/meta/pages`,
      body: {
        page_id: graphDigits(),
        name: "Authz page",
        page_access_token: "EAAauthzfixturetoken0123456789",
      },
      status: 201,
      verify: async (reply) => {
        assert.equal(reply.body.has_token, true);
        assert.equal((await pageState(reply.body.page_id))?.client_id, A);
      },
    }),
  },

  "PATCH /clients/{clientId}/meta/pages/{pageId}": {
    other_client: async () => {
      const intact = await pageUnchanged(metaPages.a);
      return [
        {
          label: "B's owner renames A's page through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/meta/pages/${metaPages.a}`,
          body: { name: "Hijacked" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner renames A's page through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/meta/pages/${metaPages.a}`,
          body: { name: "Hijacked", page_access_token: "EAAhijackedtoken0123456789" },
          status: 404,
          code: "meta_page_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => [{
      label: "A's manager (no integrations.manage) renames a page",
      token: t.manager,
      path: `/clients/${A}/meta/pages/${metaPages.a}`,
      body: { name: "Renamed" },
      status: 403,
      code: "permission_denied",
      intact: await pageUnchanged(metaPages.a),
    }],
    allowed: async () => {
      const pageId = await newPage(A);
      return {
        label: "A's admin renames a fresh page",
        token: t.admin,
        path: `/clients/${A}/meta/pages/${pageId}`,
        body: { name: "Renamed page" },
        status: 200,
        verify: async () => assert.equal((await pageState(pageId))?.name, "Renamed page"),
      };
    },
  },

  "DELETE /clients/{clientId}/meta/pages/{pageId}": {
    other_client: async () => {
      const pageId = await newPage(A);
      const intact = await pageUnchanged(pageId);
      return [
        {
          label: "B's owner disconnects A's page through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/meta/pages/${pageId}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner disconnects A's page through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/meta/pages/${pageId}`,
          status: 404,
          code: "meta_page_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const pageId = await newPage(A);
      return [{
        label: "A's manager (no integrations.manage) disconnects a page",
        token: t.manager,
        path: `/clients/${A}/meta/pages/${pageId}`,
        status: 403,
        code: "permission_denied",
        intact: await pageUnchanged(pageId),
      }];
    },
    allowed: async () => {
      const pageId = await newPage(A);
      await newForm(pageId);
      return {
        label: "A's admin disconnects a fresh page with a form",
        token: t.admin,
        path: `/clients/${A}/meta/pages/${pageId}`,
        status: 204,
        verify: async () => assert.equal(await pageState(pageId), null),
      };
    },
  },

  "POST /clients/{clientId}/meta/pages/{pageId}/forms": {
    other_client: async () => {
      const formId = graphDigits();
      const notCreated = async () => assert.ok(!await formExists(formId), "the form was mapped");
      return [
        {
          label: "B's owner maps a form on A's page through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/meta/pages/${metaPages.a}/forms`,
          body: { form_id: formId },
          status: 404,
          code: "client_not_found",
          intact: notCreated,
        },
        {
          label: "B's owner maps a form on A's page through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/meta/pages/${metaPages.a}/forms`,
          body: { form_id: formId },
          status: 404,
          code: "meta_page_not_found",
          intact: notCreated,
        },
        {
          label: "B's owner maps A's form on B's own page: 409",
          token: t.b_owner,
          path: `/clients/${B}/meta/pages/${metaPages.b}/forms`,
          body: { form_id: metaForms.a },
          status: 409,
          code: "meta_form_taken",
          intact: await pageUnchanged(metaPages.a),
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => {
      const formId = graphDigits();
      return [{
        label: "A's manager (no integrations.manage) maps a form",
        token: t.manager,
        path: `/clients/${A}/meta/pages/${metaPages.a}/forms`,
        body: { form_id: formId },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(!await formExists(formId), "the form was mapped"),
      }];
    },
    allowed: () => ({
      label: "A's admin maps a fresh form to a product A sells",
      token: t.admin,
      path: `/clients/${A}/meta/pages/${metaPages.a}/forms`,
      body: { form_id: graphDigits(), product_id: catalog.aOnlyProduct },
      status: 201,
      verify: (reply) => assert.equal(reply.body.product_id, catalog.aOnlyProduct),
    }),
  },

  "DELETE /clients/{clientId}/meta/forms/{formId}": {
    other_client: async () => {
      const formId = await newForm(metaPages.a);
      const intact = async () => assert.ok(await formExists(formId), "the form was unmapped");
      return [
        {
          label: "B's owner unmaps A's form through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/meta/forms/${formId}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner unmaps A's form through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/meta/forms/${formId}`,
          status: 404,
          code: "meta_form_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "integrations are client-wide settings, not rows of the reporting hierarchy",
    no_permission: async () => {
      const formId = await newForm(metaPages.a);
      return [{
        label: "A's manager (no integrations.manage) unmaps a form",
        token: t.manager,
        path: `/clients/${A}/meta/forms/${formId}`,
        status: 403,
        code: "permission_denied",
        intact: async () => assert.ok(await formExists(formId), "the form was unmapped"),
      }];
    },
    allowed: async () => {
      const formId = await newForm(metaPages.a);
      return {
        label: "A's admin unmaps a fresh form",
        token: t.admin,
        path: `/clients/${A}/meta/forms/${formId}`,
        status: 204,
        verify: async () => assert.ok(!await formExists(formId), "the form is still mapped"),
      };
    },
  },

  "POST /clients/{clientId}/api-keys": {
    other_client: () => {
      const name = uniq("Intruder key");
      return [{
        label: "B's owner creates an API key for client A",
        token: t.b_owner,
        path: `/clients/${A}/api-keys`,
        body: { name },
        status: 404,
        code: "client_not_found",
        intact: async () => assert.ok(!await keyNamed(A, name), "a key was created"),
      }];
    },
    outside_hierarchy: "API keys are client-wide credentials, not rows of the reporting hierarchy",
    no_permission: () => {
      const name = uniq("Refused key");
      const intact = async () => assert.ok(!await keyNamed(A, name), "a key was created");
      return [
        {
          label: "A's manager (no api_keys.manage) creates a key",
          token: t.manager,
          path: `/clients/${A}/api-keys`,
          body: { name },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer creates a key",
          token: t.viewer,
          path: `/clients/${A}/api-keys`,
          body: { name },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: () => ({
      label: "A's admin creates a key",
      token: t.admin,
      path: `/clients/${A}/api-keys`,
      body: { name: uniq("Authz key") },
      status: 201,
      verify: (reply) => {
        assert.equal(reply.body.client_id, A);
        assert.ok(reply.body.secret.startsWith("lap_live_"));
      },
    }),
  },

  "GET /clients/{clientId}/api-keys": {
    other_client: () => [
      {
        label: "B's owner lists A's API keys",
        token: t.b_owner,
        path: `/clients/${A}/api-keys`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's keys: 200 without A's",
        token: t.b_owner,
        path: `/clients/${B}/api-keys`,
        status: 200,
        verify: (reply) => {
          assert.ok(ids(reply).includes(apiKeys.b));
          assert.ok(!ids(reply).includes(apiKeys.a), "A's key leaks into B's list");
        },
      },
    ],
    outside_hierarchy: "API keys are client-wide credentials, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no api_keys.manage) lists the keys",
        token: t.manager,
        path: `/clients/${A}/api-keys`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer lists the keys",
        token: t.viewer,
        path: `/clients/${A}/api-keys`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin lists A's keys, without any hash",
      token: t.admin,
      path: `/clients/${A}/api-keys`,
      status: 200,
      verify: (reply) => {
        assert.ok(ids(reply).includes(apiKeys.a) && !ids(reply).includes(apiKeys.b));
        assert.ok(reply.body.data.every((key: object) => !("key_hash" in key) && !("secret" in key)));
      },
    }),
  },

  "POST /clients/{clientId}/api-keys/{keyId}/revoke": {
    other_client: async () => {
      const key = await newApiKey(A);
      return [
        {
          label: "B's owner revokes A's key through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/api-keys/${key}/revoke`,
          status: 404,
          code: "client_not_found",
          intact: keyIntact(key),
        },
        {
          label: "B's owner revokes A's key through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/api-keys/${key}/revoke`,
          status: 404,
          code: "api_key_not_found",
          intact: keyIntact(key),
        },
      ];
    },
    outside_hierarchy: "API keys are client-wide credentials, not rows of the reporting hierarchy",
    no_permission: async () => {
      const key = await newApiKey(A);
      return [
        {
          label: "A's manager (no api_keys.manage) revokes a key",
          token: t.manager,
          path: `/clients/${A}/api-keys/${key}/revoke`,
          status: 403,
          code: "permission_denied",
          intact: keyIntact(key),
        },
        {
          label: "A's viewer revokes a key",
          token: t.viewer,
          path: `/clients/${A}/api-keys/${key}/revoke`,
          status: 403,
          code: "permission_denied",
          intact: keyIntact(key),
        },
      ];
    },
    allowed: async () => {
      const key = await newApiKey(A);
      return {
        label: "A's admin revokes a fresh key",
        token: t.admin,
        path: `/clients/${A}/api-keys/${key}/revoke`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "revoked");
          assert.equal((await keyState(key)).revoked, true);
        },
      };
    },
  },

  "POST /clients/{clientId}/api-keys/{keyId}/rotate": {
    other_client: async () => {
      const key = await newApiKey(A);
      return [
        {
          label: "B's owner rotates A's key through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/api-keys/${key}/rotate`,
          body: { grace_seconds: 60 },
          status: 404,
          code: "client_not_found",
          intact: keyIntact(key),
        },
        {
          label: "B's owner rotates A's key through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/api-keys/${key}/rotate`,
          body: { grace_seconds: 60 },
          status: 404,
          code: "api_key_not_found",
          intact: keyIntact(key),
        },
      ];
    },
    outside_hierarchy: "API keys are client-wide credentials, not rows of the reporting hierarchy",
    no_permission: async () => {
      const key = await newApiKey(A);
      return [
        {
          label: "A's manager (no api_keys.manage) rotates a key",
          token: t.manager,
          path: `/clients/${A}/api-keys/${key}/rotate`,
          body: { grace_seconds: 60 },
          status: 403,
          code: "permission_denied",
          intact: keyIntact(key),
        },
        {
          label: "A's viewer rotates a key",
          token: t.viewer,
          path: `/clients/${A}/api-keys/${key}/rotate`,
          body: { grace_seconds: 60 },
          status: 403,
          code: "permission_denied",
          intact: keyIntact(key),
        },
      ];
    },
    allowed: async () => {
      const key = await newApiKey(A);
      return {
        label: "A's admin rotates a fresh key",
        token: t.admin,
        path: `/clients/${A}/api-keys/${key}/rotate`,
        body: { grace_seconds: 60 },
        status: 201,
        verify: async (reply) => {
          assert.equal(reply.body.previous.id, key);
          assert.equal(reply.body.previous.replaced_by, reply.body.id);
          assert.equal((await keyState(key)).replaced, true);
        },
      };
    },
  },
  // -- Imports -----------------------------------------------------------------------------------------
  "POST /clients/{clientId}/imports/google-sheets": {
    other_client: async () => [{
      label: "B's owner imports A's sheet",
      token: t.b_owner,
      path: `/clients/${A}/imports/google-sheets`,
      body: {},
      status: 404,
      code: "client_not_found",
      intact: await noImportQueued(),
    }],
    outside_hierarchy: "an import reads the client-wide sheet, not rows of the reporting hierarchy",
    no_permission: async () => {
      const intact = await noImportQueued();
      return [
        {
          label: "A's manager (no integrations.manage) imports the sheet",
          token: t.manager,
          path: `/clients/${A}/imports/google-sheets`,
          body: {},
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer imports the sheet",
          token: t.viewer,
          path: `/clients/${A}/imports/google-sheets`,
          body: {},
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      // Enabled only for this probe; the queued import is cancelled, so no worker runs it.
      await db()`insert into public.integrations (client_id, kind, enabled) values (${A}, 'google_sheets', true)
        on conflict (client_id, kind) do update set enabled = true`;
      return {
        label: "A's admin imports A's sheet: 202 with the job",
        token: t.admin,
        path: `/clients/${A}/imports/google-sheets`,
        body: { from_row: 2 },
        status: 202,
        verify: async (reply) => {
          const [job] = await db()<{ kind: string }[]>`
            update app.jobs set status = 'cancelled', finished_at = now()
            where id = ${reply.body.job_id} and client_id = ${A} returning kind`;
          await db()`update public.integrations set enabled = false where client_id = ${A} and kind = 'google_sheets'`;
          assert.equal(job?.kind, "sheets.import");
        },
      };
    },
  },
  // -- Jobs --------------------------------------------------------------------------------------------
  "GET /clients/{clientId}/jobs": {
    other_client: () => [
      {
        label: "B's owner lists A's jobs",
        token: t.b_owner,
        path: `/clients/${A}/jobs`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's jobs: 200 without A's",
        token: t.b_owner,
        path: `/clients/${B}/jobs?limit=200`,
        status: 200,
        verify: (reply) => {
          assert.ok(jobIds(reply).includes(jobs.b));
          assert.ok(!jobIds(reply).includes(jobs.a), "A's job leaks into B's list");
        },
      },
    ],
    outside_hierarchy:
      "jobs are client-wide background work, not rows of the reporting hierarchy; payloads " +
      "are left out of lists and withheld from partial scopes (GET .../jobs/{jobId})",
    no_permission: () => [{
      label: "A's member without permissions lists the jobs",
      token: t.noperm,
      path: `/clients/${A}/jobs`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's viewer (jobs.read through *.read) lists A's jobs",
      token: t.viewer,
      path: `/clients/${A}/jobs?limit=200`,
      status: 200,
      verify: (reply) => assert.ok(jobIds(reply).includes(jobs.a) && !jobIds(reply).includes(jobs.b)),
    }),
  },

  "GET /clients/{clientId}/jobs/{jobId}": {
    other_client: () => [
      {
        label: "B's owner reads A's job through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/jobs/${jobs.a}`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads A's job through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/jobs/${jobs.a}`,
        status: 404,
        code: "job_not_found",
      },
    ],
    outside_hierarchy: () => [{
      label:
        "A's manager (team scope) reads a job carrying outside_agent's lead: 200 with the payload withheld",
      token: t.manager,
      path: `/clients/${A}/jobs/${jobs.outsideLead}`,
      status: 200,
      verify: (reply) => {
        assert.equal(reply.body.payload, null);
        assert.equal(reply.body.payload_visible, false);
        assert.ok(!JSON.stringify(reply.body).includes(leads.outside.email), "the lead's email leaks");
      },
    }],
    no_permission: () => [{
      label: "A's member without permissions reads a job",
      token: t.noperm,
      path: `/clients/${A}/jobs/${jobs.a}`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's admin reads the job carrying outside_agent's lead, payload included",
      token: t.admin,
      path: `/clients/${A}/jobs/${jobs.outsideLead}`,
      status: 200,
      verify: (reply) => {
        assert.equal(reply.body.payload_visible, true);
        assert.equal(reply.body.payload.data.lead.email, leads.outside.email);
      },
    }),
  },

  "POST /clients/{clientId}/jobs/{jobId}/retry": {
    other_client: async () => {
      const job = await newJob(A);
      return [
        {
          label: "B's owner retries A's job through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/jobs/${job}/retry`,
          status: 404,
          code: "client_not_found",
          intact: jobIntact(job, "dead"),
        },
        {
          label: "B's owner retries A's job through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/jobs/${job}/retry`,
          status: 404,
          code: "job_not_found",
          intact: jobIntact(job, "dead"),
        },
      ];
    },
    outside_hierarchy: "jobs are client-wide background work, not rows of the reporting hierarchy",
    no_permission: async () => {
      const job = await newJob(A);
      return [
        {
          label: "A's manager (jobs.read, no jobs.manage) retries a job",
          token: t.manager,
          path: `/clients/${A}/jobs/${job}/retry`,
          status: 403,
          code: "permission_denied",
          intact: jobIntact(job, "dead"),
        },
        {
          label: "A's viewer retries a job",
          token: t.viewer,
          path: `/clients/${A}/jobs/${job}/retry`,
          status: 403,
          code: "permission_denied",
          intact: jobIntact(job, "dead"),
        },
      ];
    },
    allowed: async () => {
      const job = await newJob(A);
      return {
        label: "A's admin retries a fresh dead job",
        token: t.admin,
        path: `/clients/${A}/jobs/${job}/retry`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "queued");
          assert.equal(await jobStatus(job), "queued");
        },
      };
    },
  },

  "POST /clients/{clientId}/jobs/{jobId}/cancel": {
    other_client: async () => {
      const job = await newJob(A, "queued");
      return [
        {
          label: "B's owner cancels A's job through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/jobs/${job}/cancel`,
          status: 404,
          code: "client_not_found",
          intact: jobIntact(job, "queued"),
        },
        {
          label: "B's owner cancels A's job through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/jobs/${job}/cancel`,
          status: 404,
          code: "job_not_found",
          intact: jobIntact(job, "queued"),
        },
      ];
    },
    outside_hierarchy: "jobs are client-wide background work, not rows of the reporting hierarchy",
    no_permission: async () => {
      const job = await newJob(A, "queued");
      return [
        {
          label: "A's manager (jobs.read, no jobs.manage) cancels a job",
          token: t.manager,
          path: `/clients/${A}/jobs/${job}/cancel`,
          status: 403,
          code: "permission_denied",
          intact: jobIntact(job, "queued"),
        },
        {
          label: "A's viewer cancels a job",
          token: t.viewer,
          path: `/clients/${A}/jobs/${job}/cancel`,
          status: 403,
          code: "permission_denied",
          intact: jobIntact(job, "queued"),
        },
      ];
    },
    allowed: async () => {
      const job = await newJob(A, "queued");
      return {
        label: "A's admin cancels a fresh queued job",
        token: t.admin,
        path: `/clients/${A}/jobs/${job}/cancel`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "cancelled");
          assert.equal(await jobStatus(job), "cancelled");
        },
      };
    },
  },

  // -- Automations -------------------------------------------------------------------------------------
  "GET /clients/{clientId}/automations": {
    other_client: () => [
      {
        label: "B's owner lists A's automations",
        token: t.b_owner,
        path: `/clients/${A}/automations`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's automations",
        token: t.b_owner,
        path: `/clients/${B}/automations`,
        status: 200,
      },
    ],
    outside_hierarchy: "automation switches are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => [{
      label: "A's member without permissions lists the automations",
      token: t.noperm,
      path: `/clients/${A}/automations`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's viewer (automations.read through *.read) lists them",
      token: t.viewer,
      path: `/clients/${A}/automations`,
      status: 200,
      verify: (reply) =>
        assert.ok(
          reply.body.data.some((a: { event: string; action: string }) =>
            a.event === "lead.created" && a.action === "notify"
          ),
        ),
    }),
  },

  "PUT /clients/{clientId}/automations/{event}/{action}": {
    other_client: () => [{
      label: "B's owner switches off one of A's automations",
      token: t.b_owner,
      path: `/clients/${A}/automations/lead.assigned/notify`,
      body: { enabled: false },
      status: 404,
      code: "client_not_found",
      intact: noOverride("lead.assigned", "notify"),
    }],
    outside_hierarchy: "automation switches are client-wide settings, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (automations.read, no automations.manage) switches an automation",
        token: t.manager,
        path: `/clients/${A}/automations/lead.assigned/notify`,
        body: { enabled: false },
        status: 403,
        code: "permission_denied",
        intact: noOverride("lead.assigned", "notify"),
      },
      {
        label: "A's viewer switches an automation",
        token: t.viewer,
        path: `/clients/${A}/automations/lead.assigned/notify`,
        body: { enabled: false },
        status: 403,
        code: "permission_denied",
        intact: noOverride("lead.assigned", "notify"),
      },
    ],
    allowed: () => ({
      label:
        "A's admin sets the Sheets append to its default (off), which changes nothing the other cases use",
      token: t.admin,
      path: `/clients/${A}/automations/lead.created/sheets_append`,
      body: { enabled: false },
      status: 200,
      verify: async (reply) => {
        assert.equal(reply.body.enabled, false);
        assert.equal(await automationOverride(A, "lead.created", "sheets_append"), false);
      },
    }),
  },

  // -- Notifications -----------------------------------------------------------------------------------
  "GET /notifications": {
    rule: "any signed-in user; row-level security shows each user only the notifications addressed to them",
    other_client: () => [{
      label: "B's owner lists notifications: 200 without any of A's people's",
      token: t.b_owner,
      path: "/notifications?limit=200",
      status: 200,
      verify: (reply) => {
        const listed = ids(reply);
        assert.ok(!listed.includes(notifications.owner) && !listed.includes(notifications.agent));
      },
    }],
    outside_hierarchy: () => [{
      label: "A's admin (above everyone) lists notifications: 200 with none of their reports'",
      token: t.admin,
      path: "/notifications?limit=200",
      status: 200,
      verify: (reply) => {
        const listed = ids(reply);
        assert.ok(!listed.includes(notifications.agent) && !listed.includes(notifications.outside));
      },
    }],
    no_permission: async () => {
      const own = await newNotification(users.noperm.id);
      return [{
        label: "a member of A with no permissions lists exactly their own notifications",
        token: t.noperm,
        path: "/notifications?limit=200",
        status: 200,
        verify: (reply) => assert.deepEqual(ids(reply), [own]),
      }];
    },
    allowed: () => ({
      label: "A's agent lists their notifications",
      token: t.agent,
      path: "/notifications?limit=200",
      status: 200,
      verify: (reply) => {
        assert.ok(ids(reply).includes(notifications.agent));
        assert.ok(reply.body.data.every((n: { client_id: string }) => n.client_id === A));
      },
    }),
  },

  "POST /notifications/{notificationId}/read": {
    rule: "the recipient alone; anyone else's notification is 404 (row-level security)",
    other_client: async () => {
      const id = await newNotification(users.owner.id);
      return [{
        label: "B's owner marks A's owner's notification read",
        token: t.b_owner,
        path: `/notifications/${id}/read`,
        status: 404,
        code: "notification_not_found",
        intact: stillUnread(id),
      }];
    },
    outside_hierarchy: async () => {
      const agents = await newNotification(users.agent.id);
      const outsiders = await newNotification(users.outside_agent.id);
      return [
        {
          label: "A's manager marks their own agent's notification read: 404 (recipients only)",
          token: t.manager,
          path: `/notifications/${agents}/read`,
          status: 404,
          code: "notification_not_found",
          intact: stillUnread(agents),
        },
        {
          label: "A's manager marks outside_agent's notification read",
          token: t.manager,
          path: `/notifications/${outsiders}/read`,
          status: 404,
          code: "notification_not_found",
          intact: stillUnread(outsiders),
        },
      ];
    },
    no_permission: async () => {
      const own = await newNotification(users.noperm.id);
      return [{
        label: "a member of A with no permissions marks their own notification read",
        token: t.noperm,
        path: `/notifications/${own}/read`,
        status: 200,
        verify: async () => assert.equal(await isRead(own), true),
      }];
    },
    allowed: async () => {
      const own = await newNotification(users.agent.id);
      return {
        label: "A's agent marks a fresh notification of theirs read",
        token: t.agent,
        path: `/notifications/${own}/read`,
        status: 200,
        verify: async (reply) => {
          assert.ok(reply.body.read_at);
          assert.equal(await isRead(own), true);
        },
      };
    },
  },

  "POST /notifications/read-all": {
    rule: "any signed-in user, for their own notifications only (row-level security)",
    other_client: async () => {
      const id = await newNotification(users.owner.id);
      return [{
        label: "B's owner marks all read, naming client A: 200 with nothing of A's marked",
        token: t.b_owner,
        path: `/notifications/read-all?client_id=${A}`,
        status: 200,
        verify: (reply) => assert.equal(reply.body.count, 0),
        intact: stillUnread(id),
      }];
    },
    outside_hierarchy: async () => {
      const agents = await newNotification(users.agent.id);
      const outsiders = await newNotification(users.outside_agent.id);
      return [{
        label: "A's admin marks all read: their reports' notifications stay unread",
        token: t.admin,
        path: "/notifications/read-all",
        status: 200,
        intact: async () => {
          await stillUnread(agents)();
          await stillUnread(outsiders)();
        },
      }];
    },
    no_permission: async () => {
      const own = await newNotification(users.noperm.id);
      return [{
        label: "a member of A with no permissions marks all of theirs read",
        token: t.noperm,
        path: "/notifications/read-all",
        status: 200,
        verify: async (reply) => {
          assert.ok(reply.body.count >= 1);
          assert.equal(await isRead(own), true);
        },
      }];
    },
    allowed: async () => {
      const own = await newNotification(users.agent.id);
      return {
        label: "A's agent marks all of theirs read",
        token: t.agent,
        path: `/notifications/read-all?client_id=${A}`,
        status: 200,
        verify: async (reply) => {
          assert.ok(reply.body.count >= 1);
          assert.equal(await isRead(own), true);
        },
      };
    },
  },

  // -- Webhooks ----------------------------------------------------------------------------------------
  "POST /clients/{clientId}/webhooks": {
    other_client: () => {
      const url = `https://${uniq("intruder")}.example.com/hook`;
      return [{
        label: "B's owner adds a webhook endpoint to client A",
        token: t.b_owner,
        path: `/clients/${A}/webhooks`,
        body: { url },
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await endpointsWithUrl(A, url), 0, "an endpoint was created"),
      }];
    },
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: () => {
      const url = `https://${uniq("refused")}.example.com/hook`;
      const intact = async () => assert.equal(await endpointsWithUrl(A, url), 0, "an endpoint was created");
      return [
        {
          label: "A's manager (no webhooks.manage) adds an endpoint",
          token: t.manager,
          path: `/clients/${A}/webhooks`,
          body: { url },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer adds an endpoint",
          token: t.viewer,
          path: `/clients/${A}/webhooks`,
          body: { url },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: () => ({
      label: "A's admin adds an endpoint",
      token: t.admin,
      path: `/clients/${A}/webhooks`,
      body: { url: `https://${uniq("authz")}.example.com/hook`, events: ["lead.created"] },
      status: 201,
      verify: (reply) => {
        assert.equal(reply.body.client_id, A);
        assert.match(reply.body.secret, /^whsec_/);
      },
    }),
  },

  "GET /clients/{clientId}/webhooks": {
    other_client: () => [
      {
        label: "B's owner lists A's webhook endpoints",
        token: t.b_owner,
        path: `/clients/${A}/webhooks`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner lists B's endpoints: 200 without A's",
        token: t.b_owner,
        path: `/clients/${B}/webhooks`,
        status: 200,
        verify: (reply) => {
          assert.ok(ids(reply).includes(hooks.b));
          assert.ok(!ids(reply).includes(hooks.a), "A's endpoint leaks into B's list");
        },
      },
    ],
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no webhooks.manage) lists the endpoints",
        token: t.manager,
        path: `/clients/${A}/webhooks`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer lists the endpoints",
        token: t.viewer,
        path: `/clients/${A}/webhooks`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin lists A's endpoints, without any secret",
      token: t.admin,
      path: `/clients/${A}/webhooks`,
      status: 200,
      verify: (reply) => {
        assert.ok(ids(reply).includes(hooks.a) && !ids(reply).includes(hooks.b));
        assert.ok(reply.body.data.every((endpoint: object) => !("secret" in endpoint)));
      },
    }),
  },

  "GET /clients/{clientId}/webhooks/{endpointId}": {
    other_client: () => [
      {
        label: "B's owner reads A's endpoint through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/webhooks/${hooks.a}`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads A's endpoint through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/webhooks/${hooks.a}`,
        status: 404,
        code: "webhook_endpoint_not_found",
      },
    ],
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no webhooks.manage) reads an endpoint",
        token: t.manager,
        path: `/clients/${A}/webhooks/${hooks.a}`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer reads an endpoint",
        token: t.viewer,
        path: `/clients/${A}/webhooks/${hooks.a}`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin reads A's endpoint",
      token: t.admin,
      path: `/clients/${A}/webhooks/${hooks.a}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, hooks.a),
    }),
  },

  "PATCH /clients/{clientId}/webhooks/{endpointId}": {
    other_client: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "B's owner changes A's endpoint through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/webhooks/${id}`,
          body: { description: "Hijacked", enabled: false },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner changes A's endpoint through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/webhooks/${id}`,
          body: { description: "Hijacked", enabled: false },
          status: 404,
          code: "webhook_endpoint_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "A's manager (no webhooks.manage) changes an endpoint",
          token: t.manager,
          path: `/clients/${A}/webhooks/${id}`,
          body: { enabled: false },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer changes an endpoint",
          token: t.viewer,
          path: `/clients/${A}/webhooks/${id}`,
          body: { enabled: false },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const id = await newEndpoint(A);
      return {
        label: "A's admin changes a fresh endpoint's description",
        token: t.admin,
        path: `/clients/${A}/webhooks/${id}`,
        body: { description: "Changed" },
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.description, "Changed");
          assert.equal((await endpointState(id)).description, "Changed");
        },
      };
    },
  },

  "DELETE /clients/{clientId}/webhooks/{endpointId}": {
    other_client: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "B's owner deletes A's endpoint through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/webhooks/${id}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner deletes A's endpoint through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/webhooks/${id}`,
          status: 404,
          code: "webhook_endpoint_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "A's manager (no webhooks.manage) deletes an endpoint",
          token: t.manager,
          path: `/clients/${A}/webhooks/${id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer deletes an endpoint",
          token: t.viewer,
          path: `/clients/${A}/webhooks/${id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const id = await newEndpoint(A);
      return {
        label: "A's admin deletes a fresh endpoint",
        token: t.admin,
        path: `/clients/${A}/webhooks/${id}`,
        status: 204,
        verify: async () => assert.equal(await endpointState(id), undefined),
      };
    },
  },

  "POST /clients/{clientId}/webhooks/{endpointId}/rotate-secret": {
    other_client: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "B's owner rotates A's endpoint secret through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/webhooks/${id}/rotate-secret`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner rotates A's endpoint secret through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/webhooks/${id}/rotate-secret`,
          status: 404,
          code: "webhook_endpoint_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: async () => {
      const id = await newEndpoint(A);
      const intact = await endpointUnchanged(id);
      return [
        {
          label: "A's manager (no webhooks.manage) rotates an endpoint secret",
          token: t.manager,
          path: `/clients/${A}/webhooks/${id}/rotate-secret`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer rotates an endpoint secret",
          token: t.viewer,
          path: `/clients/${A}/webhooks/${id}/rotate-secret`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const id = await newEndpoint(A);
      const before = (await endpointState(id)).sealed;
      return {
        label: "A's admin rotates a fresh endpoint's secret",
        token: t.admin,
        path: `/clients/${A}/webhooks/${id}/rotate-secret`,
        status: 200,
        verify: async (reply) => {
          assert.match(reply.body.secret, /^whsec_/);
          assert.notEqual((await endpointState(id)).sealed, before, "a new sealed secret is stored");
        },
      };
    },
  },

  "GET /clients/{clientId}/webhooks/{endpointId}/deliveries": {
    other_client: () => [
      {
        label: "B's owner reads A's delivery log through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/webhooks/${hooks.a}/deliveries`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads A's delivery log through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/webhooks/${hooks.a}/deliveries`,
        status: 404,
        code: "webhook_endpoint_not_found",
      },
    ],
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no webhooks.manage) reads the delivery log",
        token: t.manager,
        path: `/clients/${A}/webhooks/${hooks.a}/deliveries`,
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer reads the delivery log",
        token: t.viewer,
        path: `/clients/${A}/webhooks/${hooks.a}/deliveries`,
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin reads A's delivery log",
      token: t.admin,
      path: `/clients/${A}/webhooks/${hooks.a}/deliveries`,
      status: 200,
      verify: (reply) =>
        assert.ok(reply.body.data.some((d: { job_id: number }) => d.job_id === deliveries.a)),
    }),
  },

  "POST /clients/{clientId}/webhooks/{endpointId}/deliveries/{jobId}/replay": {
    other_client: async () => {
      const job = await newDelivery(hooks.a);
      return [
        {
          label: "B's owner replays A's delivery through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/webhooks/${hooks.a}/deliveries/${job}/replay`,
          status: 404,
          code: "client_not_found",
          intact: noReplay(job),
        },
        {
          label: "B's owner replays A's delivery job through B's own endpoint",
          token: t.b_owner,
          path: `/clients/${B}/webhooks/${hooks.b}/deliveries/${job}/replay`,
          status: 404,
          code: "webhook_delivery_not_found",
          intact: noReplay(job),
        },
      ];
    },
    outside_hierarchy: "webhook endpoints are client-wide integrations, not rows of the reporting hierarchy",
    no_permission: async () => {
      const job = await newDelivery(hooks.a);
      return [
        {
          label: "A's manager (no webhooks.manage) replays a delivery",
          token: t.manager,
          path: `/clients/${A}/webhooks/${hooks.a}/deliveries/${job}/replay`,
          status: 403,
          code: "permission_denied",
          intact: noReplay(job),
        },
        {
          label: "A's viewer replays a delivery",
          token: t.viewer,
          path: `/clients/${A}/webhooks/${hooks.a}/deliveries/${job}/replay`,
          status: 403,
          code: "permission_denied",
          intact: noReplay(job),
        },
      ];
    },
    allowed: async () => {
      const job = await newDelivery(hooks.a);
      return {
        label: "A's admin replays a fresh delivery",
        token: t.admin,
        path: `/clients/${A}/webhooks/${hooks.a}/deliveries/${job}/replay`,
        status: 202,
        verify: async (reply) => {
          assert.ok(reply.body.job_id > job);
          assert.equal(await replaysOf(job), 1);
        },
      };
    },
  },
};

// -- Running it ----------------------------------------------------------------------------------------

interface RouteDef {
  method: string;
  path: string;
  "x-permission"?: string;
}
const routes = new Map<string, RouteDef>(
  (apiRoutes as unknown as RouteDef[]).map((route) => [`${route.method.toUpperCase()} ${route.path}`, route]),
);

/** Observed cells of the table: route -> check -> "404/404", "n/a", with "!" after an unexpected status. */
const observed = new Map<string, Partial<Record<Check, string>>>();
const failures: string[] = [];
let requests = 0;

function pathPattern(template: string): RegExp {
  return new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/?]+")}(\\?.*)?$`);
}

async function runProbe(key: string, route: RouteDef, check: Check, probe: Probe): Promise<string[]> {
  const problems: string[] = [];
  // A probe must hit the route it is filed under, or it would test some other route's authorization.
  assert.match(probe.path, pathPattern(route.path), `${key} ${check}: "${probe.path}" is not this route`);
  requests++;
  const reply = await call(stack, route.method.toUpperCase(), `/api${probe.path}`, {
    token: probe.token,
    body: probe.body,
  });
  const where = `${key} [${check}] ${probe.label}`;
  if (reply.status !== probe.status) {
    problems.push(`${where}: expected ${probe.status}, got ${reply.status} ${JSON.stringify(reply.body)}`);
  } else if (probe.code && reply.body?.code !== probe.code) {
    problems.push(`${where}: expected code ${probe.code}, got ${JSON.stringify(reply.body)}`);
  } else if (probe.verify) {
    try {
      await probe.verify(reply);
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
  }
  if (probe.intact) {
    try {
      await probe.intact();
    } catch (error) {
      problems.push(`${where}: side effect: ${(error as Error).message}`);
    }
  }
  return [String(reply.status) + (problems.length ? "!" : ""), ...problems];
}

for (const [key, entry] of Object.entries(cases)) {
  test(`authorization: ${key}`, async () => {
    const route = routes.get(key);
    assert.ok(route, `${key} is not a route of apiRoutes`);
    const permission = route["x-permission"];
    if (permission) {
      assert.equal(entry.rule, undefined, `${key} requires ${permission}; the rule is the permission`);
    } else {
      assert.ok(entry.rule, `${key} has no x-permission, so its case must state the rule it follows`);
    }
    const cells: Partial<Record<Check, string>> = {};
    observed.set(key, cells);
    const problems: string[] = [];
    for (const check of CHECKS) {
      let probes: Probe[];
      if (check === "no_token") {
        const [request] = [await entry.allowed()].flat();
        probes = [{
          label: "the positive control's request without a token",
          path: request.path,
          body: request.body,
          status: 401,
          code: "missing_token",
        }];
      } else if (check === "allowed") {
        probes = [await entry.allowed()].flat();
      } else {
        const step = entry[check];
        if (typeof step === "string") {
          assert.ok(step.length > 0, `${key} ${check}: a not-applicable check needs a reason`);
          cells[check] = "n/a";
          continue;
        }
        probes = await step();
        assert.ok(probes.length > 0, `${key} ${check}: no probes`);
      }
      if (check === "no_permission" && permission) {
        assert.ok(
          probes.some((p) => p.status === 403 && p.code === "permission_denied"),
          `${key} requires ${permission}: no_permission must expect 403 permission_denied`,
        );
      }
      if (check === "allowed") {
        assert.ok(probes.every((p) => p.status >= 200 && p.status < 300), `${key}: controls must expect 2xx`);
      }
      const statuses: string[] = [];
      for (const probe of probes) {
        const [status, ...found] = await runProbe(key, route, check, probe);
        statuses.push(status);
        problems.push(...found);
      }
      cells[check] = statuses.join("/");
    }
    failures.push(...problems);
    assert.deepEqual(problems, [], `${key}: unexpected answers`);
  });
}

test("every api route has an authorization case, and the table of observed statuses", () => {
  const keys = [...new Set([...Object.keys(cases), ...routes.keys()])];
  const lines = [["route".padEnd(64), ...CHECKS.map((c) => c.padStart(18))].join("")];
  for (const key of keys) {
    const cells = observed.get(key);
    const cell = (c: Check) =>
      !routes.has(key) ? "NO ROUTE" : !(key in cases) ? "NO CASE" : cells?.[c] ?? "ERR";
    lines.push([key.padEnd(64), ...CHECKS.map((c) => cell(c).padStart(18))].join(""));
  }
  console.log(lines.join("\n"));
  console.log(
    `authorization matrix: ${observed.size} routes, ${requests} requests, ` +
      `${failures.length} unexpected answers ("!" marks them)`,
  );
  assert.deepEqual(
    Object.keys(cases).sort(),
    [...routes.keys()].sort(),
    "the authorization cases must cover exactly the routes of apiRoutes",
  );
});
