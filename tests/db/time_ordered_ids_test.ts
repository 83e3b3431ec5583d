/**
 * Time-ordered ids (sql/0042_time_ordered_ids.sql): app.uuid_v7(), and the leads and notifications that take
 * one by default. The ingest and API paths are checked in tests/e2e (ingest_test.ts, leads_test.ts).
 */
import assert from "node:assert/strict";
import { addMember, assertTimeOrderedId, createClient, createUser, db, test, uniq } from "../_helpers.ts";

test("app.uuid_v7() makes version 7 ids of the current millisecond, in time order, never repeated", async () => {
  const before = Date.now();
  const [{ first }] = await db()<{ first: string }[]>`select app.uuid_v7() as first`;
  await db()`select pg_sleep(0.002)`;
  const [{ second }] = await db()<{ second: string }[]>`select app.uuid_v7() as second`;
  const after = Date.now();
  assertTimeOrderedId(first, before, after);
  assertTimeOrderedId(second, before, after);
  assert.ok(first < second, `${first} sorts before ${second}, made 2 ms later`);
  const [{ made, distinct }] = await db()<{ made: number; distinct: number }[]>`
    select count(*)::int as made, count(distinct id)::int as distinct
    from (select app.uuid_v7() as id from generate_series(1, 10000)) ids`;
  assert.equal(distinct, made);
});

test("a lead and a notification inserted without an id get a time-ordered one", async () => {
  const clientId = await createClient();
  const owner = await createUser();
  const membership = await addMember(clientId, owner.id, "owner");
  const before = Date.now();
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email, owner_membership_id)
    values (${clientId}, 'google_sheets', 'Tess Time', ${`${uniq("tess")}@example.com`}, ${membership})
    returning id`;
  const [notification] = await db()<{ id: string }[]>`
    insert into public.notifications (client_id, user_id, kind, title, lead_id)
    values (${clientId}, ${owner.id}, 'lead.created', 'New lead', ${lead.id}) returning id`;
  const after = Date.now();
  assertTimeOrderedId(lead.id, before, after);
  assertTimeOrderedId(notification.id, before, after);
});
