/**
 * Sections A and B: lead ingestion through the platform (ingest function, API key, validation, dedup and
 * assignment triggers, visibility index) against (a) a bare Hono + postgres.js server inserting the same
 * columns into a plain table, (b) pgbench doing that INSERT straight on the database, and (c) pgbench doing
 * it into a copy of public.leads: its indexes, constraints and foreign keys without its triggers, the least
 * any implementation keeping this schema pays per lead on the same machine.
 */
import { sha256 } from "../../functions/_shared/bytes.ts";
import type { Sql } from "../../functions/_shared/db.ts";
import { type LoadResult, runPgbench, runWrk } from "./_load.ts";
import { cpuMeter, databaseCpuMeter, processCpuSeconds } from "./_cpu.ts";
import { sampleWaits, type WaitProfile } from "./_waits.ts";

export const INGEST_CLIENT = "bench-ingest";
const PLATFORM_PATH = "/functions/v1/ingest/leads";
const BASELINE_PATH = "/leads";
const ROOT = new URL("../../", import.meta.url).pathname;

export interface IngestSettings {
  url: string;
  seconds: number;
  warmupSeconds: number;
  singleConnections: number[];
  batchConnections: number[];
  batchSize: number;
  pool: number;
  /** Alternating platform and (a) runs at the most single-lead connections. */
  rounds: number;
}

/**
 * One round at the most single-lead connections: the platform, the platform with the outbox trigger off (what
 * the event pipeline costs: the outbox row, its dispatch and the notifications) right beside it, and (a).
 */
type Round = { platform: Measured | null; outbox_off?: Measured | null; baseline_http: Measured | null };

/** The item whose value is the median (the lower middle one of an even count); null for none. */
export function medianBy<T>(items: T[], value: (item: T) => number): T | null {
  const sorted = [...items].sort((a, b) => value(a) - value(b));
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
}

/**
 * The round whose platform/(a) throughput ratio is the median, so both systems' figures come from the same
 * round; null when no round has both.
 */
export function medianRound<R extends Round>(rounds: R[]): R | null {
  return medianBy(
    rounds.filter((round) => round.platform && round.baseline_http),
    (round) => round.platform!.requests_per_second / round.baseline_http!.requests_per_second,
  );
}

/**
 * One measured run: what the load generator saw, the leads the database gained, where its backends were,
 * how busy the machine's CPUs were, and the CPU time per request of each part that served it: the HTTP
 * server, the database's backends and (for the platform) its worker.
 */
export type Measured = LoadResult & {
  leads_stored: number;
  waits: WaitProfile;
  machine_cpu_busy_pct: number | null;
  server_cpu_ms_per_request: number | null;
  /** Every backend of the benchmark database, the worker's and the load's own included. */
  database_cpu_ms_per_request: number | null;
  /** The platform's worker process (null for baselines), which dispatches the leads' events meanwhile. */
  worker_cpu_ms_per_request: number | null;
  /**
   * The platform's lead events its worker had not yet dispatched when the run ended (null for baselines): work
   * the run caused but did not pay for. The next point starts only once they are dispatched.
   */
  events_pending_at_end: number | null;
};

export interface IngestPoint {
  connections: number;
  /** At the most connections, the runs of the round with the median ratio; elsewhere the one run. */
  platform: Measured | null;
  baseline_http: Measured | null;
  /** At the most connections: each round's runs, alternating which system goes first. */
  rounds?: Round[];
  baseline_pgbench: Measured | null;
  baseline_schema: Measured | null;
}

export interface IngestReport {
  platform_available: boolean;
  platform_probe: { single: ProbeResult; batch: ProbeResult };
  api_key_prefix: string;
  pool_per_server: number;
  single: IngestPoint[];
  batch: IngestPoint[];
  batch_size: number;
  notes: string[];
}

interface ProbeResult {
  status: number;
  body: string;
}

function randomText(length: number, alphabet: string): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(length)), (b) => alphabet[b % alphabet.length])
    .join("");
}

