/**
 * Applies sql/ (versioned: each file once, in order, refusing a file edited after it was applied), then
 * policies/ (repeatable: re-applied whenever a file changes), then syncs the permission catalog from the
 * API routes. Safe to run concurrently: an advisory lock serialises migrators.
 *
 *   deno task migrate                 # DATABASE_URL, else the embedded server's database
 *   deno task migrate --seed          # also loads supabase/seed.sql (demo data)
 */
import postgres from "postgres";
import { PERMISSIONS } from "../functions/api/catalog.ts";
import { sha256, toHex } from "../functions/_shared/bytes.ts";

const ROOT = new URL("../", import.meta.url);
const LOCK_ID = 7_301_924_411;

export interface MigrationFile {
  name: string;
  kind: "versioned" | "repeatable";
  sql: string;
  checksum: string;
}

async function readDir(dir: string, kind: MigrationFile["kind"]): Promise<MigrationFile[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(new URL(dir, ROOT))) {
    if (entry.isFile && entry.name.endsWith(".sql")) names.push(entry.name);
  }
  names.sort();
  return await Promise.all(names.map(async (name) => {
    const sql = await Deno.readTextFile(new URL(`${dir}${name}`, ROOT));
    return { name: `${dir}${name}`, kind, sql, checksum: toHex(await sha256(sql)) };
  }));
}

/** The migration files in the order they apply: sql/ then policies/. */
export async function migrationFiles(): Promise<MigrationFile[]> {
  return [...await readDir("sql/", "versioned"), ...await readDir("policies/", "repeatable")];
}

/** SQL that writes the permission catalog the API routes declare. */
export function permissionSyncSql(): string {
  return `select app.sync_permissions('${JSON.stringify(PERMISSIONS).replaceAll("'", "''")}'::jsonb);\n`;
}

/** Applies pending migrations to the database at url; returns the names applied. */
export async function migrate(
  url: string,
  options: { seed?: boolean; quiet?: boolean } = {},
): Promise<string[]> {
  const sql = postgres(url, { max: 1, onnotice: () => {} });
  const applied: string[] = [];
  try {
    await sql`select pg_advisory_lock(${LOCK_ID})`;
    await sql`create schema if not exists migrations`;
    await sql`
      create table if not exists migrations.applied (
        name text primary key,
        kind text not null,
        checksum text not null,
        applied_at timestamptz not null default now()
      )`;
    const done = new Map(
      (await sql<{ name: string; checksum: string }[]>`select name, checksum from migrations.applied`)
        .map((row) => [row.name, row.checksum]),
    );
    for (const file of await migrationFiles()) {
      const previous = done.get(file.name);
      if (previous === file.checksum) continue;
      if (previous !== undefined && file.kind === "versioned") {
        throw new Error(
          `Migration ${file.name} was edited after it was applied (checksum ${
            previous.slice(0, 12)
          } is now ` +
            `${file.checksum.slice(0, 12)}); add a new migration instead`,
        );
      }
      await sql.begin(async (tx) => {
        await tx.unsafe(file.sql).catch((error) => {
          throw new Error(`Migration ${file.name} failed: ${error.message}`, { cause: error });
        });
        await tx`
          insert into migrations.applied (name, kind, checksum) values (${file.name}, ${file.kind}, ${file.checksum})
          on conflict (name) do update set checksum = excluded.checksum, applied_at = now()`;
      });
      applied.push(file.name);
      if (!options.quiet) console.log(`applied ${file.name}`);
    }
    await sql.unsafe(permissionSyncSql());
    if (options.seed) {
      await sql.unsafe(await Deno.readTextFile(new URL("supabase/seed.sql", ROOT)));
    }
  } finally {
    await sql`select pg_advisory_unlock(${LOCK_ID})`.catch(() => {});
    await sql.end();
  }
  return applied;
}

if (import.meta.main) {
  const { loadLocalEnv } = await import("./local_env.ts");
  loadLocalEnv();
  const { loadConfig } = await import("../functions/_shared/config.ts");
  const config = loadConfig();
  let url = config.database.url;
  if (!url) {
    const { startEmbeddedPostgres } = await import("./embedded_postgres.ts");
    url = (await startEmbeddedPostgres({
      dataDir: config.database.embedded_data_dir,
      port: config.database.embedded_port,
    }))
      .url;
  }
  const applied = await migrate(url, { seed: Deno.args.includes("--seed") });
  console.log(applied.length ? `${applied.length} migration(s) applied` : "database is up to date");
}
