/**
 * The routing SQL (sql/0013_lead_routing.sql) as the database sees it: round-robin assignment by rules (even,
 * also under concurrency; skipping disabled and unavailable members; product rules over the default),
 * deduplication by email and phone (also under concurrency, and never taking a turn), the per-viewer
 * visibility index app.lead_viewers against the set it must equal after every kind of change, and
 * app.visible_lead_page against the same query through row-level security.
 *
 * Fixtures are written as the superuser with db(); members act under row-level security with actAs().
 */
import assert from "node:assert/strict";
import { createDb, type Sql } from "../../functions/_shared/db.ts";
import { assembleReplies, type IngestCallResult } from "../../functions/ingest/ingest.replies.ts";
import {
  actAs,
  addMember,
  createClient,
  createUser,
  db,
  insertIngestKey,
  test,
  testDatabaseUrl,
  uniq,
} from "../_helpers.ts";

interface IngestResult {
  index: number;
  outcome: string;
  lead_id: string | null;
  duplicate_of: string | null;
}

/**
 * One grouped call as the ingest function makes it (app.ingest_requests): each request's items, all with the
 * same key.
 */
async function ingestGroup(
  keyHash: string,
  requests: { email?: string; phone?: string }[][],
  sql: Sql = db(),
): Promise<IngestResult[][]> {
  const keys = requests.map((items) => ({
    key_hash: keyHash,
    origin: null,
    scope: items.length > 1 ? "ingest:batch" : "ingest:single",
  }));
  const items = requests.map((request) => request.map((item, index) => ({ ...item, index })));
  const [{ call }] = await sql<{ call: IngestCallResult }[]>`
    select app.ingest_requests(${sql.json(keys)}, ${JSON.stringify(items)}) as call`;
  return assembleReplies(call).map((reply) => {
    if (reply.error !== undefined) assert.fail(JSON.stringify(reply));
    return reply.results as IngestResult[];
  });
}

interface LeadRow {
  id: string;
  owner_membership_id: string | null;
  duplicate_of: string | null;
  email: string | null;
  phone: string | null;
  created_at: string;
}

let phoneCounter = 0;
/** A fresh E.164 number no other test uses. */
function newPhone(): string {
  phoneCounter++;
  const random = String(Math.floor(Math.random() * 1e6)).padStart(6, "0");
  return `+44${String(phoneCounter % 1000).padStart(3, "0")}${random}0`;
}
const newEmail = () => `${uniq("lead")}@example.com`;

/** Inserts one lead as the superuser (the routing triggers run as for any writer). */
async function insertLead(
  clientId: string,
  fields: { email?: string | null; phone?: string | null; product_id?: string; owner?: string } = {},
  sql: Sql = db(),
): Promise<LeadRow> {
  const email = fields.email === undefined ? newEmail() : fields.email;
  const [row] = await sql<LeadRow[]>`
    insert into public.leads (client_id, source, email, phone, product_id, owner_membership_id)
    values (${clientId}, 'api', ${email}, ${fields.phone ?? null}, ${fields.product_id ?? null}::uuid,
            ${fields.owner ?? null}::uuid)
    returning id, owner_membership_id, duplicate_of, email, phone, created_at`;
  return row;
}

/** A client with an owner and n agents reporting to the owner. */
async function clientWithAgents(n: number) {
  const clientId = await createClient(uniq("routing"));
  const ownerUser = await createUser({ name: "Owner" });
  const owner = await addMember(clientId, ownerUser.id, "owner");
  const agentUsers = [];
  const agents: string[] = [];
  for (let i = 0; i < n; i++) {
    const user = await createUser({ name: `Agent ${i}` });
    agentUsers.push(user);
    agents.push(await addMember(clientId, user.id, "agent", owner));
  }
  return { clientId, owner, ownerUser, agents, agentUsers };
}

/** A product of the catalog, enabled for the given clients. */
async function product(...clientIds: string[]): Promise<string> {
  const [industry] = await db()`insert into public.industries (name) values (${
    uniq("industry")
  }) returning id`;
  const [category] = await db()`
    insert into public.categories (industry_id, name) values (${industry.id}, 'Homes') returning id`;
  const [row] = await db()`
    insert into public.products (category_id, name) values (${category.id}, ${uniq("product")}) returning id`;
  for (const clientId of clientIds) {
    await db()`insert into public.client_products (client_id, product_id) values (${clientId}, ${row.id})`;
  }
  return row.id;
}

/** How many of the given leads each membership owns ("null" for unassigned). */
async function ownerCounts(ids: string[]): Promise<Record<string, number>> {
  const rows = await db()<{ owner: string; n: number }[]>`
    select coalesce(owner_membership_id::text, 'null') as owner, count(*)::int as n
    from public.leads where id = any (${ids}::uuid[]) group by 1`;
  return Object.fromEntries(rows.map((r) => [r.owner, r.n]));
}

/**
 * Asserts app.lead_viewers equals exactly {(ancestor, lead) : ancestor in the closure of the lead's owner}
 * for the client's leads, with each row carrying its lead's created_at, and holds nothing for the given
 * (removed) members nor for leads that no longer exist.
 */