/**
 * The bench client (an owner and the 4 agents the assignment rule rotates over), its API key inserted the
 * way the key endpoints store one (SHA-256 of the whole key), the baselines' plain table (the columns of
 * public.leads with only a primary key) and schema table (public.leads' columns, indexes, constraints and
 * foreign keys, no triggers), and an agent to own the schema table's rows as the rule would.
 */
export async function prepareIngest(sql: Sql): Promise<{ apiKey: string; prefix: string; agent: string }> {
  await sql`insert into public.clients (id, name) values (${INGEST_CLIENT}, 'Bench ingest')`;
  const people = ["owner", "agent", "agent", "agent", "agent"].map((role, i) => ({
    role,
    email: `${role}-${i}@ingest.bench.example.com`,
  }));
  let owner: string | null = null;
  for (const person of people) {
    const rows: { id: string }[] = await sql<{ id: string }[]>`
      with u as (
        insert into public.users (email, full_name) values (${person.email}, ${"Bench " + person.role})
        returning id
      )
      insert into public.memberships (client_id, user_id, role_id, reports_to)
      select ${INGEST_CLIENT}, u.id, r.id, ${owner}::uuid from u
      join public.roles r on r.client_id = ${INGEST_CLIENT} and r.key = ${person.role}
      returning id`;
    owner ??= rows[0].id;
  }
  // The shape the key endpoints issue: lap_<environment>_<8 base32 characters>_<secret>.
  const prefix = randomText(8, "abcdefghijklmnopqrstuvwxyz234567");
  const apiKey = `lap_live_${prefix}_${
    randomText(43, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
  }`;
  await sql`
    insert into app.api_keys (client_id, name, environment, prefix, key_hash, scopes, rate_limit_per_minute)
    values (${INGEST_CLIENT}, 'Benchmark', 'live', ${prefix}, ${await sha256(apiKey)},
            '{ingest:single,ingest:batch}', 1000000)`;
  await sql`create table bench.plain_leads (like public.leads including defaults including generated)`;
  await sql`alter table bench.plain_leads add primary key (id)`;
  await sql`create table bench.schema_leads (like public.leads including all)`;
  // LIKE copies no foreign keys; each one checks every inserted row, so they belong to the floor.
  const foreignKeys = await sql<{ definition: string }[]>`
    select pg_get_constraintdef(oid) as definition from pg_constraint
    where conrelid = 'public.leads'::regclass and contype = 'f'`;
  for (const { definition } of foreignKeys) {
    await sql.unsafe(`alter table bench.schema_leads add ${definition}`);
  }
  const [{ id: agent }] = await sql<{ id: string }[]>`
    select m.id from public.memberships m join public.roles r on r.id = m.role_id
    where m.client_id = ${INGEST_CLIENT} and r.key = 'agent' order by m.id limit 1`;
  return { apiKey, prefix, agent };
}

/** A Deno subprocess serving HTTP, started from the repository root; stop() ends it with SIGTERM. */
export interface Server {
  origin: string;
  pid: number;
  stop(): Promise<void>;
  /** The last output of the process, for error messages. */
  tail(): string;
}

const running = new Set<Server>();

/** Stops every server still running (after an error or an interrupt). */
export async function stopAllServers() {
  await Promise.all([...running].map((server) => server.stop()));
}

