/**
 * The queue's SQL (sql/0021_jobs.sql, sql/0023_automations.sql) on a real database: leases, rescue of
 * crashed workers' jobs, fenced completion, backoff and dead-lettering, per-client caps, pauses, and the
 * dispatcher's jobs and notifications. Every test uses job kinds of its own, because other test files share
 * the queue.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { addMember, createClient, createUser, db, test, uniq, withPrivateDatabase } from "../_helpers.ts";

interface Claimed {
  id: string;
  client_id: string;
  attempts: number;
}

async function enqueue(clientId: string, kind: string, count: number, maxAttempts = 3): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`
    select app.enqueue_job(${clientId}, ${kind}, '{}', ${kind} || ':' || ${clientId} || ':' || n, ${maxAttempts}) as id
    from generate_series(1, ${count}) n`;
  return rows.map((row) => String(row.id));
}

function claim(worker: string, kind: string, limit: number, options: { lease?: number; cap?: number } = {}) {
  return db()<Claimed[]>`
    select id::text, client_id, attempts
    from app.claim_jobs(${worker}, ${limit}, ${options.lease ?? 60}, ${options.cap ?? 100}, ${[kind]})`;
}

async function job(id: string) {
  const [row] = await db()<
    { status: string; attempts: number; errors: Array<Record<string, unknown>>; locked_by: string | null }[]
  >`select status, attempts, errors, locked_by from app.jobs where id = ${id}`;
  return row;
}

/** Dispatches until the lead's events are consumed (other test files' dispatchers may take them first). */
async function dispatchUntilConsumed(leadId: string) {
  for (let i = 0; i < 20; i++) {
    await db()`select app.dispatch_events(1000, 5)`;
    const [{ left }] = await db()<{ left: number }[]>`
      select count(*)::int as left from app.outbox where subject_id = ${leadId}`;
    if (left === 0) return;
  }
}