async function assertIndexExact(clientId: string, label: string, removedMembers: string[] = []) {
  const [{ actual, expected }] = await db()<{ actual: string[]; expected: string[] }[]>`
    select
      array(
        select v.viewer_id || '>' || v.lead_id || '@' || v.created_at
        from app.lead_viewers v join public.leads l on l.id = v.lead_id
        where l.client_id = ${clientId} order by 1) as actual,
      array(
        select c.ancestor_id || '>' || l.id || '@' || l.created_at
        from public.leads l join app.membership_closure c on c.descendant_id = l.owner_membership_id
        where l.client_id = ${clientId} order by 1) as expected`;
  assert.equal(
    actual.length,
    expected.length,
    `${label}: index has ${actual.length} rows, expected ${expected.length}`,
  );
  assert.deepEqual(actual, expected, `${label}: the visibility index equals the closure-derived set`);
  const [{ stray }] = await db()<{ stray: number }[]>`
    select count(*)::int as stray from app.lead_viewers v
    where v.viewer_id = any (${removedMembers}::uuid[])
       or (v.viewer_id in (select m.id from public.memberships m where m.client_id = ${clientId})
           and not exists (select 1 from public.leads l where l.id = v.lead_id))`;
  assert.equal(stray, 0, `${label}: no rows for removed members or deleted leads`);
}

/** Runs fn on `connections` separate connections at once (a dedicated pool, closed afterwards). */
async function inParallel<T>(
  connections: number,
  fn: (sql: Sql, worker: number) => Promise<T>,
): Promise<T[]> {
  const pool = createDb(testDatabaseUrl(), { max: connections });
  try {
    // Open every connection first, so the work really overlaps.
    await Promise.all(Array.from({ length: connections }, () => pool`select pg_sleep(0.05)`));
    return await Promise.all(Array.from({ length: connections }, (_, worker) => fn(pool, worker)));
  } finally {
    await pool.end();
  }
}

// -- Round robin ------------------------------------------------------------------------------------------

test("LR-01: round robin gives 40 leads over 4 agents exactly 10 each, and nobody else any", async () => {
  const { clientId, agents } = await clientWithAgents(4);
  const ids: string[] = [];
  for (let i = 0; i < 40; i++) ids.push((await insertLead(clientId)).id);
  const counts = await ownerCounts(ids);
  assert.deepEqual(
    Object.fromEntries(agents.map((a) => [a, counts[a]])),
    Object.fromEntries(agents.map((a) => [a, 10])),
    "each agent gets N/k",
  );
  assert.equal(Object.keys(counts).length, 4, "the owner (not an agent) gets none and none stays unassigned");
  await assertIndexExact(clientId, "after 40 inserts");
});

test("LR-02: 400 inserts from 20 parallel connections split exactly evenly over 4 agents", async () => {
  const { clientId, agents } = await clientWithAgents(4);
  const perWorker = await inParallel(20, async (sql) => {
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await insertLead(clientId, {}, sql)).id);
    return ids;
  });
  const ids = perWorker.flat();
  assert.equal(ids.length, 400);
  const counts = await ownerCounts(ids);
  assert.deepEqual(
    agents.map((a) => counts[a]),
    [100, 100, 100, 100],
    `turns are distinct and consecutive under concurrency: ${JSON.stringify(counts)}`,
  );
  await assertIndexExact(clientId, "after 400 concurrent inserts");
});

test("LR-03: disabled accounts and unavailable members are skipped; nobody eligible leaves the lead unassigned", async () => {
  const { clientId, agents, agentUsers } = await clientWithAgents(3);
  await db()`update public.users set disabled_at = now() where id = ${agentUsers[0].id}`;
  await db()`update public.memberships set available = false where id = ${agents[1]}`;
  const ids: string[] = [];
  for (let i = 0; i < 6; i++) ids.push((await insertLead(clientId)).id);
  assert.deepEqual(
    await ownerCounts(ids),
    { [agents[2]]: 6 },
    "only the enabled, available agent takes turns",
  );

  await db()`update public.memberships set available = false where id = ${agents[2]}`;
  const orphan = await insertLead(clientId);
  assert.equal(orphan.owner_membership_id, null, "nobody eligible: the lead stays unassigned");

  await db()`update public.memberships set available = true where id = ${agents[1]}`;
  assert.equal(
    (await insertLead(clientId)).owner_membership_id,
    agents[1],
    "available again: back in the circle",
  );
  await assertIndexExact(clientId, "with unassigned leads");
});