/** Starts a server entry that prints "listening <port>", and waits until it does. */
export async function startServer(entry: string, env: Record<string, string>): Promise<Server> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", entry],
    cwd: ROOT,
    env: { ...Deno.env.toObject(), BENCH_PORT: "0", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let tail = "";
  let resolveListening: (port: number) => void;
  const listening = new Promise<number>((resolve) => resolveListening = resolve);
  // Drained for the process's whole life, so a chatty server never blocks on a full pipe.
  const drain = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) {
      tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
      const match = tail.match(/listening (\d+)/);
      if (match) resolveListening(Number(match[1]));
    }
  };
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const exited = child.status.then((status) => {
    throw new Error(`${entry} exited with code ${status.code} before listening:\n${tail}`);
  });
  const timeout = new Promise<never>((_, reject) =>
    setTimeout(() => reject(new Error(`${entry} did not start in 60 s:\n${tail}`)), 60_000)
  );
  let port: number;
  try {
    port = await Promise.race([listening, exited, timeout]);
  } catch (error) {
    try {
      child.kill("SIGKILL");
    } catch {
      // Already gone.
    }
    throw error;
  }
  exited.catch(() => {});
  const server: Server = {
    origin: `http://127.0.0.1:${port}`,
    pid: child.pid,
    tail: () => tail,
    stop: async () => {
      running.delete(server);
      try {
        child.kill("SIGTERM");
      } catch {
        // Already gone.
      }
      const forced = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // Already gone.
        }
      }, 5000);
      await child.status;
      clearTimeout(forced);
      await drained.catch(() => {});
    },
  };
  running.add(server);
  return server;
}

async function probe(origin: string, apiKey: string, body: unknown): Promise<ProbeResult> {
  try {
    const response = await fetch(origin + PLATFORM_PATH, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": apiKey },
      body: JSON.stringify(body),
    });
    return { status: response.status, body: (await response.text()).slice(0, 300) };
  } catch (error) {
    return { status: 0, body: error instanceof Error ? error.message : String(error) };
  }
}

const ok = (status: number) => status >= 200 && status < 300;

const probeLead = (n: number) => ({
  full_name: `Probe Lead ${n}`,
  email: `probe-${n}@bench.example.com`,
  // Area code 213 is the last one ingest.lua reaches, far beyond any run's numbers.
  phone: `+1213555${String(1000 + n).slice(-4)}`,
});

/** Where a point's leads are counted: public.leads, or the baselines' plain or schema table. */
type Table = "platform" | "plain" | "schema";

/**
 * A pgbench script: the baselines' INSERT of one lead (rows = 0) or a multi-row INSERT of `rows` leads, into
 * the plain table (b) or the schema table (c), whose rows get an owner as the assignment rule would give.
 */
function pgbenchScript(table: Exclude<Table, "platform">, rows: number, agent: string): string {
  const payload = JSON.stringify({
    full_name: "Bench Lead 123456",
    email: "lead-123456@bench.example.com",
    phone: "+12122123456",
    utm_source: "bench",
    utm_medium: "cpc",
    utm_campaign: "spring",
    consent: true,
    custom: { plan: "pro", seats: 6 },
    // pgbench reads ":name" as a variable, so no colon may touch the value after it.
  }).replaceAll('":', '": ');
  const owner = table === "schema" ? ["owner_membership_id, ", `'${agent}', `] : ["", ""];
  // Lead number per row: the transaction's random n, plus the row's place in a multi-row INSERT.
  const g = rows ? "(:n + g)" : ":n";
  const values = `'bench-ingest', 'website', ${owner[1]}'Bench Lead ' || ${g}, ` +
    `'pgbench-' || :client_id || '-' || ${g} || '@bench.example.com', '+1' || (2122000000 + ${g} % 8000000), ` +
    `'bench', 'cpc', 'spring', true, '{"plan": "pro", "seats": 6}', '${payload}'`;
  return [
    "\\set n random(1, 1000000000)",
    `insert into bench.${table}_leads (client_id, source, ${owner[0]}full_name, email, phone, utm_source, ` +
    "utm_medium, utm_campaign, consent, custom, raw_payload) " +
    (rows ? `select ${values} from generate_series(1, ${rows}) g` : `values (${values})`) + " returning id;",
    "",
  ].join("\n");
}

let nextBase = 0;
/** A fresh range of lead numbers for one wrk run (runs stay far below a million requests). */
function base(): number {
  nextBase += 1_000_000;
  return nextBase;
}

async function count(sql: Sql, table: Table): Promise<number> {
  const [row] = table === "platform"
    ? await sql<
      { n: number }[]
    >`select count(*)::int as n from public.leads where client_id = ${INGEST_CLIENT}`
    : await sql<{ n: number }[]>`select count(*)::int as n from ${sql(`bench.${table}_leads`)}`;
  return row.n;
}

