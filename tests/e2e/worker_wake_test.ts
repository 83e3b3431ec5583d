/**
 * Waking the worker after writes (functions/_shared/worker_wake.ts), with real servers and a real
 * PostgreSQL: a lead sent to the ingest function served alone reaches the client's webhook with no cron and
 * no polling loop; wake-ups are folded into few calls, one at a time, each after the last write it covers;
 * reads and refused writes wake nothing; a worker that cannot be reached costs the write nothing; and a
 * worker whose loop runs is woken by POST /worker instead of draining in the request.
 */
import assert from "node:assert/strict";
import { jwtVerify } from "jose";
import { sha256 } from "../../functions/_shared/bytes.ts";
import { type Config, loadConfig } from "../../functions/_shared/config.ts";
import { createDb, type Sql } from "../../functions/_shared/db.ts";
import { serveWithWake, wakeAfterWrites, workerWake } from "../../functions/_shared/worker_wake.ts";
import { createIngestApp } from "../../functions/ingest/app.ts";
import { createWorkerApp } from "../../functions/worker/app.ts";
import { jobHandlers } from "../../functions/worker/handlers.ts";
import { createWorker } from "../../functions/worker/worker.ts";
import {
  addReportingLine,
  addWebhookEndpoint,
  test,
  testDatabaseUrl,
  uniq,
  withPrivateDatabase,
} from "../_helpers.ts";

const LISTEN = { port: 0, hostname: "127.0.0.1", onListen: () => {} };