test("LR-04: a product's rule wins over the default; without eligible members it does not spill over", async () => {
  const { clientId, owner, agents } = await clientWithAgents(2);
  const specialist = await addMember(clientId, (await createUser()).id, "viewer", owner);
  const flat = await product(clientId);
  const other = await product(clientId);
  await db()`
    insert into public.assignment_rules (client_id, product_id, role_keys, membership_ids)
    values (${clientId}, ${flat}, '{}', ${[specialist]}::uuid[])`;

  const flatLeads: string[] = [];
  for (let i = 0; i < 4; i++) flatLeads.push((await insertLead(clientId, { product_id: flat })).id);
  assert.deepEqual(await ownerCounts(flatLeads), { [specialist]: 4 }, "the product's pool only");

  const otherLeads: string[] = [];
  for (let i = 0; i < 4; i++) otherLeads.push((await insertLead(clientId, { product_id: other })).id);
  const noProduct = (await insertLead(clientId)).owner_membership_id;
  const otherCounts = await ownerCounts(otherLeads);
  assert.deepEqual(agents.map((a) => otherCounts[a]), [2, 2], "another product follows the default rule");
  assert.ok(agents.includes(noProduct!), "a lead without product follows the default rule");

  await db()`update public.memberships set available = false where id = ${specialist}`;
  assert.equal(
    (await insertLead(clientId, { product_id: flat })).owner_membership_id,
    null,
    "the product rule has nobody available: unassigned, not given to the default pool",
  );
  await db()`update public.assignment_rules set enabled = false where client_id = ${clientId} and product_id = ${flat}`;
  assert.ok(
    agents.includes((await insertLead(clientId, { product_id: flat })).owner_membership_id!),
    "a disabled product rule gives way to the default rule",
  );
});

// -- Deduplication ----------------------------------------------------------------------------------------

test("LR-05: email duplicates (any case) link to the original, keep its owner and never take a turn", async () => {
  const { clientId, agents } = await clientWithAgents(3);
  const email = newEmail();
  const first = await insertLead(clientId, { email: `  ${email.toUpperCase()} ` });
  assert.equal(first.email, email, "the email is stored trimmed and lower-cased");
  assert.equal(first.duplicate_of, null);
  const again = await insertLead(clientId, { email: email.replace(/^l/, "L") });
  assert.equal(again.duplicate_of, first.id, "same email in another case: a duplicate of the original");
  assert.equal(
    again.owner_membership_id,
    first.owner_membership_id,
    "the duplicate goes to the original's owner",
  );
  const third = await insertLead(clientId, { email });
  assert.equal(third.duplicate_of, first.id, "a third copy links to the original, not to the second");

  const second = await insertLead(clientId);
  const fourth = await insertLead(clientId);
  const owners = [first.owner_membership_id, second.owner_membership_id, fourth.owner_membership_id];
  assert.deepEqual(
    [...owners].sort(),
    [...agents].sort(),
    "the duplicates took no turn: 3 originals, 3 agents",
  );

  const [activity] = await db()`
    select count(*)::int as n from public.lead_activities where lead_id = ${first.id} and kind = 'duplicate_received'`;
  assert.equal(activity.n, 2, "the original's timeline records each duplicate");

  const { clientId: otherClient } = await clientWithAgents(1);
  assert.equal(
    (await insertLead(otherClient, { email })).duplicate_of,
    null,
    "other clients' leads never match",
  );
});

test("LR-06: phone duplicates link to the original; a contact first seen on a duplicate belongs to the same person", async () => {
  const { clientId } = await clientWithAgents(2);
  const phone = newPhone();
  const original = await insertLead(clientId, { email: null, phone });
  const byPhone = await insertLead(clientId, { email: newEmail(), phone });
  assert.equal(byPhone.duplicate_of, original.id, "same phone, new email: a duplicate");
  assert.equal(byPhone.owner_membership_id, original.owner_membership_id);
  const byThatEmail = await insertLead(clientId, { email: byPhone.email, phone: null });
  assert.equal(
    byThatEmail.duplicate_of,
    original.id,
    "the email learnt from the duplicate identifies the person",
  );

  const x = await insertLead(clientId, { email: newEmail() });
  const y = await insertLead(clientId, { email: null, phone: newPhone() });
  const both = await insertLead(clientId, { email: x.email, phone: y.phone });
  assert.equal(
    both.duplicate_of,
    x.id,
    "email of one person and phone of another: the earlier original wins",
  );
});

test("LR-07: duplicates inside one multi-row statement link to the row before them", async () => {
  const { clientId } = await clientWithAgents(2);
  const email = newEmail();
  const rows = await db()<LeadRow[]>`
    insert into public.leads (client_id, source, email)
    select ${clientId}, 'api', e from unnest(${[
    email,
    newEmail(),
    email.toUpperCase(),
  ]}::text[]) with ordinality as t (e, n)
    order by n
    returning id, owner_membership_id, duplicate_of, email, phone, created_at`;
  const originals = rows.filter((r) => r.email === email && r.duplicate_of === null);
  assert.equal(originals.length, 1, "one original for the email");
  const copy = rows.find((r) => r.email === email && r.duplicate_of !== null)!;
  assert.equal(copy.duplicate_of, originals[0].id);
  assert.equal(copy.owner_membership_id, originals[0].owner_membership_id);
});