function log(message: string) {
  console.error(`[bench] ${message}`);
}

/** Warm-up, then one measured wrk run; counts the leads the run stored. */
async function wrkPoint(
  sql: Sql,
  settings: IngestSettings,
  target: { server: Server; worker?: Server; path: string; apiKey?: string; table: Exclude<Table, "schema"> },
  connections: number,
  batch: number,
): Promise<Measured> {
  const run = (seconds: number) =>
    runWrk({
      origin: target.server.origin,
      path: target.path,
      apiKey: target.apiKey,
      connections,
      seconds,
      base: base(),
      batch,
    });
  if (settings.warmupSeconds > 0) await run(settings.warmupSeconds);
  const before = await count(sql, target.table);
  const sampler = sampleWaits(sql);
  const cpu = await cpuMeter(target.server.pid);
  const database = await databaseCpuMeter(sql);
  const worker = target.worker ? await processCpuSeconds(target.worker.pid) : null;
  const result = await run(settings.seconds);
  const used = await cpu.stop();
  const databaseSeconds = await database.stop();
  const workerEnd = target.worker ? await processCpuSeconds(target.worker.pid) : null;
  const waits = await sampler.stop();
  const stored = (await count(sql, target.table)) - before;
  const pending = target.table === "platform" ? await pendingEvents(sql) : null;
  if (pending) await waitForDispatch(sql);
  return {
    ...result,
    leads_stored: stored,
    waits,
    machine_cpu_busy_pct: used.machine_busy_pct,
    server_cpu_ms_per_request: msPerRequest(used.process_cpu_s, result.requests),
    database_cpu_ms_per_request: msPerRequest(databaseSeconds, result.requests),
    worker_cpu_ms_per_request: msPerRequest(
      worker === null || workerEnd === null ? null : workerEnd - worker,
      result.requests,
    ),
    events_pending_at_end: pending,
  };
}

/** CPU seconds spread over the requests, in milliseconds each (two decimals). */
export function msPerRequest(seconds: number | null, requests: number): number | null {
  return seconds === null || !requests ? null : Math.round((100_000 * seconds) / requests) / 100;
}

/**
 * What the machine spent on a request beside the load generator: the server's, the database's and the worker's
 * CPU (the parts a system has). Null when the database's share could not be read.
 */
export function cpuPerRequest(
  result: Pick<
    Measured,
    "server_cpu_ms_per_request" | "database_cpu_ms_per_request" | "worker_cpu_ms_per_request"
  >,
): number | null {
  if (result.database_cpu_ms_per_request === null) return null;
  const parts = [
    result.server_cpu_ms_per_request,
    result.database_cpu_ms_per_request,
    result.worker_cpu_ms_per_request,
  ];
  return Math.round(100 * parts.reduce<number>((sum, part) => sum + (part ?? 0), 0)) / 100;
}

async function pendingEvents(sql: Sql): Promise<number> {
  const [{ n }] = await sql<
    { n: number }[]
  >`select count(*)::int as n from app.outbox where failed_at is null`;
  return n;
}

/** Waits (at most a minute) until the worker has dispatched every event; called when some are pending. */
async function waitForDispatch(sql: Sql) {
  const deadline = Date.now() + 60_000;
  do {
    await new Promise((resolve) => setTimeout(resolve, 200));
  } while (await pendingEvents(sql) > 0 && Date.now() < deadline);
}