test("enqueue_job() creates one job per idempotency key", async () => {
  const client = await createClient();
  const key = uniq("key");
  const [first] = await db()<
    { id: string }[]
  >`select app.enqueue_job(${client}, 'test.once', '{}', ${key}, 3)::text as id`;
  const [second] = await db()<
    { id: string }[]
  >`select app.enqueue_job(${client}, 'test.once', '{}', ${key}, 3)::text as id`;
  assert.equal(second.id, first.id, "JOB-01: a repeated key returns the existing job");
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from app.jobs where idempotency_key = ${key}`;
  assert.equal(count, 1, "JOB-02: a repeated key enqueues nothing");
});

test("claim_jobs() leases each job to one worker and only kinds the worker handles", async () => {
  const client = await createClient();
  const kind = uniq("test.kind");
  await enqueue(client, kind, 10);
  const [a, b] = await Promise.all([claim("worker-a", kind, 6), claim("worker-b", kind, 6)]);
  const ids = [...a, ...b].map((row) => row.id);
  assert.equal(ids.length, 10, "JOB-03: two workers together take every due job");
  assert.equal(new Set(ids).size, 10, "JOB-04: no job is leased to both workers");
  assert.equal(
    (await claim("worker-c", uniq("test.other"), 10)).length,
    0,
    "JOB-05: other kinds are left alone",
  );
});

test("claim_jobs() rescues a job whose lease expired and complete_jobs() fences the old worker out", async () => {
  const client = await createClient();
  const kind = uniq("test.lease");
  const [id] = await enqueue(client, kind, 1);
  await claim("crashed", kind, 1, { lease: 1 });
  await db()`update app.jobs set locked_until = now() - interval '1 second' where id = ${id}`;
  const [rescued] = await claim("rescuer", kind, 1);
  assert.equal(rescued?.id, id, "JOB-06: the expired job is claimed again");
  assert.equal(rescued.attempts, 2, "JOB-07: the crashed attempt counts");
  const late = await db()`select app.complete_jobs('crashed', ${
    db().json([{ id: Number(id), attempt: 1, result: null }])
  })`;
  assert.equal(late.length, 0, "JOB-08: the worker that lost the lease cannot complete the job");
  const done = await db()`select app.complete_jobs('rescuer', ${
    db().json([{ id: Number(id), attempt: 2, result: { ok: true } }])
  })`;
  assert.equal(done.length, 1, "JOB-09: the current lease holder completes it");
  const row = await job(id);
  assert.equal(row.status, "succeeded");
  assert.equal(row.errors[0].code, "lease_expired", "JOB-10: the lost attempt is in the error history");
});

test("claim_jobs() on an otherwise empty queue: nothing to claim, yet an expired lease is still rescued", async () => {
  // A queue of its own: in the shared one other files' jobs are always queued, which skips the empty case.
  await withPrivateDatabase(async (sql) => {
    const claimAll = () =>
      sql<
        Claimed[]
      >`select id::text, client_id, attempts from app.claim_jobs('w', 10, 60, 100, '{test.idle}')`;
    assert.equal((await claimAll()).length, 0, "JOB-24: an empty queue gives nothing");
    await sql`insert into public.clients (id, name) values ('idle-client', 'Idle')`;
    const [{ id }] = await sql<{ id: string }[]>`
      select app.enqueue_job('idle-client', 'test.idle', '{}', 'idle:1', 3)::text as id`;
    assert.equal((await claimAll())[0]?.id, id, "JOB-25: a queued job is claimed");
    // Now nothing is queued: the only job is running, with a lease that has run out.
    await sql`update app.jobs set locked_until = now() - interval '1 second' where id = ${id}`;
    const [rescued] = await claimAll();
    assert.equal(rescued?.id, id, "JOB-26: the expired lease is rescued and the job claimed again");
    assert.equal(rescued.attempts, 2);
  });
});

test("fail_job() retries after the given delay and dead-letters after the last attempt", async () => {
  const client = await createClient();
  const kind = uniq("test.fail");
  const [id] = await enqueue(client, kind, 1, 2);
  await claim("w", kind, 1);
  const [{ status: first }] = await db()<{ status: string }[]>`
    select app.fail_job('w', ${id}, 1, '{"message": "first"}', 3600, false) as status`;
  assert.equal(first, "queued", "JOB-11: a failed attempt with attempts left is queued again");
  assert.equal((await claim("w", kind, 1)).length, 0, "JOB-12: it is not due before its backoff");
  await db()`update app.jobs set run_at = now() where id = ${id}`;
  await claim("w", kind, 1);
  const [{ status: second }] = await db()<{ status: string }[]>`
    select app.fail_job('w', ${id}, 2, '{"message": "second"}', 0, false) as status`;
  assert.equal(second, "dead", "JOB-13: the last attempt's failure dead-letters the job");
  const row = await job(id);
  assert.deepEqual(
    row.errors.map((error) => error.message),
    ["first", "second"],
    "JOB-14: every error is kept",
  );
  const [{ status: retried }] = await db()<{ status: string }[]>`
    select app.retry_job(${client}, ${id}, 3) as status`;
  assert.equal(retried, "queued", "JOB-15: an admin retry queues the dead job again");
  assert.equal((await claim("w", kind, 1)).length, 1, "JOB-16: the retried job runs again");
});

test("fail_job() with a permanent error dead-letters at once", async () => {
  const client = await createClient();
  const kind = uniq("test.permanent");
  const [id] = await enqueue(client, kind, 1, 5);
  await claim("w", kind, 1);
  const [{ status }] = await db()<{ status: string }[]>`
    select app.fail_job('w', ${id}, 1, '{"message": "bad request"}', 10, true) as status`;
  assert.equal(status, "dead", "JOB-17: a permanent failure does not wait for its remaining attempts");
});

test("claim_jobs() caps running jobs per client so a noisy client cannot starve the rest", async () => {
  const noisy = await createClient();
  const quiet = await createClient();
  const kind = uniq("test.fair");
  await enqueue(noisy, kind, 50);
  await enqueue(quiet, kind, 2);
  const first = await claim("w", kind, 10, { cap: 4 });
  const perClient = (rows: Claimed[], client: string) =>
    rows.filter((row) => row.client_id === client).length;
  assert.equal(perClient(first, noisy), 4, "JOB-18: the noisy client gets at most its cap");
  assert.equal(perClient(first, quiet), 2, "JOB-19: the quiet client's jobs run in the same round");
  const second = await claim("w", kind, 10, { cap: 4 });
  assert.equal(second.length, 0, "JOB-20: nothing more for a client at its cap until its jobs finish");
});

test("claim_jobs() skips a client's paused kinds only", async () => {
  const paused = await createClient();
  const running = await createClient();
  const kind = uniq("test.pause");
  await enqueue(paused, kind, 2);
  await enqueue(running, kind, 2);
  await db()`insert into app.job_pauses (client_id, kind_pattern, reason) values (${paused}, 'test.pause%', 'token dead')`;
  const claimed = await claim("w", kind, 10);
  assert.deepEqual(
    new Set(claimed.map((row) => row.client_id)),
    new Set([running]),
    "JOB-21: only the paused client waits",
  );
  await db()`delete from app.job_pauses where client_id = ${paused}`;
  assert.equal((await claim("w", kind, 10)).length, 2, "JOB-22: lifting the pause lets its jobs run");
});

test("release_jobs() gives unfinished jobs back without counting the attempt", async () => {
  const client = await createClient();
  const kind = uniq("test.release");
  const [id] = await enqueue(client, kind, 1);
  await claim("w", kind, 1);
  const [{ count }] = await db()<{ count: number }[]>`select app.release_jobs('w', ${[Number(id)]}) as count`;
  assert.equal(count, 1);
  const row = await job(id);
  assert.equal(row.status, "queued", "JOB-23: a released job is due again");
  assert.equal(row.attempts, 0, "JOB-24: the interrupted attempt does not count");
});

test("dispatch_events() turns lead events into webhook jobs and notifications for the owner and managers", async () => {
  const client = await createClient();
  const owner = await createUser();
  const manager = await createUser();
  const agent = await createUser();
  const ownerId = await addMember(client, owner.id, "owner");
  const managerId = await addMember(client, manager.id, "manager", ownerId);
  const agentId = await addMember(client, agent.id, "agent", managerId);
  const [endpoint] = await db()<{ id: string }[]>`
    insert into public.webhook_endpoints (client_id, url, events) values (${client}, 'https://hooks.example.com/x', '{lead.created}')
    returning id`;
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email, owner_membership_id)
    values (${client}, 'api', 'Dana Dispatch', ${`${uniq("dana")}@example.com`}, ${agentId}) returning id`;
  await dispatchUntilConsumed(lead.id);
  const jobs = await db()<
    {
      kind: string;
      payload: {
        endpoint_id: string;
        message_id: string;
        event: string;
        data: { lead: Record<string, unknown> };
      };
    }[]
  >`
    select kind, payload from app.jobs where client_id = ${client} and kind = 'webhook.deliver'`;
  assert.equal(
    jobs.length,
    1,
    "DISP-01: one webhook job for the one subscribed event (member events are not subscribed)",
  );
  assert.equal(jobs[0].payload.endpoint_id, endpoint.id);
  assert.equal(jobs[0].payload.event, "lead.created");
  assert.match(jobs[0].payload.message_id, /^evt_\d+$/, "DISP-02: the webhook id is the event's");
  const [stored] = await db()<Record<string, unknown>[]>`
    select id, full_name, email, phone, source, status, product_id, owner_membership_id, duplicate_of, utm_source,
      utm_medium, utm_campaign, custom, to_jsonb(created_at) as created_at
    from public.leads where id = ${lead.id}`;
  assert.deepEqual(
    jobs[0].payload.data.lead,
    stored,
    "DISP-13: the webhook carries the lead's fields as they were at dispatch",
  );
  const notified = await db()<{ user_id: string; title: string; body: string }[]>`
    select user_id, title, body from public.notifications where lead_id = ${lead.id} order by title`;
  assert.ok(
    notified.every((row) => row.body === "Dana Dispatch"),
    "DISP-14: each notification names the lead",
  );
  assert.deepEqual(
    new Set(notified.map((row) => row.user_id)),
    new Set([owner.id, manager.id, agent.id]),
    "DISP-03: the owner of the lead and every manager above are notified",
  );
  assert.ok(
    notified.some((row) => row.title === "New lead assigned to you"),
    "DISP-04: the agent's title says it is theirs",
  );
});