test("LR-08: 10 parallel inserts of the same person give exactly one original and 9 duplicates", async () => {
  for (const variant of ["email", "phone", "email and phone"] as const) {
    const { clientId } = await clientWithAgents(3);
    const email = variant === "phone" ? null : newEmail();
    const phone = variant === "email" ? null : newPhone();
    const rows = await inParallel(10, (sql) =>
      sql.begin(async (tx) => {
        const [row] = await tx<LeadRow[]>`
          insert into public.leads (client_id, source, email, phone) values (${clientId}, 'api', ${email}, ${phone})
          returning id, owner_membership_id, duplicate_of, email, phone, created_at`;
        // Hold the transaction open a moment so the others really race against it.
        await tx`select pg_sleep(0.02)`;
        return row;
      }));
    const originals = rows.filter((r) => r.duplicate_of === null);
    assert.equal(originals.length, 1, `${variant}: exactly one original`);
    assert.ok(
      rows.every((r) => r.duplicate_of === null || r.duplicate_of === originals[0].id),
      `${variant}: the 9 others link to it`,
    );
    assert.ok(
      rows.every((r) => r.owner_membership_id === originals[0].owner_membership_id),
      `${variant}: all with the original's owner`,
    );
    assert.ok(originals[0].owner_membership_id, `${variant}: the original was assigned`);
  }
});

test("LR-09: an API user cannot choose duplicate_of; the trigger decides it", async () => {
  const { clientId, ownerUser } = await clientWithAgents(1);
  const other = await insertLead(clientId);
  const [row] = await actAs(ownerUser.id, clientId, (tx) =>
    tx<{ duplicate_of: string | null }[]>`
      insert into public.leads (client_id, source, email, duplicate_of)
      values (${clientId}, 'manual', ${newEmail()}, ${other.id}) returning duplicate_of`);
  assert.equal(row.duplicate_of, null, "a forged link to an unrelated lead is dropped");
});

test("LR-19: a grouped ingest routes set-based exactly as the trigger: turns, duplicates, contacts, index", async () => {
  const { clientId, agents } = await clientWithAgents(4);
  const { hash: key } = await insertIngestKey(clientId);
  const before = await insertLead(clientId, { phone: newPhone() });
  const [e1, e2, e3] = [newEmail(), newEmail(), newEmail()];
  const p1 = newPhone();
  const replies = await ingestGroup(key, [
    [{ email: e1, phone: p1 }],
    [{ email: e2, phone: p1 }], // shares the phone of the request before it
    [{ email: e2.toUpperCase() }, { email: e3 }], // the email of the request before, then someone new
    [{ phone: before.phone! }], // a person stored earlier
    ...Array.from({ length: 9 }, () => [{ email: newEmail() }]),
  ]);
  const [[first], [second], [third, fourth], [fifth], ...fresh] = replies;
  assert.equal(first.outcome, "created");
  assert.equal(second.outcome, "duplicate");
  assert.equal(second.duplicate_of, first.lead_id, "a phone seen earlier in the group links to that lead");
  assert.equal(third.outcome, "duplicate");
  assert.equal(
    third.duplicate_of,
    first.lead_id,
    "an email first seen on a duplicate belongs to the original",
  );
  assert.equal(fourth.outcome, "created");
  assert.equal(fifth.outcome, "duplicate");
  assert.equal(fifth.duplicate_of, before.id, "a contact stored before the group links to its lead");
  const ids = [first, second, third, fourth, fifth, ...fresh.flat()].map((r) => r.lead_id!);
  const rows = await db()<LeadRow[]>`
    select id, owner_membership_id, duplicate_of, email, phone, created_at from public.leads
    where id = any (${ids}::uuid[])`;
  const byId = new Map(rows.map((row) => [row.id, row]));
  assert.equal(byId.get(second.lead_id!)!.owner_membership_id, byId.get(first.lead_id!)!.owner_membership_id);
  assert.equal(byId.get(fifth.lead_id!)!.owner_membership_id, before.owner_membership_id);
  const originals = [before.id, first.lead_id!, fourth.lead_id!, ...fresh.flat().map((r) => r.lead_id!)];
  const counts = await ownerCounts(originals);
  assert.deepEqual(agents.map((a) => counts[a]), [3, 3, 3, 3], "11 new people and 1 before: 3 turns each");
  const [{ claims }] = await db()<{ claims: Record<string, string> }[]>`
    select jsonb_object_agg(contact, lead_id) as claims from app.lead_contacts
    where client_id = ${clientId} and contact = any (${[
    `email:${e1}`,
    `email:${e2}`,
    `phone:${p1}`,
  ]}::text[])`;
  assert.deepEqual(
    claims,
    { [`email:${e1}`]: first.lead_id, [`email:${e2}`]: first.lead_id, [`phone:${p1}`]: first.lead_id },
    "every contact of the person points at the original",
  );
  await assertIndexExact(clientId, "after a grouped ingest");

  // The same person again in a later group, and twice in one: one original per person.
  const [[again], [twice1], [twice2]] = await ingestGroup(key, [[{ phone: p1 }], [{ email: e3 }], [{
    email: e3,
  }]]);
  assert.equal(again.duplicate_of, first.lead_id);
  assert.equal(twice1.duplicate_of, fourth.lead_id);
  assert.equal(twice2.duplicate_of, fourth.lead_id);
});