/** Warm-up, then one measured pgbench run of the script with one client per connection. */
async function pgbenchPoint(
  sql: Sql,
  settings: IngestSettings,
  scriptText: string,
  connections: number,
  table: Table,
): Promise<Measured> {
  const script = await Deno.makeTempFile({ prefix: "lap-bench-", suffix: ".sql" });
  try {
    await Deno.writeTextFile(script, scriptText);
    const options = { url: settings.url, script, clients: connections };
    if (settings.warmupSeconds > 0) {
      await runPgbench({ ...options, seconds: settings.warmupSeconds, log: false });
    }
    const before = await count(sql, table);
    const sampler = sampleWaits(sql);
    const cpu = await cpuMeter();
    const database = await databaseCpuMeter(sql);
    const result = await runPgbench({ ...options, seconds: settings.seconds, log: true });
    const used = await cpu.stop();
    const databaseSeconds = await database.stop();
    const waits = await sampler.stop();
    return {
      ...result,
      leads_stored: (await count(sql, table)) - before,
      waits,
      machine_cpu_busy_pct: used.machine_busy_pct,
      server_cpu_ms_per_request: null,
      database_cpu_ms_per_request: msPerRequest(databaseSeconds, result.requests),
      worker_cpu_ms_per_request: null,
      events_pending_at_end: null,
    };
  } finally {
    await Deno.remove(script);
  }
}

