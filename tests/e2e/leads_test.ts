/**
 * The lead service over HTTP, as staff use it: manual entry with its validation and phone normalisation,
 * round-robin assignment and deduplication, Idempotency-Key replays, hierarchical visibility (own, team two
 * levels deep, client, other clients) following hierarchy moves, keyset pagination on both the
 * visibility-index path and the plain path, filters and full-text search, the CSV export, the status
 * pipeline, reassignment inside the caller's subtree, notes and the timeline.
 */
import assert from "node:assert/strict";
import { csvCell, leadCsvStream } from "../../functions/api/leads/leads.csv.ts";
import { LEAD_COLUMNS, type LeadRow } from "../../functions/api/leads/leads.queries.ts";
import {
  actAs,
  addMember,
  assertTimeOrderedId,
  call,
  createTeam,
  createUser,
  db,
  nested,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

type Team = Awaited<ReturnType<typeof createTeam>>;

/**
 * createTeam plus a team lead below the manager with an agent of their own (two levels below the
 * manager), and a token per person for the team's client.
 */
async function leadTeam() {
  const team = await createTeam();
  const teamLeadUser = await createUser({ name: "Team lead" });
  const deepAgentUser = await createUser({ name: "Deep agent" });
  const teamLead = await addMember(team.clientId, teamLeadUser.id, "manager", team.memberships.manager);
  const deepAgent = await addMember(team.clientId, deepAgentUser.id, "agent", teamLead);
  const users = { ...team.users, teamLead: teamLeadUser, deepAgent: deepAgentUser };
  const tokens = Object.fromEntries(
    await Promise.all(
      Object.entries(users).map(async ([name, user]) => [name, await sessionToken(user, team.clientId)]),
    ),
  ) as Record<keyof typeof users, string>;
  return {
    ...team,
    users,
    memberships: { ...team.memberships, teamLead, deepAgent },
    tokens,
  };
}

/** createTeam with a token per person (two agents in the default round-robin pool). */
async function plainTeam() {
  const team = await createTeam();
  const tokens = Object.fromEntries(
    await Promise.all(
      Object.entries(team.users).map(async ([name, user]) => [name, await sessionToken(user, team.clientId)]),
    ),
  ) as Record<keyof Team["users"], string>;
  return { ...team, tokens };
}

interface LeadFixture {
  owner: string | null;
  email?: string | null;
  phone?: string | null;
  full_name?: string | null;
  status?: string;
  source?: string;
  created_at?: string;
  product_id?: string | null;
  utm_source?: string | null;
}

/**
 * Inserts leads with the database's own rights and explicit owners (the routing trigger keeps a given
 * owner); an owner of null leaves the lead unassigned. Returns the ids in input order.
 */
async function insertLeads(clientId: string, fixtures: LeadFixture[]): Promise<string[]> {
  const rows = fixtures.map((f) => ({
    id: crypto.randomUUID(),
    client_id: clientId,
    source: f.source ?? "website",
    full_name: f.full_name ?? "Fixture Lead",
    email: f.email === undefined ? `${uniq("lead")}@example.com` : f.email,
    phone: f.phone ?? null,
    status: f.status ?? "new",
    owner_membership_id: f.owner,
    product_id: f.product_id ?? null,
    utm_source: f.utm_source ?? null,
    created_at: f.created_at ?? new Date().toISOString(),
  }));
  await db()`insert into public.leads ${db()(rows)}`;
  const unassigned = rows.filter((_, i) => fixtures[i].owner === null).map((row) => row.id);
  if (unassigned.length) {
    // The routing trigger assigns ownerless leads; clear them afterwards to get unassigned ones.
    await db()`update public.leads set owner_membership_id = null where id = any (${unassigned}::uuid[])`;
  }
  return rows.map((row) => row.id);
}

const leadsPath = (clientId: string) => `/api/clients/${clientId}/leads`;
const leadPath = (clientId: string, leadId: string) => `/api/clients/${clientId}/leads/${leadId}`;

function assertStatus(reply: Reply, status: number, code?: string) {
  assert.equal(
    reply.status,
    status,
    `expected ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`,
  );
  if (code) assert.equal(reply.body.code, code);
}

function fieldErrors(reply: Reply): { path: string; code: string }[] {
  return (reply.body.errors ?? []).map((e: { path: string; code: string }) => ({
    path: e.path,
    code: e.code,
  }));
}

/** Every lead id the caller sees, following next_cursor; fails on a duplicate. */
async function listAll(token: string, clientId: string, query = "", limit = 25): Promise<string[]> {
  const ids: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const params = new URLSearchParams(query);
    params.set("limit", String(limit));
    if (cursor) params.set("cursor", cursor);
    const reply = await call(stack, "GET", `${leadsPath(clientId)}?${params}`, { token });
    assertStatus(reply, 200);
    assert.ok(reply.body.data.length <= limit, "a page never exceeds the limit");
    for (const lead of reply.body.data) {
      assert.ok(!ids.includes(lead.id), `lead ${lead.id} appears on two pages`);
      ids.push(lead.id);
    }
    cursor = reply.body.next_cursor;
    assert.ok(++pages < 100, "pagination ends");
  } while (cursor);
  return ids;
}

async function listIds(token: string, clientId: string, query = ""): Promise<string[]> {
  const reply = await call(stack, "GET", `${leadsPath(clientId)}?limit=200&${query}`, { token });
  assertStatus(reply, 200);
  return reply.body.data.map((lead: { id: string }) => lead.id);
}

const sorted = (ids: string[]) => [...ids].sort();

async function createLead(
  token: string,
  clientId: string,
  body: Record<string, unknown>,
  headers?: Record<string, string>,
) {
  return await call(stack, "POST", leadsPath(clientId), { token, body, headers });
}