test("LR-20: concurrent grouped ingests sharing people in any order give one original per person", async () => {
  const { clientId, agents } = await clientWithAgents(4);
  const { hash: key } = await insertIngestKey(clientId);
  const people = Array.from({ length: 30 }, () => ({ email: newEmail(), phone: newPhone() }));
  const results = await inParallel(8, (sql) => {
    const shuffled = [...people].sort(() => Math.random() - 0.5);
    // Half the people as single requests, the rest as one batch, in one call.
    return ingestGroup(key, [...shuffled.slice(0, 15).map((p) => [p]), shuffled.slice(15)], sql);
  });
  const outcomes = results.flat(2);
  assert.equal(outcomes.length, 240);
  assert.equal(outcomes.filter((r) => r.outcome === "created").length, 30, "each person is created once");
  const rows = await db()<LeadRow[]>`
    select id, owner_membership_id, duplicate_of, email, phone, created_at from public.leads
    where client_id = ${clientId}`;
  const byId = new Map(rows.map((row) => [row.id, row]));
  for (const row of rows.filter((r) => r.duplicate_of !== null)) {
    const original = byId.get(row.duplicate_of!)!;
    assert.equal(original.email, row.email, "linked to the same person");
    assert.equal(original.duplicate_of, null, "linked to an original");
    assert.equal(row.owner_membership_id, original.owner_membership_id, "with the original's owner");
  }
  const counts = await ownerCounts(rows.filter((r) => r.duplicate_of === null).map((r) => r.id));
  assert.deepEqual(agents.map((a) => counts[a] ?? 0).sort(), [7, 7, 8, 8], "30 turns spread evenly");
  await assertIndexExact(clientId, "after concurrent grouped ingests");
});

test("LR-21: the ingest path's routing switch does nothing for API users: dedup and routing still run", async () => {
  const { clientId, ownerUser, agents } = await clientWithAgents(2);
  const first = await insertLead(clientId);
  const rows = await actAs(ownerUser.id, clientId, async (tx) => {
    await tx`select set_config('app.leads_routed', 'on', true)`;
    return await tx<{ duplicate_of: string | null; owner_membership_id: string | null }[]>`
      insert into public.leads (client_id, source, email, duplicate_of)
      values (${clientId}, 'manual', ${first.email}, null), (${clientId}, 'manual', ${newEmail()}, ${first.id})
      returning duplicate_of, owner_membership_id`;
  });
  assert.equal(rows[0].duplicate_of, first.id, "the repeat email is still a duplicate");
  assert.equal(rows[1].duplicate_of, null, "a forged link is still dropped");
  assert.ok(agents.includes(rows[1].owner_membership_id!), "and the new lead still takes a turn");
});

test("LR-10: a batch of 5000 leads with email and phone is stored in one statement", async () => {
  const { clientId, agents } = await clientWithAgents(5);
  const prefix = uniq("bulk");
  const base = 100000 + Math.floor(Math.random() * 800000);
  const [row] = await db()<{ n: number; assigned: number; owners: number }[]>`
    with inserted as (
      insert into public.leads (client_id, source, email, phone)
      select ${clientId}, 'api', ${prefix} || g || '@example.com', '+1202' || (${base} + g)::text
      from generate_series(1, 5000) g
      returning owner_membership_id)
    select count(*)::int as n, count(owner_membership_id)::int as assigned,
           count(distinct owner_membership_id)::int as owners
    from inserted`;
  assert.deepEqual(
    { ...row },
    { n: 5000, assigned: 5000, owners: agents.length },
    "no lock-table exhaustion",
  );
  const counts = await db()<{ n: number }[]>`
    select count(*)::int as n from public.leads where client_id = ${clientId} group by owner_membership_id`;
  assert.ok(counts.every((c) => c.n === 1000), "and still even");
});

// -- Assignment rules, availability and the pipeline in the database ----------------------------------------

test("LR-11: rules name only roles and members of their client; id, client and sequence are fixed", async () => {
  const { clientId, agents } = await clientWithAgents(1);
  const { agents: foreign } = await clientWithAgents(1);
  const [rule] = await db()`
    select id, role_keys, turn_sequence from public.assignment_rules where client_id = ${clientId} and product_id is null`;
  assert.deepEqual(rule.role_keys, ["agent"], "every client starts with a default rule for its agents");
  await assert.rejects(
    () => db()`update public.assignment_rules set role_keys = '{agent,wizard}' where id = ${rule.id}`,
    (e: { code?: string; message: string }) => e.code === "23503" && /Role "wizard"/.test(e.message),
  );
  await assert.rejects(
    () =>
      db()`update public.assignment_rules set membership_ids = ${[foreign[0]]}::uuid[] where id = ${rule.id}`,
    (e: { code?: string }) => e.code === "23503",
    "a member of another client is refused",
  );
  await db()`update public.assignment_rules set membership_ids = ${[
    agents[0],
    agents[0],
  ]}::uuid[] where id = ${rule.id}`;
  const [{ membership_ids }] =
    await db()`select membership_ids from public.assignment_rules where id = ${rule.id}`;
  assert.deepEqual(membership_ids, [agents[0]], "stored without repeats");
  await assert.rejects(
    () => db()`update public.assignment_rules set turn_sequence = 'app.other' where id = ${rule.id}`,
    (e: { code?: string }) => e.code === "23514",
  );
  await assert.rejects(
    () => db()`update public.assignment_rules set client_id = ${clientId} || 'x' where id = ${rule.id}`,
  );
  const sequenceExists = async () =>
    (await db()`select to_regclass(${rule.turn_sequence}) is not null as present`)[0].present;
  assert.equal(await sequenceExists(), true, "each rule has its own turn sequence");
  await db()`delete from public.assignment_rules where id = ${rule.id}`;
  assert.equal(await sequenceExists(), false, "and it goes with the rule");
  assert.equal(
    (await insertLead(clientId)).owner_membership_id,
    null,
    "without any rule leads stay unassigned",
  );
});

