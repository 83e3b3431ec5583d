/**
 * The worker end to end with a real PostgreSQL: who may call POST /worker, signed webhook deliveries to a
 * local sink with retries, dead-lettering and replay, two workers on one queue, a worker killed mid-job,
 * graceful shutdown, and a PostgreSQL restart in the middle of a burst.
 */
import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createDb, type Sql } from "../../functions/_shared/db.ts";
import { jobHandlers } from "../../functions/worker/handlers.ts";
import { flushLeadSearchIndex } from "../../functions/worker/queue.ts";
import { createWorker, type JobHandler, type Worker } from "../../functions/worker/worker.ts";
import { migrate } from "../../scripts/migrate.ts";
import { startEmbeddedPostgres } from "../../scripts/embedded_postgres.ts";
import {
  addMember,
  addWebhookEndpoint,
  call,
  createClient,
  createUser,
  db,
  sessionToken,
  startStack,
  test,
  testDatabaseUrl,
  uniq,
  withPrivateDatabase,
} from "../_helpers.ts";

/** Fast retries and short leases so failures play out in milliseconds. */
const FAST = {
  queue: {
    retry_base_seconds: 0.02,
    retry_max_seconds: 0.1,
    max_attempts: 4,
    lease_seconds: 2,
    poll_min_ms: 5,
    poll_max_ms: 50,
    shutdown_grace_ms: 2000,
  },
  webhooks: { allow_local_targets: true, timeout_ms: 2000 },
};
const config = loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl() }, FAST);

interface Received {
  id: string;
  timestamp: string;
  signature: string;
  body: string;
}

/** A local HTTP receiver whose answer to the n-th request (1-based) the test decides. */
function startSink(answer: (n: number) => number = () => 200) {
  const received: Received[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (request) => {
    received.push({
      id: request.headers.get("webhook-id") ?? "",
      timestamp: request.headers.get("webhook-timestamp") ?? "",
      signature: request.headers.get("webhook-signature") ?? "",
      body: await request.text(),
    });
    return new Response("ok", { status: answer(received.length) });
  });
  return { url: `http://127.0.0.1:${server.addr.port}/hook`, received, close: () => server.shutdown() };
}

/** A client with an owner and an endpoint (sealed secret) subscribed to lead.created. */
async function clientWithEndpoint(url: string, sql: Sql = db()) {
  const clientId = uniq("client");
  await sql`insert into public.clients (id, name) values (${clientId}, 'Worker test')`;
  const [owner] = await sql<{ id: string }[]>`
    insert into public.users (email, full_name) values (${`${
    uniq("owner")
  }@example.com`}, 'Owner') returning id`;
  await sql`insert into public.memberships (client_id, user_id, role_id)
            select ${clientId}, ${owner.id}, r.id from public.roles r where r.client_id = ${clientId} and r.key = 'owner'`;
  const { endpointId, secret } = await addWebhookEndpoint(sql, clientId, url, config.secrets.encryption_key);
  return { clientId, ownerId: owner.id, endpointId, secret };
}

