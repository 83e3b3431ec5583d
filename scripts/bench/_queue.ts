/**
 * Section D: the event pipeline. (1) The raw database's SKIP LOCKED claim-and-complete rate, (2) webhook jobs
 * completed per second by 1 and 4 worker processes against a local HTTP sink, and (3) latency from ingest
 * (HTTP POST) to the webhook's arrival at the sink at a steady 200 leads/s after a warm-up, and for single
 * leads that find the worker idle, woken by the platform or left to its polling, all in the same run.
 */
import { sha256 } from "../../functions/_shared/bytes.ts";
import { createDb, type Sql } from "../../functions/_shared/db.ts";
import { createSecretBox } from "../../functions/_shared/integrations/secret_box.ts";
import { generateSigningSecret, webhookSecretContext } from "../../functions/_shared/outbound_webhooks.ts";
import { loadConfig } from "../../functions/_shared/config.ts";
import { startServer, stopAllServers } from "./_ingest.ts";
import { percentile } from "./_load.ts";

export const QUEUE_CLIENT = "bench-queue";

export interface QueueSettings {
  url: string;
  seconds: number;
  warmupSeconds: number;
  jobs: number;
  rate: number;
}

export interface QueueReport {
  raw_claim_complete: { connections: number; batch: number; rows_per_second: number };
  workers: Array<{ workers: number; jobs: number; seconds: number; jobs_per_second: number }>;
  latency: {
    leads_per_second: number;
    /** Leads sent, warm-up included; delivered counts the same leads. */
    sent: number;
    delivered: number;
    /** Over the leads sent after the warm-up. */
    p50_ms: number;
    p99_ms: number;
    max_ms: number;
    warmup_seconds: number;
    /** How long the worker had been idle before each of the single leads below (null: not delivered). */
    idle_ms: number;
    /** Through a platform that wakes the worker after its writes. */
    after_idle_woken_ms: (number | null)[];
    /** Through a platform without a worker URL: the worker finds the lead at its next, backed-off poll. */
    after_idle_polled_ms: (number | null)[];
  };
  ratios: { workers_4_vs_raw: number };
}

/** How long the worker has had nothing to do before each idle probe, and how many probes of each kind. */
const IDLE_MS = 3000;
const IDLE_PROBES = 3;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The raw rate: 4 connections claiming 100 rows at a time with SKIP LOCKED and marking them done. */
async function rawClaimComplete(url: string, rows: number) {
  const sql = createDb(url, { max: 4 });
  await sql`create table bench.raw_jobs (id bigint generated always as identity primary key,
    payload jsonb not null, status text not null default 'queued')`;
  await sql`create index on bench.raw_jobs (id) where status = 'queued'`;
  await sql`insert into bench.raw_jobs (payload) select jsonb_build_object('n', n) from generate_series(1, ${rows}) n`;
  await sql`vacuum analyze bench.raw_jobs`;
  const started = performance.now();
  const loop = async () => {
    for (;;) {
      const done = await sql`
        with claimed as (
          select id from bench.raw_jobs where status = 'queued' order by id limit 100 for update skip locked
        )
        update bench.raw_jobs j set status = 'done' from claimed where j.id = claimed.id returning j.id`;
      if (done.length === 0) return;
    }
  };
  await Promise.all([loop(), loop(), loop(), loop()]);
  const seconds = (performance.now() - started) / 1000;
  await sql.end();
  return { connections: 4, batch: 100, rows_per_second: Math.round(rows / seconds) };
}

/** A local endpoint that answers 204 and notes when each lead's webhook arrived. */
function startSink() {
  const arrivals = new Map<string, number>();
  let count = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (request) => {
    const body = await request.json();
    count++;
    const ref = body?.data?.lead?.custom?.bench_ref;
    if (typeof ref === "string") arrivals.set(ref, performance.now());
    return new Response(null, { status: 204 });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    arrivals,
    count: () => count,
    stop: () => server.shutdown(),
  };
}