test("LR-12: members switch their own availability; others need members.manage and a rank at least theirs", async () => {
  const { clientId, owner, agents, agentUsers } = await clientWithAgents(2);
  const adminUser = await createUser();
  await addMember(clientId, adminUser.id, "admin", owner);
  const availability = async (id: string) =>
    (await db()`select available from public.memberships where id = ${id}`)[0].available;

  const own = await actAs(
    agentUsers[0].id,
    clientId,
    (tx) => tx`select public.set_own_availability(${clientId}, ${agents[0]}, false) as ok`,
  );
  assert.equal(own[0].ok, true);
  assert.equal(await availability(agents[0]), false, "an agent switches their own availability");
  const others = await actAs(
    agentUsers[0].id,
    clientId,
    (tx) => tx`select public.set_own_availability(${clientId}, ${agents[1]}, false) as ok`,
  );
  assert.equal(others[0].ok, false, "but not a colleague's through the function");
  const direct = await actAs(
    agentUsers[0].id,
    clientId,
    (tx) => tx`update public.memberships set available = false where id = ${agents[1]}`,
  );
  assert.equal(direct.count, 0, "nor directly: the policies need members.manage");
  assert.equal(await availability(agents[1]), true);

  const byAdmin = await actAs(
    adminUser.id,
    clientId,
    (tx) => tx`update public.memberships set available = false where id = ${agents[1]}`,
  );
  assert.equal(byAdmin.count, 1, "an admin (members.manage) switches an agent");
  await assert.rejects(
    () =>
      actAs(
        adminUser.id,
        clientId,
        (tx) => tx`update public.memberships set available = false where id = ${owner}`,
      ),
    (e: { code?: string }) => e.code === "42501",
    "but not the owner, who ranks above them",
  );

  await db()`update public.users set disabled_at = now() where id = ${agentUsers[0].id}`;
  const disabled = await actAs(
    agentUsers[0].id,
    clientId,
    (tx) => tx`select public.set_own_availability(${clientId}, ${agents[0]}, true) as ok`,
  );
  assert.equal(disabled[0].ok, false, "a disabled account changes nothing");
});

test("LR-13: the status new cannot be removed while its client exists; deleting the client still works", async () => {
  const clientId = await createClient(uniq("routing"));
  await assert.rejects(
    () => db()`delete from public.lead_statuses where client_id = ${clientId} and key = 'new'`,
    (e: { code?: string }) => e.code === "23514",
  );
  await db()`delete from public.lead_statuses where client_id = ${clientId} and key = 'lost'`;
  await db()`delete from public.clients where id = ${clientId}`;
  const [row] = await db()`select count(*)::int as n from public.lead_statuses where client_id = ${clientId}`;
  assert.equal(row.n, 0);
});

test("LR-14: API users cannot write the timeline directly", async () => {
  const { clientId, ownerUser } = await clientWithAgents(1);
  const lead = await insertLead(clientId);
  await assert.rejects(
    () =>
      actAs(
        ownerUser.id,
        clientId,
        (tx) => tx`select app._log_activity(${clientId}, ${lead.id}, 'note_added', '{}'::jsonb)`,
      ),
    (e: { code?: string }) => e.code === "42501",
  );
});

// -- The visibility index ---------------------------------------------------------------------------------

/**
 * owner > admin > manager > {agentA, teamLead > agentB}; admin > otherManager > agentC. Leads are owned by
 * each agent, the team lead and the manager.
 */
async function hierarchyWithLeads() {
  const clientId = await createClient(uniq("viewers"));
  const u = {
    owner: await createUser(),
    admin: await createUser(),
    manager: await createUser(),
    teamLead: await createUser(),
    agentA: await createUser(),
    agentB: await createUser(),
    otherManager: await createUser(),
    agentC: await createUser(),
  };
  const owner = await addMember(clientId, u.owner.id, "owner");
  const admin = await addMember(clientId, u.admin.id, "admin", owner);
  const manager = await addMember(clientId, u.manager.id, "manager", admin);
  const teamLead = await addMember(clientId, u.teamLead.id, "manager", manager);
  const agentA = await addMember(clientId, u.agentA.id, "agent", manager);
  const agentB = await addMember(clientId, u.agentB.id, "agent", teamLead);
  const otherManager = await addMember(clientId, u.otherManager.id, "manager", admin);
  const agentC = await addMember(clientId, u.agentC.id, "agent", otherManager);
  const m = { owner, admin, manager, teamLead, agentA, agentB, otherManager, agentC };
  for (const holder of [agentA, agentB, agentC, teamLead, manager]) {
    for (let i = 0; i < 3; i++) await insertLead(clientId, { owner: holder });
  }
  // Some round-robin leads too (to agents A, B and C), and one batch sharing a created_at.
  for (let i = 0; i < 3; i++) await insertLead(clientId);
  await db()`
    insert into public.leads (client_id, source, email, owner_membership_id)
    select ${clientId}, 'api', ${
    uniq("same")
  } || g || '@example.com', ${agentB}::uuid from generate_series(1, 4) g`;
  return { clientId, u, m };
}

