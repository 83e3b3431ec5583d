import assert from "node:assert/strict";
import postgres from "postgres";
import { migrate, migrationFiles } from "../../scripts/migrate.ts";
import { db, test, withFreshDatabase } from "../_helpers.ts";

test("migrate() applies every file once and a second run applies nothing", async () => {
  await withFreshDatabase(async (url) => {
    const files = await migrationFiles();
    const first = await migrate(url, { quiet: true });
    assert.deepEqual(first, files.map((f) => f.name), "first run applies sql/ then policies/ in order");
    assert.deepEqual(await migrate(url, { quiet: true }), [], "second run is a no-op");
    const sql = postgres(url, { max: 1 });
    try {
      const rows = await sql`select name, checksum from migrations.applied order by name`;
      assert.equal(rows.length, files.length, "every file is recorded with its checksum");
      for (const file of files) {
        assert.equal(
          rows.find((r) => r.name === file.name)?.checksum,
          file.checksum,
          `${file.name} checksum`,
        );
      }
    } finally {
      await sql.end();
    }
  });
});

test("migrate() refuses a versioned migration edited after it was applied", async () => {
  await withFreshDatabase(async (url) => {
    await migrate(url, { quiet: true });
    const sql = postgres(url, { max: 1 });
    try {
      await sql`update migrations.applied set checksum = 'edited' where name = 'sql/0003_users.sql'`;
    } finally {
      await sql.end();
    }
    await assert.rejects(
      () => migrate(url, { quiet: true }),
      /sql\/0003_users\.sql was edited after it was applied/,
    );
  });
});

test("migrate() re-applies a policies file whose content changed", async () => {
  await withFreshDatabase(async (url) => {
    await migrate(url, { quiet: true });
    const sql = postgres(url, { max: 1 });
    try {
      await sql`update migrations.applied set checksum = 'old' where name = 'policies/clients.sql'`;
    } finally {
      await sql.end();
    }
    assert.deepEqual(await migrate(url, { quiet: true }), ["policies/clients.sql"]);
  });
});

test("migrate() is safe when two migrators run at once", async () => {
  await withFreshDatabase(async (url) => {
    const [a, b] = await Promise.all([migrate(url, { quiet: true }), migrate(url, { quiet: true })]);
    assert.equal(a.length + b.length, (await migrationFiles()).length, "each file applied exactly once");
  });
});

test("every table in the public and app schemas has row-level security enabled", async () => {
  const tables = await db()<{ name: string; rls: boolean }[]>`
    select n.nspname || '.' || c.relname as name, c.relrowsecurity as rls
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where n.nspname in ('public', 'app') and c.relkind in ('r', 'p')`;
  assert.ok(tables.length >= 12);
  assert.deepEqual(tables.filter((t) => !t.rls).map((t) => t.name), [], "tables without RLS");
});

test("private tables in the app schema are unreadable by API roles", async () => {
  const grants = await db()`
    select table_name, grantee, privilege_type from information_schema.role_table_grants
    where table_schema = 'app' and grantee in ('anon', 'authenticated')`;
  assert.deepEqual([...grants], [], "no table privileges for anon or authenticated");
});

test("the Supabase compatibility layer provides auth.uid(), auth.role() and auth.jwt()", async () => {
  const [row] = await db().begin(async (tx) => {
    await tx`select set_config('request.jwt.claims', ${
      JSON.stringify({ sub: "00000000-0000-4000-8000-0000000000aa", role: "authenticated", client_id: "x" })
    }, true)`;
    return await tx`select auth.uid()::text as uid, auth.role() as role, auth.jwt() ->> 'client_id' as client`;
  });
  assert.deepEqual({ ...row }, {
    uid: "00000000-0000-4000-8000-0000000000aa",
    role: "authenticated",
    client: "x",
  });
});

test("the permission catalog matches the permissions the API routes declare", async () => {
  const { PERMISSIONS } = await import("../../functions/api/catalog.ts");
  const rows = await db()<{ code: string }[]>`select code from public.permissions order by code`;
  assert.deepEqual(rows.map((r) => r.code), Object.keys(PERMISSIONS).sort());
});