/** Runs sections A and B; the platform's points are skipped (null) while its ingest endpoint is missing. */
export async function benchIngest(sql: Sql, settings: IngestSettings): Promise<IngestReport> {
  const notes: string[] = [];
  const { apiKey, prefix, agent } = await prepareIngest(sql);
  const single: IngestPoint[] = settings.singleConnections.map((c) => ({
    connections: c,
    platform: null,
    baseline_http: null,
    baseline_pgbench: null,
    baseline_schema: null,
  }));
  const batch: IngestPoint[] = settings.batchConnections.map((c) => ({
    connections: c,
    platform: null,
    baseline_http: null,
    baseline_pgbench: null,
    baseline_schema: null,
  }));
  const serverEnv = {
    DATABASE_URL: settings.url,
    BENCH_POOL: String(settings.pool),
    APP_ENV: "test",
    LOG_LEVEL: "error",
    // Every request comes from 127.0.0.1: lift the shared per-IP and per-user buckets.
    RATE_LIMIT_PER_IP: "1000000000",
    RATE_LIMIT_PER_USER: "1000000000",
  };

  let probes: IngestReport["platform_probe"] = {
    single: { status: 0, body: "not run" },
    batch: { status: 0, body: "not run" },
  };
  // As deployed, a worker runs beside the functions: it dispatches each lead's event (notifications for the
  // owner and the managers above) and merges the search index's pending entries (sql/0028). The platform
  // wakes it after writes through its worker function, as the functions do on Supabase.
  log("starting the platform server, its worker and the baseline (a) server");
  const worker = await startServer("scripts/bench/worker_process.ts", serverEnv);
  const servers = [worker];
  try {
    const platform = await startServer("scripts/bench/platform_server.ts", {
      ...serverEnv,
      WORKER_URL: `${worker.origin}/functions/v1/worker`,
    });
    servers.push(platform);
    const baseline = await startServer("scripts/bench/baseline_server.ts", serverEnv);
    servers.push(baseline);
    probes = {
      single: await probe(platform.origin, apiKey, probeLead(1)),
      batch: await probe(platform.origin, apiKey, { leads: [probeLead(2), probeLead(3)] }),
    };
    // A platform point that fails (the server died, wrk could not run) is reported, not fatal.
    const platformPoint = async (connections: number, batchSize: number) => {
      try {
        return await wrkPoint(
          sql,
          settings,
          { server: platform, worker, path: PLATFORM_PATH, apiKey, table: "platform" },
          connections,
          batchSize,
        );
      } catch (error) {
        notes.push(
          `Platform ${batchSize ? "batch" : "single"} ingest at ${connections} connection(s) failed: ` +
            `${error instanceof Error ? error.message : String(error)}; server output: ${
              platform.tail().slice(-300)
            }`,
        );
        return null;
      }
    };
    const withoutOutbox = async <T>(run: () => Promise<T>) => {
      await sql`alter table public.leads disable trigger on_leads_inserted_outbox`;
      try {
        return await run();
      } finally {
        await sql`alter table public.leads enable trigger on_leads_inserted_outbox`;
      }
    };
    const baselinePoint = (connections: number, batchSize: number) =>
      wrkPoint(
        sql,
        settings,
        { server: baseline, path: BASELINE_PATH, table: "plain" },
        connections,
        batchSize,
      );
    const available = ok(probes.single.status);
    if (!available) {
      notes.push(
        `Platform ingest skipped: POST ${PLATFORM_PATH} answered ${probes.single.status} ` +
          `(${probes.single.body.slice(0, 120)})`,
      );
    }
    const top = single.at(-1);
    for (const point of single) {
      if (point === top) {
        // The headline ratio: rounds that alternate the two systems, so a slow spell of the machine (its
        // disk's flush time moves (a)'s rate by a third between runs here) falls on both alike.
        point.rounds = [];
        for (let round = 0; round < settings.rounds; round++) {
          log(
            `A round ${round + 1} of ${settings.rounds}: platform, platform without the outbox trigger ` +
              `and (a), ${point.connections} connections`,
          );
          const pair: Round = { platform: null, outbox_off: null, baseline_http: null };
          for (
            const system of round % 2
              ? ["baseline_http", "outbox_off", "platform"] as const
              : ["platform", "outbox_off", "baseline_http"] as const
          ) {
            if (system === "baseline_http") pair.baseline_http = await baselinePoint(point.connections, 0);
            else if (available && system === "platform") {
              pair.platform = await platformPoint(point.connections, 0);
            } else if (available) {
              pair.outbox_off = await withoutOutbox(() => platformPoint(point.connections, 0));
            }
          }
          point.rounds.push(pair);
        }
        // Without a platform run (its endpoint missing or failing), (a)'s first run still stands.
        const median = medianRound(point.rounds) ??
          { platform: null, baseline_http: point.rounds[0]?.baseline_http };
        point.platform = median.platform;
        point.baseline_http = median.baseline_http ?? null;
        continue;
      }
      if (available) {
        log(`A platform, ${point.connections} connection(s)`);
        point.platform = await platformPoint(point.connections, 0);
      }
      log(`A baseline (a), ${point.connections} connection(s)`);
      point.baseline_http = await baselinePoint(point.connections, 0);
    }
    const batchAvailable = available && ok(probes.batch.status);
    if (available && !batchAvailable) {
      notes.push(
        `Platform batch ingest skipped: it answered ${probes.batch.status} (${
          probes.batch.body.slice(0, 120)
        })`,
      );
    }
    for (const point of batch) {
      if (batchAvailable) {
        log(`B platform, ${point.connections} connection(s) x ${settings.batchSize} leads`);
        point.platform = await platformPoint(point.connections, settings.batchSize);
      }
      log(`B baseline (a), ${point.connections} connection(s) x ${settings.batchSize} leads`);
      point.baseline_http = await baselinePoint(point.connections, settings.batchSize);
    }
  } finally {
    // Stopped before pgbench runs, so idle pools never add up past max_connections.
    await Promise.all(servers.map((server) => server.stop()));
  }

  const pgbench = (table: Exclude<Table, "platform">, rows: number, connections: number) =>
    pgbenchPoint(sql, settings, pgbenchScript(table, rows, agent), connections, table);
  for (const point of single) {
    log(`A baseline (b) pgbench, ${point.connections} client(s)`);
    point.baseline_pgbench = await pgbench("plain", 0, point.connections);
    log(`A baseline (c) pgbench into the leads schema, ${point.connections} client(s)`);
    point.baseline_schema = await pgbench("schema", 0, point.connections);
  }
  for (const point of batch) {
    log(`B baseline (b) pgbench, ${point.connections} client(s) x ${settings.batchSize}`);
    point.baseline_pgbench = await pgbench("plain", settings.batchSize, point.connections);
    log(
      `B baseline (c) pgbench into the leads schema, ${point.connections} client(s) x ${settings.batchSize}`,
    );
    point.baseline_schema = await pgbench("schema", settings.batchSize, point.connections);
  }

  return {
    platform_available: ok(probes.single.status),
    platform_probe: probes,
    api_key_prefix: prefix,
    pool_per_server: settings.pool,
    single,
    batch,
    batch_size: settings.batchSize,
    notes,
  };
}