test("LR-15: the index is exact after inserts, reassignment, new creation times, a subtree move and a member removal", async () => {
  const { clientId, m } = await hierarchyWithLeads();
  await assertIndexExact(clientId, "after inserts");

  const [lead] = await db()`select id from public.leads where owner_membership_id = ${m.agentB} limit 1`;
  await db()`update public.leads set owner_membership_id = ${m.agentC} where id = ${lead.id}`;
  await db()`update public.leads set owner_membership_id = null
             where id in (select id from public.leads where owner_membership_id = ${m.agentA} limit 1)`;
  // A new creation time re-keys the lead's rows, alone and with a new owner.
  await db()`update public.leads set created_at = created_at - interval '1 day' where id = ${lead.id}`;
  await db()`update public.leads set created_at = created_at - interval '2 days', owner_membership_id = ${m.agentA}
             where id in (select id from public.leads where owner_membership_id = ${m.agentB} limit 1)`;
  await db()`update public.leads set status = 'contacted' where client_id = ${clientId}`;
  await assertIndexExact(
    clientId,
    "after reassignment, unassignment, new creation times and an unrelated update",
  );

  // The team lead (with agent B and their leads) moves from the manager to the other manager's team.
  await db()`update public.memberships set reports_to = ${m.otherManager} where id = ${m.teamLead}`;
  await assertIndexExact(clientId, "after moving a manager with a subtree");
  const [{ managerSees }] = await db()`
    select count(*)::int as "managerSees" from app.lead_viewers v join public.leads l on l.id = v.lead_id
    where v.viewer_id = ${m.manager} and l.owner_membership_id in (${m.teamLead}, ${m.agentB})`;
  assert.equal(managerSees, 0, "the old manager no longer sees the moved team's leads");

  // To the top (no manager) and back under the admin.
  await db()`update public.memberships set reports_to = null where id = ${m.otherManager}`;
  await assertIndexExact(clientId, "after moving a subtree to the top");
  await db()`update public.memberships set reports_to = ${m.admin} where id = ${m.otherManager}`;
  await assertIndexExact(clientId, "after moving it back");

  // The other manager leaves: the team lead and agent C move up to the admin; their own leads are unassigned.
  const ownLeads = await db()`select id from public.leads where owner_membership_id = ${m.otherManager}`;
  await insertLead(clientId, { owner: m.otherManager });
  await db()`delete from public.memberships where id = ${m.otherManager}`;
  const [{ unassigned }] = await db()`
    select count(*)::int as unassigned from public.leads
    where id = any (${ownLeads.map((r) => r.id)}::uuid[]) and owner_membership_id is null`;
  assert.equal(unassigned, ownLeads.length, "the removed member's leads become unassigned");
  const [{ reportsTo }] = await db()`
    select reports_to as "reportsTo" from public.memberships where id = ${m.teamLead}`;
  assert.equal(reportsTo, m.admin, "their reports are re-attached above");
  await assertIndexExact(clientId, "after removing a manager", [m.otherManager]);

  await db()`delete from public.leads where id in (select id from public.leads where client_id = ${clientId} limit 2)`;
  await assertIndexExact(clientId, "after deleting leads");
});

test("LR-16: leads written while their team moves are indexed against the hierarchy they end up in", async () => {
  const { clientId, m } = await hierarchyWithLeads();
  const pool = createDb(testDatabaseUrl(), { max: 8 });
  try {
    for (let round = 0; round < 8; round++) {
      // Each write holds its transaction open after indexing: the window in which a move that did not wait
      // for it would miss the new or reassigned lead.
      const writers = Array.from({ length: 6 }, (_, worker) =>
        pool.begin(async (tx) => {
          if (worker === 5) {
            await tx`update public.leads set owner_membership_id = ${m.agentB}
                     where id in (select id from public.leads where owner_membership_id = ${m.agentA} limit 1)`;
          } else {
            await insertLead(clientId, { owner: [m.agentB, m.teamLead][worker % 2] }, tx as unknown as Sql);
          }
          await tx`select pg_sleep(0.03)`;
        }));
      const target = round % 2 === 0 ? m.otherManager : m.manager;
      const move = new Promise((resolve) => setTimeout(resolve, 10)).then(() =>
        pool`update public.memberships set reports_to = ${target} where id = ${m.teamLead}`
      );
      await Promise.all([...writers, move]);
      await assertIndexExact(clientId, `round ${round}: after writes racing a move`);
    }
  } finally {
    await pool.end();
  }
});

