/**
 * The Supabase CLI project stays in step with the repository: supabase/migrations/ is exactly what sql/ and
 * policies/ generate, and supabase/config.toml deploys every edge function from its real entrypoint.
 */
import assert from "node:assert/strict";
import { parse } from "smol-toml";
import { generateSupabaseMigrations, readSupabaseMigrations } from "../../scripts/supabase_migrations.ts";
import { test } from "../_helpers.ts";

const ROOT = new URL("../../", import.meta.url);
const SUPABASE_DIR = new URL("supabase/", ROOT);
const REGENERATE =
  "supabase/migrations/ is out of date; run `deno task supabase:migrations` and commit the result";

async function exists(url: URL): Promise<boolean> {
  try {
    await Deno.stat(url);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/** Edge function folders with an index.ts, except main (the local router, never deployed). */
async function deployableFunctions(): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(new URL("functions/", ROOT))) {
    if (!entry.isDirectory || entry.name.startsWith("_") || entry.name === "main") continue;
    if (await exists(new URL(`functions/${entry.name}/index.ts`, ROOT))) names.push(entry.name);
  }
  return names.sort();
}

test("supabase/migrations matches what sql/ and policies/ generate", async () => {
  const expected = await generateSupabaseMigrations();
  const committed = await readSupabaseMigrations();
  // Same file set first, so a missing or stale file is named rather than reported as a content difference.
  assert.deepEqual([...committed.keys()].sort(), [...expected.keys()].sort(), REGENERATE);
  for (const [name, sql] of expected) {
    assert.equal(committed.get(name), sql, `${REGENERATE} (${name} differs)`);
  }
});

test("generateSupabaseMigrations() orders sql/ first and ends with one policies file", async () => {
  const names = [...(await generateSupabaseMigrations()).keys()];
  // The Supabase CLI applies files in version order, which must be the order `deno task migrate` uses.
  assert.deepEqual(names, [...names].sort(), "file names sort in generation order");
  for (const name of names) {
    assert.match(name, /^\d{14}_[a-z0-9_]+\.sql$/, `${name} is <14-digit version>_<name>.sql`);
  }
  assert.equal(names.filter((n) => n.endsWith("_policies_and_permissions.sql")).length, 1);
  assert.match(names.at(-1)!, /_policies_and_permissions\.sql$/, "policies and permissions apply last");
  assert.equal(new Set(names.map((n) => n.slice(0, 14))).size, names.length, "every version is unique");
});

test("supabase/config.toml parses and deploys every edge function except main", async () => {
  const config = parse(await Deno.readTextFile(new URL("config.toml", SUPABASE_DIR))) as {
    project_id?: string;
    api?: { schemas?: string[] };
    functions?: Record<
      string,
      { entrypoint?: string; import_map?: string; verify_jwt?: boolean; static_files?: string[] }
    >;
  };
  assert.equal(config.project_id, "lead-automation-platform");
  assert.deepEqual(config.api?.schemas, ["public"], "only the public schema is exposed; app stays private");
  const declared = config.functions ?? {};
  assert.ok(!("main" in declared), "functions/main is the local router and must not be deployed");

  for (const name of await deployableFunctions()) {
    const entry = declared[name];
    assert.ok(
      entry,
      `supabase/config.toml has no [functions.${name}] section for functions/${name}/index.ts`,
    );
    assert.equal(entry.entrypoint, `../functions/${name}/index.ts`, `[functions.${name}] entrypoint`);
    assert.equal(typeof entry.verify_jwt, "boolean", `[functions.${name}] states verify_jwt explicitly`);
  }
  // Paths in supabase/config.toml are relative to supabase/; each must name a file that exists.
  for (const [name, entry] of Object.entries(declared)) {
    for (const path of [entry.entrypoint, entry.import_map]) {
      assert.ok(path, `[functions.${name}] sets entrypoint and import_map`);
      assert.ok(
        await exists(new URL(path, SUPABASE_DIR)),
        `[functions.${name}] points at ${path}, which is missing`,
      );
    }
    for (const path of (entry.static_files ?? []).filter((p) => !p.includes("*"))) {
      assert.ok(
        await exists(new URL(path, SUPABASE_DIR)),
        `[functions.${name}] bundles ${path}, which is missing`,
      );
    }
  }
});
