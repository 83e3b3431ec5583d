/**
 * `deno task bench:instructions`: the database's work per lead on the ingest and event paths, counted in CPU
 * instructions by valgrind's callgrind. Unlike seconds, the counts repeat from run to run within a fraction
 * of a percent however busy or shared the machine is, so they show a change of a few percent in a SQL
 * function that `deno task bench` cannot tell from noise. They leave out what instructions do not show
 * (waiting for the disk, cache misses), so the timed benchmark stays the measure of speed.
 *
 * Each case runs one backend (`postgres --single`) on a copy of a cluster prepared like the benchmark's
 * (migrated, the bench client, its key and the leads schema copy): once with k calls and once with k + 3, so
 * start-up, planning and the caches' first fill cancel out and the difference is three calls in the steady
 * state. Cases:
 *   ingest 64 x 1   app.ingest_requests with 64 single-lead requests, as the ingest function groups them under
 *                   load (sql/0049)
 *   ingest 1 x 500  app.ingest_requests with one 500-lead batch
 *   (c) 500         a 500-row INSERT into the copy of public.leads with its indexes and keys but no triggers,
 *                   the floor any code pays for this schema (the benchmark's baseline (c))
 *   dispatch 135    app.dispatch_events over 135 lead events of four owners (the benchmark's round robin)
 *
 * Needs valgrind (Debian: apt-get install valgrind). Uses the embedded PostgreSQL, in a temporary directory.
 * Prints a table and one JSON line. Takes about 2½ minutes on 2 cores.
 */
import { sha256, toHex } from "../../functions/_shared/bytes.ts";
import { createDb } from "../../functions/_shared/db.ts";
import { type EmbeddedPostgres, runSingleUser, startEmbeddedPostgres } from "../embedded_postgres.ts";
import { migrate } from "../migrate.ts";
import { INGEST_CLIENT, prepareIngest } from "./_ingest.ts";

const DATABASE = "instructions";
const STEADY_CALLS = 6;
const MEASURED_CALLS = 3;

interface Case {
  name: string;
  /** What one call handles: leads stored or events dispatched. */
  per: number;
  unit: "lead" | "event";
  /** Commands run before the calls, not measured apart from them (the difference cancels them). */
  setup: (seed: number) => string[];
  call: (seed: number) => string;
}

/** A lead as the ingest function sends it after validation and normalisation. */
function lead(n: number, index: number) {
  const item = {
    full_name: `Bench Lead ${n}`,
    email: `lead-${n}@bench.example.com`,
    phone: `+1212${String(2_000_000 + (n % 8_000_000)).padStart(7, "0")}`,
    utm_source: "bench",
    utm_medium: "cpc",
    utm_campaign: "spring",
    consent: true,
    custom: { plan: "pro", seats: n % 50 },
  };
  return { ...item, index, raw_payload: item };
}

const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** One app.ingest_requests call of `requests` requests of `size` leads each, numbered from `first`. */
function ingestCall(keyHash: string, requests: number, size: number, first: number): string {
  const scope = size > 1 ? "ingest:batch" : "ingest:single";
  const keys = Array.from({ length: requests }, () => ({ key_hash: keyHash, origin: null, scope }));
  const items = Array.from(
    { length: requests },
    (_, r) => Array.from({ length: size }, (_, i) => lead(first + r * size + i, i)),
  );
  return `select app.ingest_requests(${literal(JSON.stringify(keys))}::jsonb, ${
    literal(JSON.stringify(items))
  }) is not null;`;
}

/** The benchmark's (c): a multi-row INSERT into the schema copy, owned by one agent as the rule would. */
function schemaInsert(agent: string, rows: number, first: number): string {
  const values = Array.from({ length: rows }, (_, i) => {
    const { index: _index, raw_payload, ...item } = lead(first + i, i);
    return `(${literal(INGEST_CLIENT)}, 'website', ${literal(agent)}, ${literal(item.full_name)}, ${
      literal(item.email)
    }, ${literal(item.phone)}, 'bench', 'cpc', 'spring', true, ${literal(JSON.stringify(item.custom))}, ${
      literal(JSON.stringify(raw_payload))
    })`;
  });
  return "insert into bench.schema_leads (client_id, source, owner_membership_id, full_name, email, phone, " +
    "utm_source, utm_medium, utm_campaign, consent, custom, raw_payload) values " + values.join(", ") + ";";
}