test("dispatch_events() follows a client's automation switches", async () => {
  const client = await createClient();
  const owner = await createUser();
  const ownerId = await addMember(client, owner.id, "owner");
  await db()`insert into public.automations (client_id, event, action, enabled) values (${client}, 'lead.created', 'notify', false),
    (${client}, 'lead.created', 'sheets_append', true)`;
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, phone, owner_membership_id)
    values (${client}, 'api', 'Sam Switch', '+14155550123', ${ownerId}) returning id`;
  await dispatchUntilConsumed(lead.id);
  const [{ notifications }] = await db()<{ notifications: number }[]>`
    select count(*)::int as notifications from public.notifications where lead_id = ${lead.id}`;
  assert.equal(notifications, 0, "DISP-05: a switched-off notification is not sent");
  const kinds = await db()<
    { kind: string }[]
  >`select kind from app.jobs where client_id = ${client} order by kind`;
  assert.deepEqual(
    kinds.map((row) => row.kind),
    ["sheets.append"],
    "DISP-06: a switched-on action gets its job",
  );
});

test("dispatch_events() notifies managers only as far up as the client's notify_manager_levels", async () => {
  const notifiedFor = async (levels: number | null) => {
    const client = await createClient();
    await db()`update public.clients set settings = ${
      db().json({ notify_manager_levels: levels, locale: "en" })
    }
      where id = ${client}`;
    const users = [await createUser(), await createUser(), await createUser()];
    const owner = await addMember(client, users[0].id, "owner");
    const manager = await addMember(client, users[1].id, "manager", owner);
    const agent = await addMember(client, users[2].id, "agent", manager);
    const [lead] = await db()<{ id: string }[]>`
      insert into public.leads (client_id, source, full_name, phone, owner_membership_id)
      values (${client}, 'api', 'Lev Levels', '+14155550177', ${agent}) returning id`;
    await dispatchUntilConsumed(lead.id);
    const rows = await db()<{ user_id: string }[]>`
      select user_id from public.notifications where lead_id = ${lead.id}`;
    const names = new Map(users.map((user, i) => [user.id, ["owner", "manager", "agent"][i]]));
    return rows.map((row) => names.get(row.user_id)).sort();
  };
  assert.deepEqual(
    await notifiedFor(0),
    ["agent"],
    "DISP-15: 0 keeps lead notifications to the lead's owner",
  );
  assert.deepEqual(await notifiedFor(1), ["agent", "manager"], "DISP-16: 1 adds the owner's manager");
  assert.deepEqual(
    await notifiedFor(null),
    ["agent", "manager", "owner"],
    "DISP-17: null tells every manager",
  );
});

test("a client's notify_manager_levels must be a whole number from 0 to 100, or null", async () => {
  const client = await createClient();
  for (const levels of [-1, 101, 1.5, "2", true, [1]]) {
    await assert.rejects(
      db()`update public.clients set settings = ${
        db().json({ notify_manager_levels: levels })
      } where id = ${client}`,
      (error: { code?: string }) => error.code === "23514",
      `DISP-18: ${JSON.stringify(levels)} is refused`,
    );
  }
  for (const levels of [0, 100, 3.0, null]) {
    await db()`update public.clients set settings = ${
      db().json({ notify_manager_levels: levels })
    } where id = ${client}`;
  }
});

test("dispatch_events() parks an event it cannot dispatch and dispatches the rest", async () => {
  const client = await createClient();
  const owner = await createUser();
  const ownerId = await addMember(client, owner.id, "owner");
  const [poison] = await db()<{ id: string }[]>`
    insert into app.outbox (client_id, event, data) values (${client}, 'lead.created', '{"lead_id": "not-a-uuid"}')
    returning id::text`;
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, phone, owner_membership_id)
    values (${client}, 'api', 'Polly Poison', '+14155550188', ${ownerId}) returning id`;
  await dispatchUntilConsumed(lead.id);
  const [parked] = await db()<{ failed_at: string | null; error: string | null }[]>`
    select failed_at, error from app.outbox where id = ${poison.id}`;
  assert.ok(parked?.failed_at, "DISP-07: the undispatchable event is parked, not deleted");
  assert.match(parked.error ?? "", /uuid/, "DISP-08: with its error");
  const [{ notifications }] = await db()<{ notifications: number }[]>`
    select count(*)::int as notifications from public.notifications where lead_id = ${lead.id}`;
  assert.equal(notifications, 1, "DISP-09: the events after it are dispatched");
});