/** The bench client: an owner, its endpoint (sealed secret) for lead.created, and an ingest key. */
async function prepareClient(sql: Sql, sinkUrl: string) {
  const config = loadConfig({ APP_ENV: "development" });
  await sql`insert into public.clients (id, name) values (${QUEUE_CLIENT}, 'Bench queue')`;
  await sql`
    with u as (insert into public.users (email, full_name) values ('owner@queue.bench.example.com', 'Owner') returning id)
    insert into public.memberships (client_id, user_id, role_id)
    select ${QUEUE_CLIENT}, u.id, r.id from u join public.roles r on r.client_id = ${QUEUE_CLIENT} and r.key = 'owner'`;
  const [endpoint] = await sql<{ id: string }[]>`
    insert into public.webhook_endpoints (client_id, url, events) values (${QUEUE_CLIENT}, ${sinkUrl}, '{lead.created}')
    returning id`;
  const sealed = await createSecretBox(config.secrets.encryption_key).seal(
    generateSigningSecret(),
    webhookSecretContext(endpoint.id),
  );
  await sql`insert into app.webhook_secrets (endpoint_id, secret_sealed) values (${endpoint.id}, ${sealed})`;
  const apiKey = `lap_live_queuebnc_${crypto.randomUUID().replaceAll("-", "")}`;
  await sql`
    insert into app.api_keys (client_id, name, environment, prefix, key_hash, scopes, rate_limit_per_minute)
    values (${QUEUE_CLIENT}, 'Benchmark', 'live', 'queuebnc', ${await sha256(
    apiKey,
  )}, '{ingest:single}', 1000000)`;
  return { endpointId: endpoint.id, apiKey };
}

/** `count` webhook jobs straight into the queue, as the dispatcher would make them. */
async function enqueueWebhookJobs(sql: Sql, endpointId: string, count: number, tag: string) {
  await sql`
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select ${QUEUE_CLIENT}, 'webhook.deliver',
      jsonb_build_object('endpoint_id', ${endpointId}::uuid, 'message_id', 'evt_bench_' || ${tag} || '_' || n,
        'event', 'lead.created', 'timestamp', now(), 'data', jsonb_build_object('n', n)),
      'bench:' || ${tag} || ':' || n, 3
    from generate_series(1, ${count}) n`;
}

/** True while the bench client has jobs left (two partial-index probes, cheap enough to poll). */
async function jobsLeft(sql: Sql): Promise<boolean> {
  const [{ left }] = await sql<{ left: boolean }[]>`
    select exists (select 1 from app.jobs where client_id = ${QUEUE_CLIENT} and status = 'queued')
      or exists (select 1 from app.jobs where client_id = ${QUEUE_CLIENT} and status = 'running') as left`;
  return left;
}

const workerEnv = (url: string) => ({
  DATABASE_URL: url,
  LOG_LEVEL: "error",
  WEBHOOKS_ALLOW_LOCAL_TARGETS: "true",
  APP_ENV: "development",
  BENCH_ASYNC: Deno.env.get("BENCH_ASYNC") ?? "",
});

/** Jobs per second for `workers` worker processes emptying a queue of `jobs` webhook jobs. */
async function workerThroughput(sql: Sql, url: string, endpointId: string, workers: number, jobs: number) {
  // Started (and idle) before the jobs arrive, so process start-up is not timed.
  const processes = await Promise.all(
    Array.from({ length: workers }, () => startServer("scripts/bench/worker_process.ts", workerEnv(url))),
  );
  const started = performance.now();
  await enqueueWebhookJobs(sql, endpointId, jobs, `w${workers}`);
  while (await jobsLeft(sql)) await sleep(100);
  const seconds = (performance.now() - started) / 1000;
  await Promise.all(processes.map((process) => process.stop()));
  return {
    workers,
    jobs,
    seconds: Math.round(seconds * 100) / 100,
    jobs_per_second: Math.round(jobs / seconds),
  };
}

/**
 * Ingest-to-webhook latency, one worker process beside the platform, which wakes it after writes (WORKER_URL)
 * as the functions do on Supabase. (1) A steady rate: the leads of the first warmupSeconds warm both
 * processes up; the percentiles cover the rest. (2) Single leads after the worker had nothing to do for
 * IDLE_MS, so its polling has backed off to [queue] poll_max_ms: through that platform, and through a second
 * one with no WORKER_URL, which leaves the worker to find them at its next poll.
 */