/** Total instructions of one single-user run of `commands` on a fresh copy of the prepared cluster. */
async function instructions(template: string, commands: string[]): Promise<number> {
  const copy = await Deno.makeTempDir({ prefix: "lap-instructions-" });
  await Deno.remove(copy);
  const cloned = await new Deno.Command("cp", { args: ["-a", template, copy] }).output();
  if (cloned.code !== 0) throw new Error(`cp failed: ${new TextDecoder().decode(cloned.stderr)}`);
  try {
    const input = commands.map((command) => command.replaceAll("\n", " ") + "\n\n").join("");
    const result = await runSingleUser(copy, DATABASE, input, [
      "valgrind",
      "--tool=callgrind",
      "--callgrind-out-file=/dev/null",
    ]);
    const failed = /\bERROR:\s+(.*)/.exec(result.stderr + result.stdout);
    if (result.code !== 0 || failed) {
      throw new Error(
        `postgres --single failed (${result.code}): ${failed?.[1] ?? result.stderr.slice(-500)}`,
      );
    }
    const collected = /Collected\s*:\s*(\d+)/.exec(result.stderr);
    if (!collected) throw new Error(`no callgrind total in:\n${result.stderr.slice(-500)}`);
    return Number(collected[1]);
  } finally {
    await Deno.remove(copy, { recursive: true });
  }
}

/** Instructions of one call in the steady state: (k + 3 calls) - (k calls), divided by 3. */
async function perCall(template: string, c: Case): Promise<number> {
  const run = (calls: number) =>
    instructions(template, [
      ...c.setup(1),
      ...Array.from({ length: calls }, (_, i) => c.call(1_000_000 * (i + 2))),
    ]);
  const [fewer, more] = await Promise.all([run(STEADY_CALLS), run(STEADY_CALLS + MEASURED_CALLS)]);
  return (more - fewer) / MEASURED_CALLS;
}

/** Migrates a new database on the server and adds the bench client; the server is stopped afterwards. */
async function prepare(server: EmbeddedPostgres): Promise<{ keyHash: string; agent: string }> {
  try {
    const admin = createDb(server.url, { max: 1 });
    await admin.unsafe(`create database ${DATABASE}`);
    await admin.end();
    const url = server.url.replace(/\/postgres$/, `/${DATABASE}`);
    await migrate(url, { quiet: true });
    const sql = createDb(url, { max: 1 });
    try {
      await sql`create schema bench`;
      const { apiKey, agent } = await prepareIngest(sql);
      await sql`vacuum analyze`;
      return { keyHash: toHex(await sha256(apiKey)), agent };
    } finally {
      await sql.end();
    }
  } finally {
    await server.stop();
  }
}

if (import.meta.main) {
  const valgrind = await new Deno.Command("valgrind", { args: ["--version"] }).output().catch(() => null);
  if (!valgrind?.success) {
    console.error("valgrind is not installed (Debian: apt-get install valgrind)");
    Deno.exit(1);
  }
  const dir = await Deno.makeTempDir({ prefix: "lap-instructions-cluster-" });
  const server = await startEmbeddedPostgres({ dataDir: dir });
  try {
    const { keyHash, agent } = await prepare(server);
    const dispatchEvents = 135;
    const cases: Case[] = [
      {
        name: "ingest 64 x 1",
        per: 64,
        unit: "lead",
        setup: () => [],
        call: (seed) => ingestCall(keyHash, 64, 1, seed),
      },
      {
        name: "ingest 1 x 500",
        per: 500,
        unit: "lead",
        setup: () => [],
        call: (seed) => ingestCall(keyHash, 1, 500, seed),
      },
      {
        name: "(c) 500",
        per: 500,
        unit: "lead",
        setup: () => [],
        call: (seed) => schemaInsert(agent, 500, seed),
      },
      {
        name: "dispatch 135",
        per: dispatchEvents,
        unit: "event",
        // Enough events for every call, of the four agents the bench client's rule rotates over.
        setup: (seed) => Array.from({ length: 3 }, (_, i) => ingestCall(keyHash, 1, 500, seed + i * 500)),
        call: () => `select app.dispatch_events(${dispatchEvents}, 5);`,
      },
    ];
    const results = [];
    for (const c of cases) {
      const call = await perCall(dir, c);
      results.push({
        case: c.name,
        instructions_per_call: Math.round(call),
        per: c.unit,
        instructions_per: Math.round(call / c.per),
      });
      console.error(`[instructions] ${c.name}: ${(call / 1e6).toFixed(1)}M a call`);
    }
    console.log("case            M instructions a call   K instructions a lead/event");
    for (const r of results) {
      console.log(
        `${r.case.padEnd(16)}${(r.instructions_per_call / 1e6).toFixed(1).padStart(21)}   ${
          (r.instructions_per / 1e3).toFixed(0).padStart(15)
        } a ${r.per}`,
      );
    }
    console.log(JSON.stringify({ benchmark: "instructions", cases: results }));
  } finally {
    await server.remove();
  }
}