function configWith(env: Record<string, string>, queue: Partial<Config["queue"]> = {}): Config {
  return loadConfig(
    { APP_ENV: "test", DATABASE_URL: testDatabaseUrl(), RATE_LIMIT_PER_IP: "1000000", ...env },
    { queue, webhooks: { allow_local_targets: true, timeout_ms: 2000 } },
  );
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function until<T>(check: () => T | undefined | Promise<T | undefined>, what: string, ms = 15_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** A stand-in worker endpoint that records each call's start and end and answers after `delayMs`. */
function startRecorder(status = 202, delayMs = 30) {
  const calls: { start: number; end: number; authorization: string | null }[] = [];
  let inFlight = 0;
  let maxInFlight = 0;
  const server = Deno.serve(LISTEN, async (request) => {
    const call = { start: performance.now(), end: 0, authorization: request.headers.get("authorization") };
    calls.push(call);
    maxInFlight = Math.max(maxInFlight, ++inFlight);
    await request.body?.cancel();
    await sleep(delayMs);
    inFlight--;
    call.end = performance.now();
    return new Response(null, { status });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/functions/v1/worker`,
    calls,
    maxInFlight: () => maxInFlight,
    close: () => server.shutdown(),
  };
}

/**
 * In `sql`'s database: a client with an owner and an agent (the default rule routes to agents), a webhook
 * endpoint on lead.created and an ingest key.
 */
async function clientWithHookAndKey(sql: Sql, hookUrl: string, config: Config) {
  const clientId = uniq("wake");
  await sql`insert into public.clients (id, name) values (${clientId}, 'Wake test')`;
  await addReportingLine(sql, clientId, ["owner", "agent"]);
  await addWebhookEndpoint(sql, clientId, hookUrl, config.secrets.encryption_key);
  const prefix = "wake" + crypto.randomUUID().replace(/[^a-z]/g, "").slice(0, 4).padEnd(4, "a");
  const key = `lap_live_${prefix}_${crypto.randomUUID().replaceAll("-", "")}`;
  const hash = await sha256(key);
  await sql`
    insert into app.api_keys (client_id, name, environment, prefix, key_hash, scopes, rate_limit_per_minute)
    values (${clientId}, 'Wake test', 'live', ${prefix}, ${hash}, '{ingest:single}', 1000)`;
  return { clientId, key };
}

/** A local webhook receiver that keeps every body it gets. */
function startHook() {
  const arrivals: string[] = [];
  const server = Deno.serve(LISTEN, async (request) => {
    arrivals.push(await request.text());
    return new Response("ok");
  });
  return { url: `http://127.0.0.1:${server.addr.port}/hook`, arrivals, close: () => server.shutdown() };
}

// In a database of its own: the other files' workers dispatch every event of the shared one, and one that
// took this lead's event would leave its job to a worker that is never woken again.
test("a lead sent to the ingest function served alone reaches its webhook with no cron and no polling", () =>
  withPrivateDatabase(async (_, url) => {
    const hook = startHook();
    const sql = createDb(url, { max: 4 });
    // The worker function alone, as Supabase deploys it: it works only when called (its loop never starts).
    const workerConfig = configWith({ DATABASE_URL: url });
    const workerFunction = Deno.serve(
      LISTEN,
      createWorkerApp(
        { config: workerConfig, sql },
        createWorker({ config: workerConfig, sql }, jobHandlers()),
      ).fetch,
    );
    const config = configWith({
      DATABASE_URL: url,
      SUPABASE_URL: `http://127.0.0.1:${workerFunction.addr.port}/`,
    });
    const ingest = serveWithWake(config, createIngestApp({ config, sql }).fetch, LISTEN);
    try {
      const tenant = await clientWithHookAndKey(sql, hook.url, config);
      const response = await fetch(`http://127.0.0.1:${ingest.addr.port}/functions/v1/ingest/leads`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": tenant.key },
        body: JSON.stringify({ full_name: "Woken Lead", email: `${uniq("woken")}@example.com` }),
      });
      assert.equal(response.status, 201, await response.clone().text());
      const leadId = (await response.json()).lead_id as string;
      const delivered = await until(
        () => hook.arrivals.find((body) => body.includes(leadId)),
        "the lead's webhook (WAKE-01)",
      );
      assert.equal(
        JSON.parse(delivered).data.lead.id,
        leadId,
        "WAKE-01: the woken worker delivered the lead",
      );
    } finally {
      await ingest.shutdown();
      await workerFunction.shutdown();
      await hook.close();
      await sql.end();
    }
  }));

test("wake-ups fold into few calls, one at a time and spaced, each after the wakes it covers", async () => {
  const recorder = startRecorder(202, 40);
  const config = configWith({ WORKER_URL: recorder.url }, { wake_interval_ms: 100 });
  const wake = workerWake(config)!;
  try {
    const wakes: number[] = [];
    for (let i = 0; i < 50; i++) {
      wakes.push(performance.now());
      wake();
      await sleep(i % 10 === 0 ? 15 : 1);
    }
    const last = wakes.at(-1)!;
    await until(
      () => recorder.calls.find((call) => call.start > last && call.end > 0),
      "a call after the last wake",
    );
    await sleep(250);
    const calls = recorder.calls;
    // One call at once, then at most one per interval while wakes keep coming, and one after the last.
    const most = 2 + Math.ceil((last - wakes[0]) / 100);
    assert.ok(calls.length >= 2 && calls.length <= most, `WAKE-02: 50 wakes made ${calls.length} calls`);
    assert.equal(recorder.maxInFlight(), 1, "WAKE-03: one call in flight at a time");
    // The recorder shares this process's event loop, so a busy loop can note a call's arrival late and the
    // next one on time; 75 ms still tells calls spaced by the 100 ms interval from one per wake (1-15 ms).
    for (let i = 1; i < calls.length; i++) {
      assert.ok(calls[i].start - calls[i - 1].start >= 75, `WAKE-04: calls ${i - 1} and ${i} start apart`);
    }
    for (const at of wakes) {
      assert.ok(
        calls.some((call) => call.start >= at),
        "WAKE-05: every wake is followed by a call started after it",
      );
    }
    const token = calls[0].authorization?.match(/^Bearer (.+)$/)?.[1];
    assert.ok(token, "WAKE-06: the call carries a bearer token");
    const { payload } = await jwtVerify(token, new TextEncoder().encode(config.secrets.jwt_secret));
    assert.equal(payload.role, "service_role", "WAKE-06: signed for the service role, as pg_cron's call");
  } finally {
    await recorder.close();
  }
});

test("reads, preflights and refused writes wake nothing; a worker that fails or cannot be reached costs the write nothing", async () => {
  const recorder = startRecorder(500, 1);
  const config = configWith({ WORKER_URL: recorder.url }, { wake_interval_ms: 10 });
  const handler = wakeAfterWrites(
    (request: Request) =>
      new Response(null, { status: new URL(request.url).pathname === "/bad" ? 422 : 201 }),
    workerWake(config)!,
  );
  try {
    await handler(new Request("http://function.test/read"));
    await handler(new Request("http://function.test/read", { method: "HEAD" }));
    await handler(new Request("http://function.test/preflight", { method: "OPTIONS" }));
    await handler(new Request("http://function.test/bad", { method: "POST" }));
    await sleep(100);
    assert.equal(
      recorder.calls.length,
      0,
      "WAKE-07: GET, HEAD, a CORS preflight and a 422 POST wake nothing",
    );

    const answered = await handler(new Request("http://function.test/ok", { method: "POST" }));
    assert.equal(answered.status, 201, "WAKE-08: the write's answer is its own");
    await until(() => recorder.calls.length === 1 ? true : undefined, "the first wake-up call");
    await sleep(50);
    await handler(new Request("http://function.test/ok", { method: "PATCH" }));
    await until(() => recorder.calls.length === 2 ? true : undefined, "a call after a refused one (WAKE-09)");
  } finally {
    await recorder.close();
  }
  // Nothing listens on the worker URL any more: the write still answers, and the next wake tries again.
  const gone = workerWake(configWith({ WORKER_URL: recorder.url }, { wake_interval_ms: 10 }))!;
  const offline = wakeAfterWrites(() => new Response(null, { status: 204 }), gone);
  assert.equal((await offline(new Request("http://function.test/", { method: "DELETE" }))).status, 204);
  await sleep(100);
  assert.equal((await offline(new Request("http://function.test/", { method: "DELETE" }))).status, 204);
  assert.equal(
    workerWake(configWith({})),
    undefined,
    "WAKE-10: with no WORKER_URL or SUPABASE_URL nothing is called",
  );
});

test("POST /worker wakes a worker whose loop runs, answering 202 at once, and the loop does the work", () =>
  withPrivateDatabase(async (_, url) => {
    const hook = startHook();
    const sql = createDb(url, { max: 4 });
    // Polling backs off to a minute here, so only the wake-up can make the loop look again in time.
    const config = configWith({ DATABASE_URL: url, WORKER_SECRET: "wake-test-secret" }, {
      poll_min_ms: 60_000,
      poll_max_ms: 60_000,
    });
    const worker = createWorker({ config, sql }, jobHandlers());
    const app = createWorkerApp({ config, sql }, worker);
    try {
      const tenant = await clientWithHookAndKey(sql, hook.url, config);
      // The loop's first round finds nothing and leaves it waiting out its minute.
      worker.start();
      await sleep(300);
      await until(async () => {
        const [{ idle }] = await sql<{ idle: boolean }[]>`
          select not exists (select 1 from pg_stat_activity where datname = current_database()
            and state = 'active' and pid <> pg_backend_pid()) as idle`;
        return idle || undefined;
      }, "the loop's first round");
      // Then a lead, its event dispatched here: its webhook job waits for a worker to claim it.
      const [lead] = await sql<{ id: string }[]>`
        insert into public.leads (client_id, source, full_name, email)
        values (${tenant.clientId}, 'api', 'Looped Lead', ${`${uniq("looped")}@example.com`}) returning id`;
      await sql`select app.dispatch_events(100, 3)`;
      const reply = await app.request("/functions/v1/worker", {
        method: "POST",
        headers: { "x-worker-secret": "wake-test-secret" },
      });
      assert.equal(reply.status, 202, "WAKE-11: a running loop is woken, not drained in the request");
      assert.deepEqual(await reply.json(), { woken: true });
      await until(
        () => hook.arrivals.find((body) => body.includes(lead.id)),
        "the loop's delivery (WAKE-12)",
      );
    } finally {
      await worker.stop();
      await hook.close();
      await sql.end();
    }
  }));
