/**
 * `deno task bench`: measures the platform against the raw database doing the same work, in one run on one
 * machine, in a database it creates, migrates and drops. Prints a table and a JSON document (also written
 * to .data/bench.json).
 *
 *   A. single-lead ingest at 1, 16 and 64 connections (wrk; at 64 in rounds alternating the platform, the
 *      platform with the outbox trigger off, and (a))
 *      vs (a) bare Hono + INSERT, (b) pgbench INSERT,
 *      (c) pgbench INSERT into a copy of public.leads (its indexes, constraints and foreign keys, no triggers)
 *   B. 500-lead batch ingest at 1 and 4 connections vs (a) bare Hono + one multi-row INSERT, (b) pgbench doing
 *      that multi-row INSERT, (c) pgbench doing it into the copy of public.leads
 *   C. the 50 newest visible leads in a client of 10,000 members and 1,000,000 leads, under RLS as the API
 *      runs it vs the same question as superuser without RLS
 *   D. the event pipeline: webhook jobs/s with 1 and 4 worker processes to a local HTTP sink vs the raw
 *      SKIP LOCKED claim-and-complete rate, and ingest-to-webhook latency at a steady 200 leads/s (after the
 *      warm-up) and for single leads that find the worker idle, woken by the platform or left to its polling
 *
 * The server is DATABASE_URL's when set, else 127.0.0.1:5432, else the embedded PostgreSQL. Needs wrk and
 * pgbench on PATH. Settings (environment):
 *   BENCH_SECONDS=10            length of each ingest point (plus BENCH_WARMUP_SECONDS=2 of warm-up)
 *   BENCH_SECTIONS=A,B,C,D      which sections to run
 *   BENCH_QUEUE_JOBS=20000      webhook jobs per worker point of section D
 *   BENCH_LATENCY_RATE=200      leads/s (and BENCH_LATENCY_SECONDS=10) of section D's latency point
 *   BENCH_LEADS=1000000         leads generated for section C
 *   BENCH_LIST_ITERATIONS=1000  most runs per lead-list case (each also stops after 5 s of its own runs)
 *   BENCH_POOL=20               postgres.js pool size of each HTTP server
 *   BENCH_ROUNDS=5              alternating platform and (a) runs at 64 connections (the medians are reported)
 *   BENCH_KEEP_DB=1             keep the database afterwards (for EXPLAIN); its name is printed
 */
import postgres from "postgres";
import { createDb } from "../functions/_shared/db.ts";
import { benchIngest, stopAllServers } from "./bench/_ingest.ts";
import { benchLeadList } from "./bench/_lead_list.ts";
import { benchQueue } from "./bench/_queue.ts";
import { toolVersion } from "./bench/_load.ts";
import { type BenchReport, formatReport, ingestRatios, type Machine } from "./bench/_report.ts";
import { findServer, withDatabase } from "./database_server.ts";
import { migrate } from "./migrate.ts";

const OUTPUT = new URL("../.data/bench.json", import.meta.url);

function env(name: string, fallback: string): string {
  const value = Deno.env.get(name);
  return value === undefined || value === "" ? fallback : value;
}

function whole(name: string, fallback: number): number {
  const value = Number(env(name, String(fallback)));
  if (!Number.isFinite(value) || value < 0) {
    throw new Error(`${name} must be a positive number, not "${value}"`);
  }
  return value;
}

function log(message: string) {
  console.error(`[bench] ${message}`);
}

/** The 1, 5 and 15 minute load averages (empty where /proc is missing). */
async function loadAverage(): Promise<number[]> {
  try {
    return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).map(Number);
  } catch {
    return [];
  }
}

async function machineInfo(sql: postgres.Sql): Promise<Machine> {
  let cpu = "unknown CPU";
  try {
    cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.*)/)?.[1]?.trim() ?? cpu;
  } catch {
    // Not Linux.
  }
  const [{ version }] = await sql<{ version: string }[]>`select version()`;
  const settings = await sql<{ name: string; setting: string }[]>`
    select name, current_setting(name) as setting from pg_settings
    where name in ('shared_buffers', 'max_connections', 'synchronous_commit', 'fsync', 'work_mem', 'jit',
      'autovacuum', 'max_wal_size')
    order by name`;
  return {
    cpu,
    cores: navigator.hardwareConcurrency,
    memory_gb: Math.round(Deno.systemMemoryInfo().total / 2 ** 30),
    os: `${Deno.build.os} ${Deno.osRelease()}`,
    deno: Deno.version.deno,
    postgres: version.replace(/ on .*/, ""),
    postgres_settings: Object.fromEntries(settings.map((s) => [s.name, s.setting])),
    wrk: (await toolVersion("wrk", ["-v"])).replace(/ Copyright.*/, ""),
    pgbench: await toolVersion("pgbench", ["--version"]),
  };
}

/**
 * The lead policies need leads.read, which reaches the permission catalog from the leads API routes.
 * While those routes are missing the catalog lacks it and every RLS case would see nothing, so add it.
 */