/** Enables a new catalog product for the client and returns its id. */
async function enableProduct(clientId: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    with industry as (insert into public.industries (name) values (${uniq("Industry")}) returning id),
    category as (insert into public.categories (industry_id, name) select id, 'Homes' from industry returning id)
    insert into public.products (category_id, name) select id, 'Flat' from category returning id`;
  await db()`insert into public.client_products (client_id, product_id) values (${clientId}, ${row.id})`;
  return row.id;
}

// -- Manual entry: validation and normalisation --------------------------------------------------------

test("POST /leads refuses a bad email, a bad phone, no contact and unknown fields with per-field errors", async () => {
  const team = await plainTeam();
  const cases: [Record<string, unknown>, { path: string; code: string }][] = [
    [{ email: "not-an-email" }, { path: "body.email", code: "invalid_format" }],
    [{ phone: "+44 12", full_name: "Short" }, { path: "body.phone", code: "invalid_phone" }],
    [{ phone: "07911 123456" }, { path: "body.phone", code: "invalid_phone" }],
    [{ phone: "12345", country: "GB" }, { path: "body.phone", code: "invalid_phone" }],
    [{ full_name: "Nobody" }, { path: "body.email", code: "contact_required" }],
    [{ email: "a@example.com", favourite_colour: "blue" }, {
      path: "body.favourite_colour",
      code: "unknown_field",
    }],
    [{ email: "a@example.com", country: "GBR" }, { path: "body.country", code: "invalid_format" }],
    [{ email: "a@example.com", consent: "yes" }, { path: "body.consent", code: "invalid_type" }],
    [{ email: "a@example.com", product_id: "not-a-uuid" }, {
      path: "body.product_id",
      code: "invalid_format",
    }],
  ];
  for (const [body, expected] of cases) {
    const reply = await createLead(team.tokens.admin, team.clientId, body);
    assertStatus(reply, 422);
    assert.equal(reply.headers.get("content-type"), "application/problem+json");
    assert.deepEqual(fieldErrors(reply), [expected], `${JSON.stringify(body)} reports ${expected.path}`);
  }
  const [{ count }] = await db()`select count(*)::int from public.leads where client_id = ${team.clientId}`;
  assert.equal(count, 0, "no invalid lead was stored");
});

test("POST /leads normalises GB, US, DE, IN and BR phones to E.164, with and without country", async () => {
  const team = await plainTeam();
  const cases: [string, string | undefined, string][] = [
    ["07911 123456", "GB", "+447911123456"],
    ["+44 7911 123457", undefined, "+447911123457"],
    ["(415) 555-2671", "US", "+14155552671"],
    ["+1 415-555-2672", undefined, "+14155552672"],
    ["030 901820", "de", "+4930901820"],
    ["+49 151 23456789", undefined, "+4915123456789"],
    ["98765 43210", "IN", "+919876543210"],
    ["+91 98765 43211", undefined, "+919876543211"],
    ["(11) 91234-5678", "BR", "+5511912345678"],
    ["+55 11 91234-5679", undefined, "+5511912345679"],
  ];
  for (const [phone, country, e164] of cases) {
    const reply = await createLead(team.tokens.admin, team.clientId, { phone, country, full_name: "Caller" });
    assertStatus(reply, 201);
    assert.equal(reply.body.phone, e164, `${phone} (${country ?? "no country"}) is stored as ${e164}`);
    assert.equal(reply.body.source, "manual");
  }
});

test("POST /leads stores a manual lead with lower-cased email, UTM, consent, custom and the raw payload", async () => {
  const team = await plainTeam();
  const productId = await enableProduct(team.clientId);
  const body = {
    first_name: "Ada",
    last_name: "Lovelace",
    email: "Ada@Example.COM",
    product_id: productId,
    utm_source: "newsletter",
    utm_campaign: "spring",
    consent: true,
    custom: { budget: 250000 },
  };
  const before = Date.now();
  const reply = await createLead(team.tokens.admin, team.clientId, body);
  assertStatus(reply, 201);
  assertTimeOrderedId(reply.body.id, before, Date.now());
  assert.equal(reply.body.full_name, "Ada Lovelace");
  assert.equal(reply.body.email, "ada@example.com");
  assert.equal(reply.body.product_id, productId);
  assert.equal(reply.body.utm_source, "newsletter");
  assert.equal(reply.body.consent, true);
  assert.deepEqual(reply.body.custom, { budget: 250000 });
  assert.equal(reply.body.status, "new");
  assert.equal(reply.body.raw_payload, undefined, "writes return the lead without its raw payload");
  const detail = await call(stack, "GET", leadPath(team.clientId, reply.body.id), {
    token: team.tokens.admin,
  });
  assertStatus(detail, 200);
  assert.deepEqual(detail.body.raw_payload, body, "the single-lead read carries the payload as received");

  const otherProduct = await createLead(team.tokens.admin, team.clientId, {
    email: "b@example.com",
    product_id: crypto.randomUUID(),
  });
  assertStatus(otherProduct, 422);
  assert.deepEqual(fieldErrors(otherProduct), [{ path: "body.product_id", code: "product_not_enabled" }]);
});

test("POST /leads needs leads.create: an agent is refused with 403", async () => {
  const team = await plainTeam();
  const reply = await createLead(team.tokens.agent, team.clientId, { email: "x@example.com" });
  assertStatus(reply, 403, "permission_denied");
});

// -- Assignment and deduplication ----------------------------------------------------------------------

test("POST /leads assigns by round robin among agents; a duplicate is linked and keeps the original's owner", async () => {
  const team = await plainTeam();
  const agents = [team.memberships.agent, team.memberships.otherAgent];
  const owners: string[] = [];
  for (let i = 0; i < 4; i++) {
    const reply = await createLead(team.tokens.admin, team.clientId, { email: `rr${i}@example.com` });
    assertStatus(reply, 201);
    assert.equal(reply.body.duplicate_of, null);
    owners.push(reply.body.owner_membership_id);
  }
  for (const owner of owners) assert.ok(agents.includes(owner), "only agents are in the default pool");
  for (let i = 1; i < owners.length; i++) assert.notEqual(owners[i], owners[i - 1], "turns alternate");
  assert.equal(new Set(owners).size, 2, "both agents get leads");

  const original = await createLead(team.tokens.admin, team.clientId, {
    email: "jane@example.com",
    phone: "+447911123456",
  });
  assertStatus(original, 201);
  const byEmail = await createLead(team.tokens.admin, team.clientId, { email: "JANE@example.com" });
  assertStatus(byEmail, 201);
  assert.equal(byEmail.body.duplicate_of, original.body.id, "same email links to the original");
  assert.equal(byEmail.body.owner_membership_id, original.body.owner_membership_id, "and keeps its owner");
  const byPhone = await createLead(team.tokens.admin, team.clientId, {
    phone: "07911 123456",
    country: "GB",
  });
  assertStatus(byPhone, 201);
  assert.equal(byPhone.body.duplicate_of, original.body.id, "same phone, written differently, links too");
  assert.equal(byPhone.body.owner_membership_id, original.body.owner_membership_id);

  const timeline = await call(stack, "GET", `${leadPath(team.clientId, original.body.id)}/timeline`, {
    token: team.tokens.admin,
  });
  assertStatus(timeline, 200);
  const received = timeline.body.data.filter((e: { kind: string }) => e.kind === "duplicate_received");
  assert.deepEqual(
    received.map((e: { data: { lead_id: string } }) => e.data.lead_id),
    [byEmail.body.id, byPhone.body.id],
    "the original's timeline records each duplicate",
  );

  const onlyDuplicates = await listIds(team.tokens.admin, team.clientId, "duplicates=only");
  assert.deepEqual(sorted(onlyDuplicates), sorted([byEmail.body.id, byPhone.body.id]));
  const withoutDuplicates = await listIds(team.tokens.admin, team.clientId, "duplicates=exclude");
  assert.equal(withoutDuplicates.length, 5);
  assert.ok(!withoutDuplicates.includes(byEmail.body.id));
});

test("POST /leads by a manager answers {id, visible:false} when the rules give the lead outside their team", async () => {
  const team = await plainTeam();
  const replies = [];
  for (let i = 0; i < 2; i++) {
    const reply = await createLead(team.tokens.manager, team.clientId, { email: `m${i}@example.com` });
    assertStatus(reply, 201);
    replies.push(reply.body);
  }
  const hidden = replies.filter((body) => body.visible === false);
  const shown = replies.filter((body) => body.visible === undefined);
  assert.equal(hidden.length, 1, "the lead given to the agent outside the team is hidden");
  assert.deepEqual(Object.keys(hidden[0]).sort(), ["id", "visible"], "only the id is revealed");
  assert.equal(shown[0].owner_membership_id, team.memberships.agent, "the team's agent's lead is shown");
  const [stored] = await db()`select owner_membership_id from public.leads where id = ${hidden[0].id}`;
  assert.equal(stored.owner_membership_id, team.memberships.otherAgent, "the hidden lead was stored");
  const get = await call(stack, "GET", leadPath(team.clientId, hidden[0].id), { token: team.tokens.manager });
  assertStatus(get, 404, "lead_not_found");
});

test("POST /leads with the same Idempotency-Key twice answers 200 with the same lead", async () => {
  const team = await plainTeam();
  const key = uniq("submission");
  const first = await createLead(team.tokens.admin, team.clientId, { email: "idem@example.com" }, {
    "idempotency-key": key,
  });
  assertStatus(first, 201);
  assert.equal(first.body.external_ref, key, "the key is stored as external_ref");
  const again = await createLead(team.tokens.admin, team.clientId, { email: "idem@example.com" }, {
    "idempotency-key": key,
  });
  assertStatus(again, 200);
  assert.deepEqual(again.body, first.body, "the replay returns the lead unchanged");
  const [{ count }] = await db()`select count(*)::int from public.leads where client_id = ${team.clientId}`;
  assert.equal(count, 1, "one lead stored");

  // A replay of a lead the caller cannot see still answers with its id only.
  const managerKeys = [uniq("k"), uniq("k")];
  const created = [];
  for (const [i, k] of managerKeys.entries()) {
    const reply = await createLead(team.tokens.manager, team.clientId, { email: `mk${i}@example.com` }, {
      "idempotency-key": k,
    });
    assertStatus(reply, 201);
    created.push(reply.body);
  }
  for (const [i, k] of managerKeys.entries()) {
    const replay = await createLead(team.tokens.manager, team.clientId, { email: `mk${i}@example.com` }, {
      "idempotency-key": k,
    });
    assertStatus(replay, 200);
    assert.equal(replay.body.id, created[i].id);
    assert.equal(replay.body.visible, created[i].visible);
  }
  const [{ total }] =
    await db()`select count(*)::int as total from public.leads where client_id = ${team.clientId}`;
  assert.equal(total, 3, "replays store nothing");

  const mismatch = await createLead(team.tokens.admin, team.clientId, {
    email: "x@example.com",
    external_ref: "a",
  }, { "idempotency-key": "b" });
  assertStatus(mismatch, 422);
  assert.deepEqual(fieldErrors(mismatch), [{ path: "body.external_ref", code: "conflict" }]);
  const tooLong = await createLead(team.tokens.admin, team.clientId, { email: "x@example.com" }, {
    "idempotency-key": "k".repeat(201),
  });
  assertStatus(tooLong, 422);
  assert.deepEqual(fieldErrors(tooLong).map((e) => e.path), ["header.idempotency-key"]);
});

test("POST /leads with one Idempotency-Key sent concurrently stores one lead", async () => {
  const team = await plainTeam();
  const key = uniq("burst");
  const replies = await Promise.all(
    Array.from(
      { length: 6 },
      () =>
        createLead(team.tokens.admin, team.clientId, { email: "burst@example.com" }, {
          "idempotency-key": key,
        }),
    ),
  );
  assert.deepEqual(replies.map((r) => r.status).sort(), [200, 200, 200, 200, 200, 201], "one creation");
  assert.equal(new Set(replies.map((r) => r.body.id)).size, 1, "every reply names the same lead");
  const [{ count }] = await db()`select count(*)::int from public.leads where client_id = ${team.clientId}`;
  assert.equal(count, 1);
});

// -- Visibility -----------------------------------------------------------------------------------------

test("GET /leads shows an agent their own leads, a manager the team's two levels down, an admin all", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [agentLead, managerLead, teamLeadLead, deepLead, otherLead, unassigned] = await insertLeads(
    team.clientId,
    [
      { owner: m.agent },
      { owner: m.manager },
      { owner: m.teamLead },
      { owner: m.deepAgent },
      { owner: m.otherAgent },
      { owner: null },
    ],
  );
  const all = [agentLead, managerLead, teamLeadLead, deepLead, otherLead, unassigned];
  assert.deepEqual(await listIds(team.tokens.agent, team.clientId), [agentLead]);
  assert.deepEqual(await listIds(team.tokens.deepAgent, team.clientId), [deepLead]);
  assert.deepEqual(
    sorted(await listIds(team.tokens.teamLead, team.clientId)),
    sorted([teamLeadLead, deepLead]),
  );
  assert.deepEqual(
    sorted(await listIds(team.tokens.manager, team.clientId)),
    sorted([agentLead, managerLead, teamLeadLead, deepLead]),
    "a manager sees their team's leads, including a member two levels below",
  );
  assert.deepEqual(sorted(await listIds(team.tokens.admin, team.clientId)), sorted(all));
  assert.deepEqual(sorted(await listIds(team.tokens.owner, team.clientId)), sorted(all));
  assert.deepEqual(await listIds(team.tokens.viewer, team.clientId), [], "a viewer owns nothing");

  // The same through filtered lists (the plain query path).
  assert.deepEqual(
    sorted(await listIds(team.tokens.manager, team.clientId, "status=new")),
    sorted([agentLead, managerLead, teamLeadLead, deepLead]),
  );
  assert.deepEqual(await listIds(team.tokens.agent, team.clientId, "source=website"), [agentLead]);

  for (
    const [token, lead, visible] of [
      [team.tokens.agent, agentLead, true],
      [team.tokens.agent, managerLead, false],
      [team.tokens.manager, deepLead, true],
      [team.tokens.manager, otherLead, false],
      [team.tokens.manager, unassigned, false],
      [team.tokens.admin, unassigned, true],
    ] as const
  ) {
    const reply = await call(stack, "GET", leadPath(team.clientId, lead), { token });
    if (visible) assertStatus(reply, 200);
    else assertStatus(reply, 404, "lead_not_found");
  }

  const platformAdmin = await createUser({ admin: true });
  const adminToken = await sessionToken(platformAdmin, null);
  assert.deepEqual(sorted(await listIds(adminToken, team.clientId)), sorted(all), "platform admins see all");
});

test("GET /leads and GET /leads/{id} answer 404 to another client's member", async () => {
  const team = await leadTeam();
  const [lead] = await insertLeads(team.clientId, [{ owner: team.memberships.agent }]);
  const other = await createTeam();
  const outsider = await sessionToken(other.users.owner, other.clientId);
  assertStatus(
    await call(stack, "GET", leadsPath(team.clientId), { token: outsider }),
    404,
    "client_not_found",
  );
  assertStatus(
    await call(stack, "GET", leadPath(team.clientId, lead), { token: outsider }),
    404,
    "client_not_found",
  );
  assertStatus(
    await call(stack, "GET", leadPath(other.clientId, lead), { token: outsider }),
    404,
    "lead_not_found",
  );
  assert.deepEqual(await listIds(outsider, other.clientId), [], "nor does it leak into their own client");
});

test("GET /leads follows a hierarchy move on the next request", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [agentLead, deepLead] = await insertLeads(team.clientId, [{ owner: m.agent }, {
    owner: m.deepAgent,
  }]);
  assert.deepEqual(sorted(await listIds(team.tokens.manager, team.clientId)), sorted([agentLead, deepLead]));

  // The team lead (with the deep agent below) moves from the manager to the admin.
  await db()`update public.memberships set reports_to = ${m.admin} where id = ${m.teamLead}`;
  assert.deepEqual(await listIds(team.tokens.manager, team.clientId), [agentLead]);
  assertStatus(
    await call(stack, "GET", leadPath(team.clientId, deepLead), { token: team.tokens.manager }),
    404,
  );
  assert.deepEqual(
    await listIds(team.tokens.teamLead, team.clientId),
    [deepLead],
    "the team lead keeps theirs",
  );

  // The other agent moves under the manager: their leads come along.
  const [otherLead] = await insertLeads(team.clientId, [{ owner: m.otherAgent }]);
  await db()`update public.memberships set reports_to = ${m.manager} where id = ${m.otherAgent}`;
  assert.deepEqual(sorted(await listIds(team.tokens.manager, team.clientId)), sorted([agentLead, otherLead]));
  assertStatus(
    await call(stack, "GET", leadPath(team.clientId, otherLead), { token: team.tokens.manager }),
    200,
  );
});

// -- Pagination -----------------------------------------------------------------------------------------

test("GET /leads pages through 120 leads without duplicates or gaps, by index (manager) and plain (admin)", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const base = Date.parse("2025-03-01T09:00:00Z");
  const owners = [m.agent, m.manager, m.teamLead, m.deepAgent, m.otherAgent];
  // Three leads share each timestamp, so the id must break ties.
  const fixtures = Array.from({ length: 120 }, (_, i) => ({
    owner: owners[i % owners.length],
    created_at: new Date(base + Math.floor(i / 3) * 1000).toISOString(),
  }));
  const ids = await insertLeads(team.clientId, fixtures);
  const teamIds = ids.filter((_, i) => fixtures[i].owner !== m.otherAgent);

  const [paths] = await actAs(
    team.users.manager.id,
    team.clientId,
    (tx) => tx`select app.visible_lead_page(${team.clientId}, 5) is not null as manager_uses_index`,
  );
  assert.equal(paths.manager_uses_index, true, "an unfiltered manager list reads the visibility index");
  const [adminPath] = await actAs(
    team.users.admin.id,
    team.clientId,
    (tx) => tx`select app.visible_lead_page(${team.clientId}, 5) is null as admin_uses_plain`,
  );
  assert.equal(adminPath.admin_uses_plain, true, "a client-scoped list uses the plain query");

  const expectedOrder = (subset: string[]) => {
    const byId = new Map(ids.map((id, i) => [id, fixtures[i].created_at]));
    return [...subset].sort((a, b) =>
      byId.get(b)!.localeCompare(byId.get(a)!) || (b < a ? -1 : b > a ? 1 : 0)
    );
  };
  for (const limit of [25, 7]) {
    const managerPages = await listAll(team.tokens.manager, team.clientId, "", limit);
    assert.equal(managerPages.length, 96);
    assert.deepEqual(
      managerPages,
      expectedOrder(teamIds),
      `manager pages of ${limit}: newest first, complete`,
    );
    const adminPages = await listAll(team.tokens.admin, team.clientId, "", limit);
    assert.equal(adminPages.length, 120);
    assert.deepEqual(adminPages, expectedOrder(ids), `admin pages of ${limit}: newest first, complete`);
  }
  const filtered = await listAll(team.tokens.manager, team.clientId, "duplicates=exclude", 10);
  assert.deepEqual(filtered, expectedOrder(teamIds), "the filtered (plain) path pages the same leads");

  const exact = await call(stack, "GET", `${leadsPath(team.clientId)}?limit=96`, {
    token: team.tokens.manager,
  });
  assert.equal(exact.body.data.length, 96);
  assert.equal(exact.body.next_cursor, null, "a page ending exactly at the last lead has no next cursor");
});

test("GET /leads refuses a tampered cursor and a bad filter with 422", async () => {
  const team = await plainTeam();
  for (const query of ["cursor=bm90LWpzb24", `cursor=${btoa(JSON.stringify(["yesterday", "x"]))}`]) {
    const reply = await call(stack, "GET", `${leadsPath(team.clientId)}?${query}`, {
      token: team.tokens.admin,
    });
    assertStatus(reply, 422);
    assert.deepEqual(fieldErrors(reply), [{ path: "query.cursor", code: "invalid_cursor" }]);
  }
  for (
    const [query, path] of [
      ["owner=someone", "query.owner"],
      ["duplicates=maybe", "query.duplicates"],
      ["created_from=last-week", "query.created_from"],
      ["source=fax", "query.source"],
      ["limit=0", "query.limit"],
    ]
  ) {
    const reply = await call(stack, "GET", `${leadsPath(team.clientId)}?${query}`, {
      token: team.tokens.admin,
    });
    assertStatus(reply, 422);
    assert.deepEqual(fieldErrors(reply).map((e) => e.path), [path]);
  }
});

// -- Filters and search --------------------------------------------------------------------------------

test("GET /leads filters by status, owner, product, source, creation time and full-text search", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const productId = await enableProduct(team.clientId);
  const [alice, bob, carol, dave, erin] = await insertLeads(team.clientId, [
    {
      owner: m.agent,
      full_name: "Alice Walker",
      email: "alice@walker.example",
      status: "contacted",
      created_at: "2025-01-10T12:00:00Z",
      product_id: productId,
    },
    {
      owner: m.agent,
      full_name: "Bob Stone",
      email: "bob@stone.example",
      phone: "+447911000111",
      source: "meta",
      created_at: "2025-02-10T12:00:00Z",
    },
    { owner: m.deepAgent, full_name: "Carol Walker", source: "manual", created_at: "2025-03-10T12:00:00Z" },
    { owner: m.otherAgent, full_name: "Dave Walker", status: "won", created_at: "2025-04-10T12:00:00Z" },
    { owner: null, full_name: "Erin Moss", created_at: "2025-05-10T12:00:00Z", product_id: productId },
  ]);
  const admin = team.tokens.admin;
  const manager = team.tokens.manager;
  const check = async (token: string, query: string, expected: string[]) =>
    assert.deepEqual(sorted(await listIds(token, team.clientId, query)), sorted(expected), query);

  await check(admin, "status=contacted", [alice]);
  await check(admin, "status=won", [dave]);
  await check(admin, `owner=${m.agent}`, [alice, bob]);
  await check(admin, "owner=unassigned", [erin]);
  await check(manager, `owner=${m.otherAgent}`, []);
  await check(admin, `product_id=${productId}`, [alice, erin]);
  await check(manager, `product_id=${productId}`, [alice]);
  await check(admin, "source=meta", [bob]);
  await check(admin, "source=manual", [carol]);
  await check(admin, "created_from=2025-02-10T12:00:00Z&created_to=2025-04-10T12:00:00Z", [bob, carol]);
  await check(admin, "created_from=2025-03-01&created_to=2025-04-10", [carol, dave]);
  await check(admin, "q=walker", [alice, carol, dave]);
  await check(manager, "q=walker", [alice, carol]);
  await check(admin, "q=walker -carol", [alice, dave]);
  await check(admin, 'q="alice walker"', [alice]);
  await check(admin, "q=bob@stone.example", [bob]);
  await check(admin, `q=${encodeURIComponent("+447911000111")}`, [bob]);
  await check(admin, "q=walker&status=won", [dave]);
  await check(admin, "q=nobody", []);
  await check(admin, "q=", [alice, bob, carol, dave, erin]);
});

// -- CSV export -----------------------------------------------------------------------------------------

/** Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF) into rows of fields. */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else field += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(field);
      field = "";
    } else if (ch === "\r" && text[i + 1] === "\n") {
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
      i++;
    } else field += ch;
  }
  assert.equal(field, "", "the file ends with CRLF");
  return rows;
}

async function exportCsv(token: string, clientId: string, query = "") {
  const response = await fetch(`${stack.url}/functions/v1${leadsPath(clientId)}/export.csv?${query}`, {
    headers: { authorization: `Bearer ${token}` },
  });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

test("GET /leads/export.csv writes RFC 4180 CSV with a header, quoting and formula protection", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [quoted, formula, plain] = await insertLeads(team.clientId, [
    { owner: m.agent, full_name: 'Smith, "Jo"\nSecond line', created_at: "2025-01-01T00:00:00Z" },
    {
      owner: m.agent,
      full_name: '=HYPERLINK("http://evil.example")',
      phone: "+447911000222",
      utm_source: "@SUM(A1)",
      created_at: "2025-01-02T00:00:00Z",
    },
    { owner: m.otherAgent, full_name: "-2+3", utm_source: "+cmd", created_at: "2025-01-03T00:00:00Z" },
  ]);
  const reply = await exportCsv(team.tokens.admin, team.clientId);
  assert.equal(reply.status, 200, reply.text);
  assert.match(reply.headers.get("content-type") ?? "", /^text\/csv/);
  assert.match(reply.headers.get("content-disposition") ?? "", /^attachment; filename="leads-.+\.csv"$/);
  assert.ok(reply.text.includes('"Smith, ""Jo""\nSecond line"'), "quotes doubled, field quoted");
  const rows = parseCsv(reply.text);
  const header = rows[0];
  assert.deepEqual(header.slice(0, 3), ["id", "client_id", "source"]);
  for (
    const column of ["full_name", "email", "phone", "status", "owner_membership_id", "created_at", "custom"]
  ) {
    assert.ok(header.includes(column), `header has ${column}`);
  }
  const records = rows.slice(1).map((row) => Object.fromEntries(header.map((name, i) => [name, row[i]])));
  assert.deepEqual(records.map((r) => r.id), [plain, formula, quoted], "newest first");
  const byId = Object.fromEntries(records.map((r) => [r.id, r]));
  assert.equal(byId[quoted].full_name, 'Smith, "Jo"\nSecond line');
  assert.equal(byId[formula].full_name, '\'=HYPERLINK("http://evil.example")');
  assert.equal(byId[formula].utm_source, "'@SUM(A1)");
  assert.equal(byId[formula].phone, "'+447911000222", "even phones cannot start a formula");
  assert.equal(byId[plain].full_name, "'-2+3");
  assert.equal(byId[plain].utm_source, "'+cmd");
  assert.equal(byId[quoted].custom, "{}");
  assert.equal(byId[quoted].created_at, "2025-01-01T00:00:00Z");
  assert.equal(byId[quoted].consent, "false");

  const filtered = parseCsv((await exportCsv(team.tokens.admin, team.clientId, "q=smith")).text);
  assert.deepEqual(filtered.slice(1).map((row) => row[0]), [quoted], "the list's filters apply");
});

test("GET /leads/export.csv contains only what the caller sees; agents need leads.export", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const ids = await insertLeads(
    team.clientId,
    Array.from({ length: 30 }, (_, i) => ({
      owner: [m.agent, m.otherAgent, m.deepAgent][i % 3],
      created_at: new Date(Date.parse("2025-06-01T00:00:00Z") + i * 1000).toISOString(),
    })),
  );
  const agentLeads = ids.filter((_, i) => i % 3 === 0);

  assertStatus(
    await call(stack, "GET", `${leadsPath(team.clientId)}/export.csv`, { token: team.tokens.agent }),
    403,
    "permission_denied",
  );
  // Give this client's agent role the export permission.
  await db()`
    update public.roles set permissions = array_append(permissions, 'leads.export')
    where client_id = ${team.clientId} and key = 'agent'`;
  const agentCsv = await exportCsv(team.tokens.agent, team.clientId);
  assert.equal(agentCsv.status, 200, agentCsv.text);
  const agentRows = parseCsv(agentCsv.text).slice(1);
  assert.deepEqual(
    sorted(agentRows.map((row) => row[0])),
    sorted(agentLeads),
    "an agent exports only theirs",
  );

  const managerRows = parseCsv((await exportCsv(team.tokens.manager, team.clientId)).text).slice(1);
  assert.deepEqual(
    sorted(managerRows.map((row) => row[0])),
    sorted(ids.filter((_, i) => i % 3 !== 1)),
    "a manager exports the team's, two levels down included",
  );
  const adminRows = parseCsv((await exportCsv(team.tokens.admin, team.clientId)).text).slice(1);
  assert.equal(adminRows.length, 30);

  const other = await createTeam();
  const outsider = await sessionToken(other.users.owner, other.clientId);
  assert.equal((await exportCsv(outsider, team.clientId)).status, 404);
});

test("GET /leads/export.csv streams more than one page", async () => {
  const team = await plainTeam();
  const base = Date.parse("2024-01-01T00:00:00Z");
  await insertLeads(
    team.clientId,
    Array.from({ length: 2500 }, (_, i) => ({
      owner: team.memberships.agent,
      created_at: new Date(base + Math.floor(i / 2) * 1000).toISOString(),
    })),
  );
  const rows = parseCsv((await exportCsv(team.tokens.manager, team.clientId)).text).slice(1);
  assert.equal(rows.length, 2500, "every lead, across pages of the visibility index");
  assert.equal(new Set(rows.map((row) => row[0])).size, 2500, "no lead twice");
  const adminRows = parseCsv((await exportCsv(team.tokens.admin, team.clientId)).text).slice(1);
  assert.equal(new Set(adminRows.map((row) => row[0])).size, 2500);
});

test("leadCsvStream stops at its row cap and pages by the last row's position", async () => {
  const lead = (i: number) =>
    ({
      id: `00000000-0000-4000-8000-${String(i).padStart(12, "0")}`,
      created_at: new Date(Date.parse("2025-01-01T00:00:00Z") - i * 1000).toISOString(),
      full_name: i === 0 ? "=1+1" : `Lead ${i}`,
    }) as unknown as LeadRow;
  const total = 2500;
  const requested: [string, string][] = [];
  const fetchPage = (before: [string, string], limit: number) => {
    requested.push(before);
    const start = Number(before[1].slice(-12)) + 1;
    const rows = Array.from({ length: Math.min(limit + 1, total - start) }, (_, i) => lead(start + i));
    return Promise.resolve({ rows: rows.slice(0, limit), more: rows.length > limit });
  };
  const first = { rows: Array.from({ length: 1000 }, (_, i) => lead(i)), more: true };
  const read = async (maxRows: number) =>
    parseCsv(
      await new Response(leadCsvStream(first, fetchPage, { maxRows, pageSize: 1000, onError: () => {} }))
        .text(),
    );
  const all = await read(50_000);
  assert.equal(all.length, 1 + total, "header and every row");
  assert.equal(all[1][LEAD_COLUMNS.indexOf("full_name")], "'=1+1");
  assert.deepEqual(
    requested[0],
    [lead(999).created_at, lead(999).id],
    "the next page starts after the last row",
  );
  const capped = await read(1500);
  assert.equal(capped.length, 1 + 1500, "no more than the cap");
  assert.equal(csvCell('a "b", c'), '"a ""b"", c"');
  assert.equal(csvCell("\tcmd"), "'\tcmd");
  assert.equal(csvCell({ a: 1 }), '"{""a"":1}"');
  assert.equal(csvCell(null), "");
});

// -- Updates, status, assignment ------------------------------------------------------------------------

test("PATCH /leads/{id} corrects fields with normalisation, and 404s for leads outside the caller's scope", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [own, other] = await insertLeads(team.clientId, [{ owner: m.agent }, { owner: m.otherAgent }]);
  const path = leadPath(team.clientId, own);
  const reply = await call(stack, "PATCH", path, {
    token: team.tokens.agent,
    body: {
      full_name: "Fixed Name",
      email: "Fixed@Example.com",
      phone: "0151 23456789",
      country: "DE",
      utm_campaign: "autumn",
      consent: true,
      custom: { note: "vip" },
    },
  });
  assertStatus(reply, 200);
  assert.equal(reply.body.full_name, "Fixed Name");
  assert.equal(reply.body.email, "fixed@example.com");
  assert.equal(reply.body.phone, "+4915123456789");
  assert.equal(reply.body.utm_campaign, "autumn");
  assert.equal(reply.body.consent, true);
  assert.deepEqual(reply.body.custom, { note: "vip" });

  const cleared = await call(stack, "PATCH", path, { token: team.tokens.agent, body: { email: null } });
  assertStatus(cleared, 200);
  assert.equal(cleared.body.email, null);
  const noContact = await call(stack, "PATCH", path, { token: team.tokens.agent, body: { phone: null } });
  assertStatus(noContact, 422);
  assert.deepEqual(fieldErrors(noContact), [{ path: "body.email", code: "contact_required" }]);

  for (
    const [body, expected] of [
      [{ phone: "12" }, "body.phone"],
      [{ phone: "555 1234" }, "body.phone"],
      [{ email: "nope" }, "body.email"],
      [{ status: "won" }, "body.status"],
      [{}, "body"],
      [{ country: "GB" }, "body"],
    ] as const
  ) {
    const bad = await call(stack, "PATCH", path, { token: team.tokens.agent, body });
    assertStatus(bad, 422);
    assert.deepEqual(fieldErrors(bad).map((e) => e.path), [expected], JSON.stringify(body));
  }

  assertStatus(
    await call(stack, "PATCH", leadPath(team.clientId, other), {
      token: team.tokens.agent,
      body: { full_name: "X" },
    }),
    404,
    "lead_not_found",
  );
  const [untouched] = await db()`select full_name from public.leads where id = ${other}`;
  assert.equal(untouched.full_name, "Fixture Lead");
  assertStatus(
    await call(stack, "PATCH", path, { token: team.tokens.viewer, body: { full_name: "X" } }),
    403,
    "permission_denied",
  );
});

test("POST /leads/{id}/status moves a lead through the client's pipeline and records it on the timeline", async () => {
  const team = await leadTeam();
  const [lead, other] = await insertLeads(team.clientId, [
    { owner: team.memberships.agent, created_at: "2025-01-01T00:00:00Z" },
    { owner: team.memberships.otherAgent },
  ]);
  const statuses = await call(stack, "GET", `/api/clients/${team.clientId}/lead-statuses`, {
    token: team.tokens.agent,
  });
  assertStatus(statuses, 200);
  assert.deepEqual(statuses.body.data.map((s: { key: string }) => s.key), [
    "new",
    "contacted",
    "qualified",
    "won",
    "lost",
  ]);
  assert.equal(statuses.body.data.find((s: { key: string }) => s.key === "won").is_closed, true);

  const statusPath = `${leadPath(team.clientId, lead)}/status`;
  const moved = await call(stack, "POST", statusPath, {
    token: team.tokens.agent,
    body: { status: "contacted" },
  });
  assertStatus(moved, 200);
  assert.equal(moved.body.status, "contacted");
  assertStatus(
    await call(stack, "POST", statusPath, { token: team.tokens.agent, body: { status: "won" } }),
    200,
  );

  const unknown = await call(stack, "POST", statusPath, {
    token: team.tokens.agent,
    body: { status: "pending" },
  });
  assertStatus(unknown, 422, "unknown_status");
  assert.deepEqual(fieldErrors(unknown), [{ path: "body.status", code: "unknown_status" }]);
  assertStatus(
    await call(stack, "POST", `${leadPath(team.clientId, other)}/status`, {
      token: team.tokens.agent,
      body: { status: "won" },
    }),
    404,
    "lead_not_found",
  );

  const timeline = await call(stack, "GET", `${leadPath(team.clientId, lead)}/timeline`, {
    token: team.tokens.agent,
  });
  assertStatus(timeline, 200);
  const entries = timeline.body.data;
  assert.deepEqual(entries.map((e: { kind: string }) => e.kind), [
    "created",
    "status_changed",
    "status_changed",
  ]);
  assert.equal(entries[0].created_at, "2025-01-01T00:00:00Z");
  assert.equal(entries[0].data.source, "website");
  assert.deepEqual(entries[1].data, { from: "new", to: "contacted" });
  assert.deepEqual(entries[2].data, { from: "contacted", to: "won" });
  assert.equal(entries[1].actor_id, team.users.agent.id, "the change is attributed to the agent");
  assertStatus(
    await call(stack, "GET", `${leadPath(team.clientId, other)}/timeline`, { token: team.tokens.agent }),
    404,
  );
});

test("POST /leads/{id}/assign reassigns within the caller's subtree and refuses everything else", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [lead, outside] = await insertLeads(team.clientId, [{ owner: m.agent }, { owner: m.otherAgent }]);
  const assign = (token: string, leadId: string, membershipId: string) =>
    call(stack, "POST", `${leadPath(team.clientId, leadId)}/assign`, {
      token,
      body: { membership_id: membershipId },
    });

  const moved = await assign(team.tokens.manager, lead, m.deepAgent);
  assertStatus(moved, 200);
  assert.equal(moved.body.owner_membership_id, m.deepAgent, "a manager assigns two levels down");
  assert.deepEqual(await listIds(team.tokens.deepAgent, team.clientId), [lead], "the new owner sees it");
  assert.deepEqual(await listIds(team.tokens.agent, team.clientId), [], "the old owner no longer does");

  const refused = await assign(team.tokens.manager, lead, m.otherAgent);
  assertStatus(refused, 403, "assignee_outside_scope");
  assertStatus(await assign(team.tokens.manager, lead, m.admin), 403, "assignee_outside_scope");
  assertStatus(await assign(team.tokens.manager, outside, m.agent), 404, "lead_not_found");
  const [stored] = await db()`select owner_membership_id from public.leads where id = ${lead}`;
  assert.equal(stored.owner_membership_id, m.deepAgent, "refused moves change nothing");

  assertStatus(await assign(team.tokens.agent, lead, m.agent), 403, "permission_denied");
  assertStatus(await assign(team.tokens.deepAgent, lead, m.agent), 403, "permission_denied");

  // Another client's member: the foreign key refuses it for an admin, the team check first for a manager.
  const other = await createTeam();
  const foreign = await assign(team.tokens.admin, lead, other.memberships.agent);
  assertStatus(foreign, 422);
  assert.deepEqual(fieldErrors(foreign), [{ path: "body.membership_id", code: "member_not_found" }]);
  assertStatus(
    await assign(team.tokens.manager, lead, other.memberships.agent),
    403,
    "assignee_outside_scope",
  );
  assertStatus(await assign(team.tokens.admin, lead, crypto.randomUUID()), 422);

  assertStatus(await assign(team.tokens.admin, lead, m.otherAgent), 200); // an admin assigns anywhere
  const timeline = await call(stack, "GET", `${leadPath(team.clientId, lead)}/timeline`, {
    token: team.tokens.admin,
  });
  const reassigned = timeline.body.data.filter((e: { kind: string }) => e.kind === "reassigned");
  assert.deepEqual(reassigned.map((e: { data: unknown }) => e.data), [
    { from: m.agent, to: m.deepAgent },
    { from: m.deepAgent, to: m.otherAgent },
  ]);
  assert.equal(reassigned[0].actor_id, team.users.manager.id);
  // Names for people, not only ids: who acted, and every membership an entry mentions.
  assert.deepEqual(reassigned.map((e: { actor_name: string }) => e.actor_name), ["Manager", "Admin"]);
  assert.deepEqual(reassigned.map((e: { member_names: unknown }) => e.member_names), [
    { [m.agent]: "Agent", [m.deepAgent]: "Deep agent" },
    { [m.deepAgent]: "Deep agent", [m.otherAgent]: "Other agent" },
  ]);
  const created = timeline.body.data[0];
  assert.equal(created.kind, "created");
  assert.equal(created.data.owner_membership_id, m.agent, "the owner it was created with, not today's");
  assert.deepEqual(created.member_names, { [m.agent]: "Agent" });
  assert.equal(created.actor_name, null, "the platform created it");

  // The new owner sees the names within their own part of the hierarchy only, as with note authors.
  const ownerView = await call(stack, "GET", `${leadPath(team.clientId, lead)}/timeline`, {
    token: team.tokens.otherAgent,
  });
  assertStatus(ownerView, 200);
  const seen = ownerView.body.data.filter((e: { kind: string }) => e.kind === "reassigned");
  assert.deepEqual(seen.map((e: { actor_name: string | null }) => e.actor_name), [null, null]);
  assert.deepEqual(seen.map((e: { member_names: unknown }) => e.member_names), [
    { [m.agent]: null, [m.deepAgent]: null },
    { [m.deepAgent]: null, [m.otherAgent]: "Other agent" },
  ]);
});

// -- Notes ----------------------------------------------------------------------------------------------

test("lead notes are added with leads.notes and visible only with their lead", async () => {
  const team = await leadTeam();
  const m = team.memberships;
  const [lead, other] = await insertLeads(team.clientId, [{ owner: m.agent }, { owner: m.otherAgent }]);
  const notesPath = `${leadPath(team.clientId, lead)}/notes`;

  const added = await call(stack, "POST", notesPath, {
    token: team.tokens.agent,
    body: { body: "Called, no answer" },
  });
  assertStatus(added, 201);
  assert.equal(added.body.body, "Called, no answer");
  assert.equal(added.body.author_id, team.users.agent.id);
  assert.equal(added.body.author_name, "Agent");
  assertStatus(
    await call(stack, "POST", notesPath, { token: team.tokens.manager, body: { body: "Try tomorrow" } }),
    201,
  );

  const agentView = await call(stack, "GET", notesPath, { token: team.tokens.agent });
  assertStatus(agentView, 200);
  assert.deepEqual(agentView.body.data.map((n: { body: string }) => n.body), [
    "Called, no answer",
    "Try tomorrow",
  ]);
  assert.equal(agentView.body.data[1].author_name, null, "the agent cannot see their manager's account");
  const managerView = await call(stack, "GET", notesPath, { token: team.tokens.manager });
  assert.equal(managerView.body.data.length, 2);

  assertStatus(await call(stack, "GET", notesPath, { token: team.tokens.otherAgent }), 404, "lead_not_found");
  assertStatus(
    await call(stack, "POST", notesPath, { token: team.tokens.otherAgent, body: { body: "Sneaky" } }),
    404,
    "lead_not_found",
  );
  assertStatus(
    await call(stack, "POST", `${leadPath(team.clientId, other)}/notes`, {
      token: team.tokens.agent,
      body: { body: "Sneaky" },
    }),
    404,
  );
  assertStatus(
    await call(stack, "POST", notesPath, { token: team.tokens.viewer, body: { body: "Hi" } }),
    403,
    "permission_denied",
  );
  const empty = await call(stack, "POST", notesPath, { token: team.tokens.agent, body: { body: "  " } });
  assertStatus(empty, 422);

  const timeline = await call(stack, "GET", `${leadPath(team.clientId, lead)}/timeline`, {
    token: team.tokens.agent,
  });
  const notes = timeline.body.data.filter((e: { kind: string }) => e.kind === "note_added");
  assert.deepEqual(notes.map((e: { data: { body: string } }) => e.data.body), [
    "Called, no answer",
    "Try tomorrow",
  ]);
  assert.equal(timeline.body.data[0].kind, "created");

  // Once the lead moves out of the agent's scope, so do its notes.
  await db()`update public.leads set owner_membership_id = ${m.otherAgent} where id = ${lead}`;
  assertStatus(await call(stack, "GET", notesPath, { token: team.tokens.agent }), 404);
  const [{ count }] = await actAs(
    team.users.agent.id,
    team.clientId,
    (tx) => tx`select count(*)::int from public.lead_notes where lead_id = ${lead}`,
  );
  assert.equal(count, 0, "nor can supabase-js read them directly");
  const notesSeen = await call(stack, "GET", notesPath, { token: team.tokens.otherAgent });
  assert.equal(notesSeen.body.data.length, 2, "the new owner sees the history");
});

test("the OpenAPI document lists the lead routes with their permissions", async () => {
  const reply = await call(stack, "GET", "/api/openapi.json");
  assertStatus(reply, 200);
  const paths = reply.body.paths;
  assert.equal(paths["/api/clients/{clientId}/leads"].get["x-permission"], "leads.read");
  assert.equal(paths["/api/clients/{clientId}/leads"].post["x-permission"], "leads.create");
  assert.equal(paths["/api/clients/{clientId}/leads/export.csv"].get["x-permission"], "leads.export");
  assert.equal(paths["/api/clients/{clientId}/leads/{leadId}/assign"].post["x-permission"], "leads.assign");
  assert.equal(paths["/api/clients/{clientId}/leads/{leadId}/notes"].post["x-permission"], "leads.notes");
  assert.ok(paths["/api/clients/{clientId}/leads/export.csv"].get.responses["200"].content["text/csv"]);
  assert.ok(reply.body.components.schemas.HiddenLead, "the {id, visible:false} answer is documented");
});

test("JSON nested deeper than 64 levels gets a 422 too_deep, never a 500", async () => {
  const team = await leadTeam();
  const [lead] = await insertLeads(team.clientId, [{ owner: team.memberships.agent }]);
  const token = team.tokens.admin;
  const base = { full_name: "Deep Test", email: `${uniq("deep")}@example.com` };
  // 20,000 levels is past both the JavaScript stack of a recursive walk and PostgreSQL's jsonb parser.
  const tooDeep = ["body", "custom", "tree", ...Array(62).fill("0")].join(".");
  for (
    const [what, reply] of [
      [
        "a new lead",
        call(stack, "POST", leadsPath(team.clientId), {
          token,
          body: `{"email": "${base.email}", "custom": {"tree": ${nested(20_000)}}}`,
        }),
      ],
      [
        "a correction",
        call(stack, "PATCH", leadPath(team.clientId, lead), {
          token,
          body: { custom: { tree: JSON.parse(nested(63)) } },
        }),
      ],
    ] as const
  ) {
    const answered = await reply;
    assert.equal(answered.status, 422, `${what}: ${JSON.stringify(answered.body)}`);
    assert.deepEqual(fieldErrors(answered), [{ path: tooDeep, code: "too_deep" }], what);
  }
  const accepted = await createLead(token, team.clientId, {
    ...base,
    custom: { tree: JSON.parse(nested(62)) },
  });
  assert.equal(accepted.status, 201, JSON.stringify(accepted.body));
});

test("a key named __proto__ or a number beyond a double gets a 422 instead of being dropped or nulled", async () => {
  const team = await leadTeam();
  const [lead] = await insertLeads(team.clientId, [{ owner: team.memberships.agent }]);
  const token = team.tokens.admin;
  // Text: in a JavaScript object literal "__proto__" sets the prototype and never reaches JSON.
  const custom = `{"custom": {"plan": "pro", "__proto__": {"seats": 3}}}`;
  const created = await call(stack, "POST", leadsPath(team.clientId), {
    token,
    body: `{"email": "${uniq("proto")}@example.com", ${custom.slice(1, -1)}}`,
  });
  const corrected = await call(stack, "PATCH", leadPath(team.clientId, lead), { token, body: custom });
  for (const answered of [created, corrected]) {
    assert.equal(answered.status, 422, JSON.stringify(answered.body));
    assert.deepEqual(fieldErrors(answered), [{ path: "body.custom.__proto__", code: "reserved_key" }]);
  }
  const [{ custom: stored }] = await db()<
    { custom: object }[]
  >`select custom from public.leads where id = ${lead}`;
  assert.deepEqual(stored, {}, "the correction changed nothing");
  const tooLarge = await call(stack, "PATCH", leadPath(team.clientId, lead), {
    token,
    body: `{"custom": {"budget": 1e400}}`,
  });
  assert.equal(tooLarge.status, 422, JSON.stringify(tooLarge.body));
  assert.deepEqual(fieldErrors(tooLarge), [{ path: "body.custom.budget", code: "number_out_of_range" }]);
});

test("text PostgreSQL cannot store (NUL, unpaired surrogates) gets a 422 wherever it comes in, never a 500", async () => {
  const team = await leadTeam();
  const [lead] = await insertLeads(team.clientId, [{ owner: team.memberships.agent }]);
  const token = team.tokens.admin;
  const base = { full_name: "Nul Test", email: `${uniq("nul")}@example.com` };
  const refusals: Array<[string, string, Promise<Reply>]> = [
    ["a name", "body.full_name", createLead(token, team.clientId, { ...base, full_name: "Nul\u0000Test" })],
    [
      "a custom value",
      "body.custom.note",
      createLead(token, team.clientId, { ...base, custom: { note: "a\u0000b" } }),
    ],
    [
      "a custom key",
      "body.custom.a\u0000b",
      createLead(token, team.clientId, { ...base, custom: { "a\u0000b": 1 } }),
    ],
    [
      "a correction",
      "body.full_name",
      call(stack, "PATCH", leadPath(team.clientId, lead), { token, body: { full_name: "\u0000" } }),
    ],
    [
      "a note",
      "body.body",
      call(stack, "POST", `${leadPath(team.clientId, lead)}/notes`, { token, body: { body: "\u0000" } }),
    ],
    ["a search", "query.q", call(stack, "GET", `${leadsPath(team.clientId)}?q=a%00b`, { token })],
    // Sent as the escape "\ud800", which jsonb refuses and text would store as U+FFFD.
    [
      "half an emoji",
      "body.full_name",
      createLead(token, team.clientId, { ...base, full_name: "Smile \ud83d" }),
    ],
    [
      "an unpaired surrogate in a custom key",
      "body.custom.\udc00",
      createLead(token, team.clientId, { ...base, custom: { "\udc00": 1 } }),
    ],
  ];
  for (const [what, path, reply] of refusals) {
    const answered = await reply;
    assert.equal(answered.status, 422, `${what}: ${JSON.stringify(answered.body)}`);
    assert.equal(answered.body.code, "validation_failed", what);
    assert.deepEqual(fieldErrors(answered), [{ path, code: "invalid_string" }], what);
  }
  const [stored] = await db()<{ leads: number; notes: number }[]>`
    select (select count(*)::int from public.leads where client_id = ${team.clientId}) as leads,
           (select count(*)::int from public.lead_notes where lead_id = ${lead}) as notes`;
  assert.deepEqual(stored, { leads: 1, notes: 0 }, "nothing was stored");
});