/** The same page through the index (app.visible_lead_page) and through row-level security. */
async function pages(
  userId: string,
  clientId: string,
  limit: number,
  before?: { created_at: string; id: string },
): Promise<{ viaIndex: string[] | null; viaRls: string[] }> {
  return await actAs(userId, clientId, async (tx) => {
    const [{ ids }] = await tx<{ ids: string[] | null }[]>`
      select app.visible_lead_page(${clientId}, ${limit}, ${before?.created_at ?? null}::timestamptz,
                                   ${before?.id ?? null}::uuid) as ids`;
    const rows = before
      ? await tx<{ id: string }[]>`
        select id from public.leads where client_id = ${clientId}
          and (created_at, id) < (${before.created_at}::timestamptz, ${before.id}::uuid)
        order by created_at desc, id desc limit ${limit}`
      : await tx<{ id: string }[]>`
        select id from public.leads where client_id = ${clientId} order by created_at desc, id desc limit ${limit}`;
    return { viaIndex: ids, viaRls: rows.map((r) => r.id) };
  });
}

/** Walks every page of a member's leads both ways, asserting equal ids in equal order. */
async function assertPagesMatch(userId: string, clientId: string, label: string, limit: number) {
  let before: { created_at: string; id: string } | undefined;
  let seen = 0;
  for (let page = 0; page < 100; page++) {
    const { viaIndex, viaRls } = await pages(userId, clientId, limit, before);
    assert.deepEqual(viaIndex, viaRls, `${label}, limit ${limit}, page ${page}: same ids in the same order`);
    seen += viaRls.length;
    if (viaRls.length < limit) break;
    const [last] = await db()<{ created_at: string; id: string }[]>`
      select created_at, id from public.leads where id = ${viaRls[viaRls.length - 1]}`;
    before = last;
  }
  return seen;
}

test("LR-17: app.visible_lead_page returns what row-level security returns, page by page", async () => {
  const { clientId, u, m } = await hierarchyWithLeads();
  await db()`update public.memberships set reports_to = ${m.otherManager} where id = ${m.teamLead}`;
  for (
    const [name, userId] of [
      ["manager (team)", u.manager.id],
      ["other manager (team)", u.otherManager.id],
      [
        "team lead (team)",
        u.teamLead.id,
      ],
      ["agent B (own)", u.agentB.id],
      ["agent C (own)", u.agentC.id],
    ] as const
  ) {
    let total = 0;
    for (const limit of [1, 3, 50]) total = await assertPagesMatch(userId, clientId, name, limit);
    assert.ok(total > 0, `${name} sees some leads`);
  }

  const client = await pages(u.admin.id, clientId, 10);
  assert.equal(client.viaIndex, null, "client scope reads the client's own index instead");
  const { clientId: other } = await clientWithAgents(1);
  assert.equal((await pages(u.manager.id, other, 10)).viaIndex, null, "no membership: null");
  await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
             values (${clientId}, 'blind', 'Blind', 60, 'team', '{members.read}')`;
  await db()`update public.memberships set role_id = (select id from public.roles where client_id = ${clientId}
             and key = 'blind') where id = ${m.teamLead}`;
  assert.deepEqual((await pages(u.teamLead.id, clientId, 10)).viaIndex, [], "without leads.read: nothing");
});

test("LR-18: a team manager's new lead is routed by the rules even outside their team (guard runs first)", async () => {
  const { clientId, owner, agents } = await clientWithAgents(2);
  const managerUser = await createUser();
  const manager = await addMember(clientId, managerUser.id, "manager", owner);
  const email = newEmail();
  // No RETURNING: the lead may land outside the manager's team, where they cannot read it.
  await actAs(
    managerUser.id,
    clientId,
    (tx) => tx`insert into public.leads (client_id, source, email) values (${clientId}, 'manual', ${email})`,
  );
  const [row] =
    await db()`select owner_membership_id from public.leads where client_id = ${clientId} and email = ${email}`;
  assert.ok(agents.includes(row.owner_membership_id), "assigned to an agent by the default rule");
  await assert.rejects(
    () =>
      actAs(
        managerUser.id,
        clientId,
        (tx) =>
          tx`insert into public.leads (client_id, source, email, owner_membership_id)
           values (${clientId}, 'manual', ${newEmail()}, ${agents[0]})`,
      ),
    (e: { code?: string }) => e.code === "42501",
    "an owner the manager chooses must still be inside their team",
  );
  await actAs(
    managerUser.id,
    clientId,
    (tx) =>
      tx`insert into public.leads (client_id, source, email, owner_membership_id)
       values (${clientId}, 'manual', ${newEmail()}, ${manager})`,
  );
});

test("LR-19: deleting a client removes its leads' contacts and no other client's", async () => {
  const gone = await createClient(uniq("routing"));
  const kept = await createClient(uniq("routing"));
  const email = newEmail();
  const phone = newPhone();
  await insertLead(gone, { email, phone });
  await insertLead(kept, { email, phone });
  const contacts = async (clientId: string) => {
    const [row] = await db()<{ n: number }[]>`
      select count(*)::int as n from app.lead_contacts where client_id = ${clientId}`;
    return row.n;
  };
  assert.equal(await contacts(gone), 2, "the email and the phone are claimed");
  await db()`delete from public.clients where id = ${gone}`;
  assert.equal(await contacts(gone), 0, "a deleted client leaves no contact behind");
  assert.equal(await contacts(kept), 2, "the same person in another client keeps their contacts");
  const again = await insertLead(kept, { email });
  assert.ok(again.duplicate_of, "and is still recognised there");
});