if (import.meta.main) {
  const started = performance.now();
  const startedAt = new Date().toISOString();
  const load: Record<string, number[]> = { start: await loadAverage() };
  const sections = new Set(env("BENCH_SECTIONS", "A,B,C,D").toUpperCase().split(/[\s,]+/));
  const settings = {
    seconds: whole("BENCH_SECONDS", 10),
    warmup_seconds: whole("BENCH_WARMUP_SECONDS", 2),
    sections: [...sections].sort(),
    single_connections: [1, 16, 64],
    batch_connections: [1, 4],
    batch_size: 500,
    pool_per_server: whole("BENCH_POOL", 20),
    rounds: Math.max(1, whole("BENCH_ROUNDS", 5)),
    leads: whole("BENCH_LEADS", 1_000_000),
    list_iterations: whole("BENCH_LIST_ITERATIONS", 1000),
    list_seconds_per_case: 5,
    queue_jobs: whole("BENCH_QUEUE_JOBS", 20_000),
    latency_rate: whole("BENCH_LATENCY_RATE", 200),
    latency_seconds: whole("BENCH_LATENCY_SECONDS", 10),
  };
  for (const tool of ["wrk", "pgbench"]) {
    if (
      (sections.has("A") || sections.has("B")) &&
      (await toolVersion(tool, ["--version"])).startsWith("unavailable")
    ) {
      console.error(
        `${tool} is not installed (Debian: apt-get install ${tool === "wrk" ? "wrk" : "postgresql-client"})`,
      );
      Deno.exit(1);
    }
  }

  const server = await findServer({ dataDir: ".data/bench-postgres", port: 54328 });
  const database = `lap_bench_${Date.now()}_${Deno.pid}`;
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${database}`);
  const url = withDatabase(server.adminUrl, database);
  const sql = createDb(url, { max: 2 });
  let cleaned = false;
  const cleanup = async () => {
    if (cleaned) return;
    cleaned = true;
    await stopAllServers();
    await sql.end({ timeout: 2 }).catch(() => {});
    if (env("BENCH_KEEP_DB", "") === "1") {
      log(`kept database ${database}; drop it with: drop database ${database}`);
    } else {
      await admin.unsafe(`drop database if exists ${database} with (force)`).catch((error) =>
        console.error(`Could not drop ${database}: ${error.message}`)
      );
    }
    await admin.end({ timeout: 2 });
    await server.stop?.();
  };
  Deno.addSignalListener("SIGINT", async () => {
    console.error("\nInterrupted; dropping the benchmark database");
    await cleanup();
    Deno.exit(130);
  });

  let code = 0;
  try {
    log(`database ${database}: migrating`);
    await migrate(url, { quiet: true });
    // The benchmark's own tables (baseline table, generated hierarchy), apart from the platform's.
    await sql`create schema bench`;
    const notes: string[] = [];
    const machine = await machineInfo(sql);

    let ingest: BenchReport["ingest"] = { skipped: "not in BENCH_SECTIONS" };
    if (sections.has("A") || sections.has("B")) {
      load.before_ingest = await loadAverage();
      const result = await benchIngest(sql, {
        url,
        seconds: settings.seconds,
        warmupSeconds: settings.warmup_seconds,
        singleConnections: sections.has("A") ? settings.single_connections : [],
        batchConnections: sections.has("B") ? settings.batch_connections : [],
        batchSize: settings.batch_size,
        pool: settings.pool_per_server,
        rounds: settings.rounds,
      });
      ingest = { ...result, ratios: ingestRatios(result) };
    }

    let leadList: BenchReport["lead_list"] = { skipped: "not in BENCH_SECTIONS" };
    if (sections.has("C")) {
      load.before_lead_list = await loadAverage();
      leadList = await benchLeadList(sql, {
        url,
        leads: settings.leads,
        chunk: 100_000,
        iterations: settings.list_iterations,
        secondsPerCase: settings.list_seconds_per_case,
      });
    }

    let queue: BenchReport["queue"] = { skipped: "not in BENCH_SECTIONS" };
    if (sections.has("D")) {
      load.before_queue = await loadAverage();
      queue = await benchQueue(sql, {
        url,
        seconds: settings.latency_seconds,
        warmupSeconds: settings.warmup_seconds,
        jobs: settings.queue_jobs,
        rate: settings.latency_rate,
      }, log);
    }

    load.end = await loadAverage();
    const busy = (load.start[0] ?? 0) >= machine.cores / 2;
    if (busy) {
      notes.push(
        `The machine was already busy when the benchmark started (load average ${load.start.join(" ")} on ` +
          `${machine.cores} cores): other processes shared the CPU, so the figures are noisy`,
      );
    }
    const report: BenchReport = {
      benchmark: "lead-automation-platform",
      started_at: startedAt,
      duration_s: Math.round((performance.now() - started) / 1000),
      settings,
      machine: { ...machine, load_average: load },
      ingest,
      lead_list: leadList,
      queue,
      notes,
    };
    const json = JSON.stringify(report, null, 2);
    await Deno.mkdir(new URL(".", OUTPUT), { recursive: true });
    await Deno.writeTextFile(OUTPUT, json + "\n");
    console.log(formatReport(report));
    console.log("");
    console.log(json);
    log(`written to ${OUTPUT.pathname}`);
  } catch (error) {
    console.error(error);
    code = 1;
  } finally {
    await cleanup();
  }
  Deno.exit(code);
}