async function latencyAtRate(
  url: string,
  apiKey: string,
  sink: ReturnType<typeof startSink>,
  rate: number,
  seconds: number,
  warmupSeconds: number,
) {
  const worker = await startServer("scripts/bench/worker_process.ts", workerEnv(url));
  const servers = await Promise.all([
    startServer("scripts/bench/platform_server.ts", {
      ...workerEnv(url),
      BENCH_POOL: "10",
      WORKER_URL: `${worker.origin}/functions/v1/worker`,
    }),
    startServer("scripts/bench/platform_server.ts", { ...workerEnv(url), BENCH_POOL: "2", WORKER_URL: "" }),
  ]).catch(async (error) => {
    await stopAllServers();
    throw error;
  });
  const [platform, polledOnly] = servers;
  const sent = new Map<string, number>();
  const send = (origin: string, ref: string) => {
    sent.set(ref, performance.now());
    return fetch(`${origin}/functions/v1/ingest/leads`, {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": apiKey },
      body: JSON.stringify({
        full_name: `Latency ${ref}`,
        email: `latency-${ref}@queue.bench.example.com`,
        custom: { bench_ref: ref },
      }),
    }).then((response) => response.body?.cancel());
  };
  const arrival = async (ref: string, timeoutMs: number) => {
    const deadline = performance.now() + timeoutMs;
    while (!sink.arrivals.has(ref) && performance.now() < deadline) await sleep(5);
    const arrived = sink.arrivals.get(ref);
    return arrived === undefined ? undefined : arrived - sent.get(ref)!;
  };
  const round = (value: number) => Math.round(value * 10) / 10;
  try {
    const warmup = rate * warmupSeconds;
    const total = warmup + rate * seconds;
    const interval = 1000 / rate;
    const started = performance.now();
    const requests: Promise<void>[] = [];
    for (let i = 0; i < total; i++) {
      const due = started + i * interval;
      const wait = due - performance.now();
      if (wait > 1) await sleep(wait);
      requests.push(send(platform.origin, `r${i}`));
    }
    await Promise.all(requests);
    // Every server has served a request before the idle probes, so none of them pays its start-up.
    await send(polledOnly.origin, "warm");
    const all = await Promise.all(Array.from({ length: total }, (_, i) => arrival(`r${i}`, 30_000)));
    await arrival("warm", 5_000);
    const steady = all.slice(warmup).filter((value) => value !== undefined).sort((a, b) => a - b);
    const afterIdle = { woken: [] as (number | null)[], polled: [] as (number | null)[] };
    for (let probe = 0; probe < IDLE_PROBES; probe++) {
      for (const [kind, server] of [["woken", platform], ["polled", polledOnly]] as const) {
        await sleep(IDLE_MS);
        const ref = `idle-${kind}-${probe}`;
        await send(server.origin, ref);
        const latency = await arrival(ref, 10_000);
        afterIdle[kind].push(latency === undefined ? null : round(latency));
      }
    }
    return {
      leads_per_second: rate,
      sent: total,
      delivered: all.filter((value) => value !== undefined).length,
      p50_ms: round(percentile(steady, 50)),
      p99_ms: round(percentile(steady, 99)),
      max_ms: round(steady.at(-1) ?? 0),
      warmup_seconds: warmupSeconds,
      idle_ms: IDLE_MS,
      after_idle_woken_ms: afterIdle.woken,
      after_idle_polled_ms: afterIdle.polled,
    };
  } finally {
    await Promise.all([...servers, worker].map((server) => server.stop()));
  }
}

export async function benchQueue(
  sql: Sql,
  settings: QueueSettings,
  log: (line: string) => void,
): Promise<QueueReport> {
  // Sections A and B leave their leads' events in the outbox (no worker runs there); dispatch them first so
  // the workers measured here do only this section's work.
  const [{ pending }] = await sql<{ pending: number }[]>`select count(*)::int as pending from app.outbox`;
  if (pending > 0) {
    log(`D dispatching the ${pending.toLocaleString("en-US")} events earlier sections left`);
    while ((await sql<{ n: number }[]>`select app.dispatch_events(5000, 3) as n`)[0].n > 0);
    await sql`delete from app.jobs where client_id <> ${QUEUE_CLIENT}`;
    await sql`vacuum analyze app.jobs, app.outbox`;
  }
  log("D raw SKIP LOCKED claim-and-complete");
  const raw = await rawClaimComplete(settings.url, settings.jobs * 2);
  const sink = startSink();
  try {
    const { endpointId, apiKey } = await prepareClient(sql, sink.url);
    const workers = [];
    for (const count of [1, 4]) {
      log(`D ${count} worker process(es), ${settings.jobs} webhook jobs`);
      workers.push(await workerThroughput(sql, settings.url, endpointId, count, settings.jobs));
    }
    log(
      `D ingest-to-webhook latency at ${settings.rate} leads/s for ${settings.seconds} s ` +
        `after ${settings.warmupSeconds} s of warm-up`,
    );
    const latency = await latencyAtRate(
      settings.url,
      apiKey,
      sink,
      settings.rate,
      settings.seconds,
      settings.warmupSeconds,
    );
    const four = workers.find((point) => point.workers === 4)!;
    return {
      raw_claim_complete: raw,
      workers,
      latency,
      ratios: { workers_4_vs_raw: Math.round((four.jobs_per_second / raw.rows_per_second) * 1000) / 1000 },
    };
  } finally {
    await sink.stop();
  }
}