test("dispatch_events() claims through the pending index however stale the outbox's statistics", async () => {
  // A database of its own: the test sets the outbox's statistics and fills it with deleted rows.
  await withPrivateDatabase(async (sql, url) => {
    await sql`alter table app.outbox set (autovacuum_enabled = false)`;
    // Analyzed while nearly empty, as autovacuum finds a busy queue between two dispatches...
    await sql`insert into app.outbox (client_id, event) select 'gone', 'lead.created' from generate_series(1, 2)`;
    await sql`analyze app.outbox`;
    // ...then thousands of events written and dispatched (deleted) before vacuum comes, and a few pending.
    await sql`insert into app.outbox (client_id, event) select 'gone', 'lead.created' from generate_series(1, 3000)`;
    await sql`delete from app.outbox where id <= (select max(id) - 20 from app.outbox)`;
    const plans: string[] = [];
    const explained = postgres(url, {
      max: 1,
      onnotice: (notice) => plans.push(String(notice.message)),
    });
    try {
      await explained.begin(async (tx) => {
        await tx`load 'auto_explain'`;
        await tx`select set_config('auto_explain.log_min_duration', '0', true),
          set_config('auto_explain.log_nested_statements', 'on', true),
          set_config('auto_explain.log_level', 'notice', true)`;
        const [{ count }] = await tx<{ count: number }[]>`select app.dispatch_events(500, 3) as count`;
        assert.equal(count, 20, "DISP-10: every pending event is consumed");
      });
    } finally {
      await explained.end();
    }
    const claim = plans.find((plan) => plan.includes("delete from app.outbox"));
    assert.ok(claim, "the dispatch statement's plan was logged");
    assert.match(
      claim,
      /Index Scan using outbox_pending_idx on outbox b/,
      "DISP-11: the claim walks the index",
    );
    assert.doesNotMatch(
      claim,
      /(Seq|Bitmap Heap) Scan on outbox b/,
      "DISP-12: no scan that visits every deleted row",
    );
  });
});