async function createLead(clientId: string, sql: Sql = db()): Promise<string> {
  const [lead] = await sql<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email)
    values (${clientId}, 'api', 'Wanda Worker', ${`${uniq("wanda")}@example.com`}) returning id`;
  return lead.id;
}

/** Drains until the predicate holds (other test files share the queue, so one drain may serve them first). */
async function drainUntil(worker: Worker, done: () => Promise<boolean>, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error("Timed out waiting for the worker");
    await worker.drain({ maxMs: 500 });
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function jobsOf(clientId: string, kind = "webhook.deliver") {
  return await db()<
    {
      id: string;
      status: string;
      attempts: number;
      max_attempts: number;
      errors: Array<{ message: string }>;
    }[]
  >`
    select id::text, status, attempts, max_attempts, errors from app.jobs
    where client_id = ${clientId} and kind = ${kind}`;
}

/** Verifies a Standard Webhooks signature independently of the platform's signer. */
async function validSignature(secret: string, message: Received): Promise<boolean> {
  const key = await crypto.subtle.importKey(
    "raw",
    Uint8Array.from(atob(secret.replace(/^whsec_/, "")), (c) => c.charCodeAt(0)),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["verify"],
  );
  const signatures = message.signature.split(" ").map((part) => part.split(",")[1]);
  for (const signature of signatures) {
    const mac = Uint8Array.from(atob(signature), (c) => c.charCodeAt(0));
    const data = new TextEncoder().encode(`${message.id}.${message.timestamp}.${message.body}`);
    if (await crypto.subtle.verify("HMAC", key, mac, data)) return true;
  }
  return false;
}

test("POST /worker refuses anonymous, user and wrong-secret calls; drains for the service role and the secret", async () => {
  const stack = startStack({ WORKER_SECRET: "s3cret-worker-value" });
  try {
    const user = await createUser();
    const client = await createClient();
    await addMember(client, user.id, "owner");
    const userToken = await sessionToken(user, client);
    const serviceRole = await new SignJWT({ role: "service_role" }).setProtectedHeader({ alg: "HS256" })
      .setIssuedAt().setExpirationTime("5m").sign(new TextEncoder().encode(config.secrets.jwt_secret));
    const forged = await new SignJWT({ role: "service_role" }).setProtectedHeader({ alg: "HS256" })
      .setIssuedAt().setExpirationTime("5m").sign(new TextEncoder().encode("x".repeat(48)));
    assert.equal((await call(stack, "POST", "/worker")).status, 401, "WRK-01: anonymous calls are refused");
    assert.equal(
      (await call(stack, "POST", "/worker", { token: userToken })).status,
      401,
      "WRK-02: user tokens are refused",
    );
    assert.equal(
      (await call(stack, "POST", "/worker", { token: forged })).status,
      401,
      "WRK-03: a forged service key is refused",
    );
    const wrong = await call(stack, "POST", "/worker", { headers: { "x-worker-secret": "guess" } });
    assert.equal(wrong.status, 401, "WRK-04: a wrong worker secret is refused");
    const byRole = await call(stack, "POST", "/worker", { token: serviceRole });
    assert.equal(byRole.status, 200, "WRK-05: the service-role key drains");
    assert.equal(typeof byRole.body.claimed, "number");
    const bySecret = await call(stack, "POST", "/worker", {
      headers: { "x-worker-secret": "s3cret-worker-value" },
    });
    assert.equal(bySecret.status, 200, "WRK-06: the worker secret drains");
  } finally {
    await stack.close();
  }
});

test("webhook.deliver signs each delivery and keeps its webhook-id; 3 failures then success deliver once", async () => {
  const sink = startSink((n) => n <= 3 ? 503 : 200);
  const sql = createDb(testDatabaseUrl(), { max: 4 });
  try {
    const { clientId, endpointId, secret } = await clientWithEndpoint(sink.url);
    // Dedicated to this test's client: other test files share the queue and run their own workers.
    const worker = createWorker({ config, sql }, jobHandlers(), { clients: [clientId] });
    const leadId = await createLead(clientId);
    await drainUntil(worker, async () => (await jobsOf(clientId)).some((job) => job.status === "succeeded"));
    assert.equal(
      sink.received.length,
      4,
      "WHK-01: three failed attempts and one success reached the endpoint",
    );
    assert.equal(
      new Set(sink.received.map((r) => r.id)).size,
      1,
      "WHK-02: every attempt carries the same webhook-id",
    );
    for (const message of sink.received) {
      assert.ok(
        await validSignature(secret, message),
        "WHK-03: each attempt is signed over id.timestamp.body",
      );
    }
    const body = JSON.parse(sink.received[3].body);
    assert.equal(body.type, "lead.created");
    assert.equal(body.data.lead.id, leadId, "WHK-04: the body carries the lead");
    const [job] = await jobsOf(clientId);
    assert.equal(job.attempts, 4, "WHK-05: attempts are recorded");
    assert.equal(job.errors.length, 3, "WHK-06: each failure is in the job's history");
    const log = await db()<{ succeeded: boolean; status_code: number }[]>`
      select succeeded, status_code from public.webhook_deliveries where endpoint_id = ${endpointId} order by id`;
    assert.deepEqual(
      log.map((row) => row.status_code),
      [503, 503, 503, 200],
      "WHK-07: the delivery log has every attempt",
    );
  } finally {
    await sink.close();
    await sql.end();
  }
});

test("an endpoint that always fails is dead-lettered with every error, then replayed by an admin", async () => {
  let healthy = false;
  const sink = startSink(() => healthy ? 200 : 500);
  const sql = createDb(testDatabaseUrl(), { max: 4 });
  try {
    const { clientId, ownerId } = await clientWithEndpoint(sink.url);
    const worker = createWorker({ config, sql }, jobHandlers(), { clients: [clientId] });
    await createLead(clientId);
    await drainUntil(worker, async () => (await jobsOf(clientId)).some((job) => job.status === "dead"));
    const [dead] = await jobsOf(clientId);
    // The dispatching worker (any worker sharing the queue) set the job's attempt budget.
    assert.equal(dead.attempts, dead.max_attempts, "DLQ-01: it ran all its attempts");
    assert.equal(dead.errors.length, dead.max_attempts, "DLQ-02: every error is kept");
    assert.match(dead.errors[0].message, /HTTP 500/, "DLQ-03: errors are readable");
    healthy = true;
    const stack = startStack();
    try {
      const [owner] = await db()<{ id: string; email: string }[]>`
        select u.id, u.email from public.users u where u.id = ${ownerId}`;
      const retried = await call(stack, "POST", `/api/clients/${clientId}/jobs/${dead.id}/retry`, {
        token: await sessionToken(owner, clientId),
      });
      assert.equal(retried.status, 200, "DLQ-04: an admin retries the dead job through the API");
    } finally {
      await stack.close();
    }
    await drainUntil(worker, async () => (await jobsOf(clientId))[0].status === "succeeded");
    const ids = new Set(sink.received.map((r) => r.id));
    assert.equal(ids.size, 1, "DLQ-05: the replay keeps the webhook-id so receivers can dedupe");
  } finally {
    await sink.close();
    await sql.end();
  }
});

test("an endpoint failing for longer than disable_after_hours is disabled and its owners are notified", async () => {
  const sink = startSink(() => 500);
  const sql = createDb(testDatabaseUrl(), { max: 4 });
  try {
    const { clientId, ownerId, endpointId } = await clientWithEndpoint(sink.url);
    const worker = createWorker({ config, sql }, jobHandlers(), { clients: [clientId] });
    await db()`update public.webhook_endpoints set failing_since = now() - interval '73 hours'
               where id = ${endpointId}`;
    await createLead(clientId);
    await drainUntil(worker, async () => (await jobsOf(clientId))[0]?.status === "succeeded");
    const [endpoint] = await db()<{ enabled: boolean; disabled_reason: string }[]>`
      select enabled, disabled_reason from public.webhook_endpoints where id = ${endpointId}`;
    assert.equal(endpoint.enabled, false, "OFF-01: the endpoint is disabled after one more failure");
    assert.match(endpoint.disabled_reason, /72 hours/, "OFF-02: with the reason");
    const notified = await db()<{ user_id: string }[]>`
      select user_id from public.notifications where client_id = ${clientId} and kind = 'webhook.disabled'`;
    assert.deepEqual(notified.map((row) => row.user_id), [ownerId], "OFF-03: the owner is notified once");
    const [job] = await db()<{ result: { skipped?: string } }[]>`
      select result from app.jobs where client_id = ${clientId} and kind = 'webhook.deliver'`;
    assert.equal(job.result.skipped, "endpoint_disabled", "OFF-04: the retry stops at the disabled endpoint");
    assert.equal(sink.received.length, 1, "OFF-05: nothing more is sent to it");
  } finally {
    await sink.close();
    await sql.end();
  }
});

test("a webhook to a private address is refused unless local targets are allowed", async () => {
  const sink = startSink();
  const strict = loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl() }, {
    ...FAST,
    webhooks: { ...FAST.webhooks, allow_local_targets: false },
  });
  const sql = createDb(testDatabaseUrl(), { max: 4 });
  try {
    const { clientId } = await clientWithEndpoint(sink.url.replace("http:", "https:"));
    const worker = createWorker({ config: strict, sql }, jobHandlers(), { clients: [clientId] });
    await createLead(clientId);
    await drainUntil(worker, async () => (await jobsOf(clientId)).some((job) => job.status === "dead"));
    const [job] = await jobsOf(clientId);
    assert.equal(job.attempts, 1, "SSRF-01: a forbidden target is not retried");
    assert.match(job.errors[0].message, /private or reserved address/, "SSRF-02: the error says why");
    assert.equal(sink.received.length, 0, "SSRF-03: nothing reached the private address");
  } finally {
    await sink.close();
    await sql.end();
  }
});

/** Enqueues `count` jobs of a fresh kind for a fresh client; returns the kind and the client. */
async function testJobs(count: number) {
  const clientId = await createClient();
  const kind = uniq("test.run");
  await db()`select app.enqueue_job(${clientId}, ${kind}, '{}', ${kind} || ':' || n, 3)
             from generate_series(1, ${count}) n`;
  return { clientId, kind };
}

test("two workers on one queue never run the same job at once", async () => {
  const { clientId, kind } = await testJobs(200);
  const running = new Set<number>();
  const runs: number[] = [];
  let overlaps = 0;
  const handler: JobHandler = async (job) => {
    if (running.has(job.id)) overlaps++;
    running.add(job.id);
    runs.push(job.id);
    await new Promise((resolve) => setTimeout(resolve, 2));
    running.delete(job.id);
  };
  const sql = createDb(testDatabaseUrl(), { max: 6 });
  const workers = [
    createWorker({ config, sql }, { [kind]: handler }),
    createWorker({ config, sql }, { [kind]: handler }),
  ];
  try {
    await Promise.all(workers.map((worker) => worker.drain({ maxJobs: 1000, maxMs: 20_000 })));
    assert.equal(overlaps, 0, "PAR-01: no job ran in both workers at once");
    assert.equal(runs.length, 200, "PAR-02: each job ran exactly once");
    assert.equal(new Set(runs).size, 200);
    const [{ succeeded }] = await db()<{ succeeded: number }[]>`
      select count(*)::int as succeeded from app.jobs where client_id = ${clientId} and status = 'succeeded'`;
    assert.equal(succeeded, 200, "PAR-03: every job is recorded as done");
  } finally {
    await sql.end();
  }
});

test("a worker killed with SIGKILL mid-job: the job is retried after its lease and completes once", async () => {
  await db()`create schema if not exists test_support`;
  await db()`create table if not exists test_support.job_effects (job_id bigint not null, worker int not null)`;
  const { kind } = await testJobs(1);
  const env = {
    TEST_DATABASE_URL: testDatabaseUrl(),
    TEST_JOB_KIND: kind,
    TEST_LEASE_SECONDS: "1",
    LOG_LEVEL: "error",
  };
  const spawn = (delay: number) =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", new URL("../fixtures/worker_process.ts", import.meta.url).pathname],
      env: { ...Deno.env.toObject(), ...env, TEST_JOB_DELAY_MS: String(delay) },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  const readClaim = async (child: Deno.ChildProcess) => {
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    while (!text.includes("claimed")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("worker exited before claiming");
      text += value;
    }
    reader.releaseLock();
    return Number(text.match(/claimed (\d+)/)![1]);
  };
  const doomed = spawn(60_000);
  const jobId = await readClaim(doomed);
  doomed.kill("SIGKILL");
  await doomed.status;
  const survivor = spawn(0);
  try {
    const deadline = Date.now() + 20_000;
    for (;;) {
      const [row] = await db()<{ status: string; attempts: number; errors: Array<{ code: string }> }[]>`
        select status, attempts, errors from app.jobs where id = ${jobId}`;
      if (row.status === "succeeded") {
        assert.equal(row.attempts, 2, "KILL-01: the killed attempt counts, the second completes");
        assert.equal(row.errors[0].code, "lease_expired", "KILL-02: the crash is recorded");
        break;
      }
      if (Date.now() > deadline) throw new Error(`job ${jobId} still ${row.status}`);
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const [{ effects }] = await db()<{ effects: number }[]>`
      select count(*)::int as effects from test_support.job_effects where job_id = ${jobId}`;
    assert.equal(effects, 1, "KILL-03: the job's effect happened once");
  } finally {
    survivor.kill("SIGTERM");
    await survivor.status;
    await survivor.stdout.cancel().catch(() => {});
  }
});

test("Worker.stop() lets in-flight jobs finish within the grace period and releases the rest", async () => {
  const { kind: quickKind } = await testJobs(1);
  const { kind: slowKind } = await testJobs(1);
  const sql = createDb(testDatabaseUrl(), { max: 4 });
  const graceful = loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl() }, {
    ...FAST,
    queue: { ...FAST.queue, shutdown_grace_ms: 300 },
  });
  let started = 0;
  const worker = createWorker({ config: graceful, sql }, {
    [quickKind]: async () => {
      started++;
      await new Promise((resolve) => setTimeout(resolve, 100));
    },
    [slowKind]: async () => {
      started++;
      await new Promise((resolve) => setTimeout(resolve, 5_000));
    },
  });
  try {
    worker.start();
    while (started < 2) await new Promise((resolve) => setTimeout(resolve, 10));
    await worker.stop();
    const rows = await db()<{ kind: string; status: string; attempts: number }[]>`
      select kind, status, attempts from app.jobs where kind in (${quickKind}, ${slowKind})`;
    const byKind = Object.fromEntries(rows.map((row) => [row.kind, row]));
    assert.equal(
      byKind[quickKind].status,
      "succeeded",
      "STOP-01: a job finishing within the grace period completes",
    );
    assert.equal(byKind[slowKind].status, "queued", "STOP-02: a job still running is released");
    assert.equal(byKind[slowKind].attempts, 0, "STOP-03: the released attempt does not count");
  } finally {
    await sql.end();
  }
});

/** Resolves as promise does, or rejects with message once ms have passed. */
async function within<T>(promise: Promise<T>, ms: number, message: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => timer = setTimeout(() => reject(new Error(message)), ms));
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

test("restarting PostgreSQL during a burst of leads loses no event", async () => {
  const sink = startSink();
  // A port and cluster of its own: two test runs on one machine (a session's and CI's) must never stop or
  // talk to each other's server; sharing port 54331 once hung CI for its whole time limit. A run killed
  // before it removes the cluster leaves it to the next run's test runner (scripts/test.ts).
  const dataDir = `.data/test-restart-${Deno.pid}`;
  const pg = await startEmbeddedPostgres({ dataDir });
  const url = pg.url.replace(/\/[^/]*$/, "/postgres");
  const database = `lap_restart_${Date.now()}`;
  const admin = createDb(url, { max: 1 });
  await admin.unsafe(`create database ${database}`);
  await admin.end();
  const dbUrl = url.replace(/\/postgres$/, `/${database}`);
  await migrate(dbUrl, { quiet: true });
  const sql = createDb(dbUrl, { max: 4 });
  const restartConfig = loadConfig({ APP_ENV: "test", DATABASE_URL: dbUrl }, FAST);
  const worker = createWorker({ config: restartConfig, sql }, jobHandlers());
  let committed = 0;
  let producing = true;
  try {
    const { clientId } = await clientWithEndpoint(sink.url, sql);
    worker.start();
    let restartedAt = -1; // performance.now() once the server is back
    let cut = 0;
    let committedSinceRestart = 0;
    const recoveryMs: number[] = [];
    // Concurrent producers, like ingest under load, so every connection of the pool is cut mid-query; each
    // goes on until the pool has worked again for a while after the restart.
    const produce = async () => {
      let recovered = false;
      while (producing && committedSinceRestart < 200) {
        try {
          await createLead(clientId, sql);
          committed++;
          if (restartedAt < 0) continue;
          committedSinceRestart++;
          if (!recovered) recoveryMs.push(performance.now() - restartedAt);
          recovered = true;
        } catch {
          // The server is restarting: this lead was not committed; the producer moves on.
          cut++;
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      }
    };
    const burst = Promise.all([1, 2, 3, 4].map(produce));
    await new Promise((resolve) => setTimeout(resolve, 300));
    await pg.stop();
    await new Promise((resolve) => setTimeout(resolve, 200));
    await pg.start();
    restartedAt = performance.now();
    await within(burst, 60_000, "PGR-00: a producer's query never settled after the restart");
    assert.ok(cut > 0, "the restart cut inserts in flight");
    // A liveness bound, not a speed figure: a pool that backs off for tens of seconds, or keeps a connection
    // whose startup never reached the server, leaves leads waiting long after the database is back.
    assert.ok(
      recoveryMs.length === 4 && Math.max(...recoveryMs) < 10_000,
      `PGR-03: every producer commits again within 10 s of the server's return (${
        recoveryMs.map(Math.round)
      } ms)`,
    );
    // A connection attempt begun while the server was starting up may still fail one query: retried.
    const countLeads = () =>
      sql<{ leads: number }[]>`select count(*)::int as leads from public.leads where client_id = ${clientId}`;
    const [{ leads }] = await countLeads().catch(countLeads);
    // At least: an insert whose commit was cut off from its reply is stored but was not acknowledged.
    assert.ok(leads >= committed, "PGR-01: every acknowledged insert is stored");
    const deadline = Date.now() + 30_000;
    while (new Set(sink.received.map((r) => r.id)).size < leads && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const delivered = new Set(sink.received.map((r) => JSON.parse(r.body).data.lead.id));
    assert.equal(delivered.size, leads, "PGR-02: every stored lead's event was delivered after the restart");
  } finally {
    producing = false;
    // Bounded too: a round stuck on a query that never settles must fail the test, not hang it.
    await within(worker.stop(), 10_000, "the worker did not stop").catch((error) => console.error(error));
    await sql.end({ timeout: 1 });
    await sink.close();
    await pg.remove();
  }
});

test("the worker merges the lead search index's pending entries, so no insert has to", async () => {
  // A database of its own: the other tests' workers merge the shared one's list every second.
  await withPrivateDatabase(async (sql, url) => {
    const clientId = uniq("client");
    await sql`insert into public.clients (id, name) values (${clientId}, 'Search flush')`;
    const insertLeads = (tag: string) =>
      sql`insert into public.leads (client_id, source, full_name, email)
          select ${clientId}, 'api', ${tag} || ' ' || n, ${tag} || n || '@example.com'
          from generate_series(1, 200) n`;
    const flush = () => flushLeadSearchIndex(sql);

    await insertLeads("first");
    assert.ok(await flush() > 0, "SRC-01: new leads wait in the index's pending list until merged");
    assert.equal(await flush(), 0, "SRC-02: a merged list is empty");

    await insertLeads("second");
    const worker = createWorker(
      { config: loadConfig({ APP_ENV: "test", DATABASE_URL: url }, FAST), sql },
      jobHandlers(),
    );
    await worker.drain({ maxMs: 1000 });
    assert.equal(await flush(), 0, "SRC-03: a worker round merged the pending entries");
    const [{ found }] = await sql<{ found: number }[]>`
      select count(*)::int as found from public.leads
      where client_id = ${clientId} and search @@ to_tsquery('simple', 'second137')`;
    assert.equal(found, 1, "SRC-04: merged entries are found by search");
  });
});
