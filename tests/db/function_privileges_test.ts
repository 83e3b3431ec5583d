/**
 * Deny-by-default function privileges (sql/0043_private_functions.sql): no role runs a platform function it
 * was not granted, neither the Data API's anon nor authenticated, which may use schema app for its policies;
 * also on a Supabase project, whose schema public grants every new function to the API roles.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { migrate } from "../../scripts/migrate.ts";
import { actAs, createClient, createUser, db, test, withFreshDatabase } from "../_helpers.ts";

test("anon may execute only the one platform function granted to it by name", async () => {
  const open = await db()<{ name: string }[]>`
    select p.oid::regprocedure::text as name from pg_proc p
    where p.pronamespace in ('app'::regnamespace, 'public'::regnamespace)
      and not exists (
        select 1 from pg_depend d where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
      )
      and has_function_privilege('anon', p.oid, 'execute')
    order by 1`;
  // sql/0009_access_helpers.sql grants it to every API role; it tells the triggers who is writing.
  assert.deepEqual(open.map((row) => row.name), ["app._is_api_user()"]);
});

test("anon cannot call the RPC functions, nor authenticated the ingest and dispatch internals", async () => {
  const denied = (error: { code?: string }) => error.code === "42501";
  await assert.rejects(
    db().begin(async (tx) => {
      await tx`set local role anon`;
      await tx`select public.list_api_keys('any-client')`;
    }),
    denied,
    "anon: public.list_api_keys",
  );
  const clientId = await createClient();
  const user = await createUser();
  for (
    const call of [
      "select app.ingest_requests('[]', '[]')",
      "select app.dispatch_events(1, 1)",
      "select app.flush_lead_search_index()",
    ]
  ) {
    await assert.rejects(actAs(user.id, clientId, (tx) => tx.unsafe(call)), denied, `authenticated: ${call}`);
  }
});

test("a function made by a later migration is private until granted", async () => {
  const granted = await db().begin(async (tx) => {
    await tx`create function app.later_helper() returns int language sql as 'select 1'`;
    const [row] = await tx<{ authenticated: boolean; anon: boolean }[]>`
      select has_function_privilege('authenticated', 'app.later_helper()', 'execute') as authenticated,
             has_function_privilege('anon', 'app.later_helper()', 'execute') as anon`;
    await tx`drop function app.later_helper()`;
    return row;
  });
  assert.deepEqual({ ...granted }, { authenticated: false, anon: false });
});

test("on a database with Supabase's default grants, anon still gets no platform function of public", async () => {
  await withFreshDatabase(async (url) => {
    const sql = postgres(url, { max: 1, onnotice: () => {} });
    try {
      // What a Supabase project sets up before any migration of ours runs.
      await sql`alter default privileges in schema public grant all on functions to anon, authenticated, service_role`;
      await migrate(url, { quiet: true });
      const open = await sql<{ name: string }[]>`
        select p.oid::regprocedure::text as name from pg_proc p
        where p.pronamespace = 'public'::regnamespace and has_function_privilege('anon', p.oid, 'execute')`;
      assert.deepEqual(open.map((row) => row.name), []);
      await sql`create function public.later_rpc() returns int language sql as 'select 1'`;
      const [later] = await sql<{ anon: boolean }[]>`
        select has_function_privilege('anon', 'public.later_rpc()', 'execute') as anon`;
      assert.equal(later.anon, false, "a function a later migration adds to public");
    } finally {
      await sql.end();
    }
  });
});
