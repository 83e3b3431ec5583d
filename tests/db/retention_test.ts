/**
 * Retention (sql/0037_retention.sql, read notifications sql/0041): what app.prune_expired() deletes and keeps in every table it prunes,
 * when a pass is due, its batch limit, one pass at a time, and the worker running it. Each test has a database
 * of its own: the pass and its schedule are database-wide, and other test files' workers run passes too.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { loadConfig } from "../../functions/_shared/config.ts";
import type { Sql } from "../../functions/_shared/db.ts";
import { createWorker } from "../../functions/worker/worker.ts";
import { test, uniq, withPrivateDatabase } from "../_helpers.ts";

type Pruned = Record<string, number | boolean>;

/**
 * A pass with the ages of config.toml's defaults: jobs 14 days, dead 90, inbox 14, log 30, sessions 30, read
 * notifications 90.
 */
async function prune(sql: Sql, options: { every?: number; batch?: number } = {}): Promise<Pruned | null> {
  const [{ pruned }] = await sql<{ pruned: Pruned | null }[]>`
    select app.prune_expired(${options.every ?? 0}, ${
    options.batch ?? 5000
  }, 14, 90, 14, 30, 30, 90) as pruned`;
  return pruned;
}

/** Rows of a table whose marker column is among the given values. */
async function remaining(sql: Sql, table: string, column: string, values: string[]): Promise<string[]> {
  const rows = await sql.unsafe<{ v: string }[]>(
    `select ${column}::text as v from ${table} where ${column}::text = any ($1) order by 1`,
    [values],
  );
  return rows.map((row) => row.v);
}

async function client(sql: Sql): Promise<string> {
  const id = uniq("client");
  await sql`insert into public.clients (id, name) values (${id}, 'Retention')`;
  return id;
}

async function user(sql: Sql): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.users (email, full_name) values (${`${uniq("user")}@example.com`}, 'User')
    returning id`;
  return row.id;
}

test("a retention pass deletes each kind of operational record past its age and keeps the rest", async () => {
  await withPrivateDatabase(async (sql) => {
    const clientId = await client(sql);
    // Jobs: [idempotency key, status, finished days ago (null: not finished)].
    const jobs: Array<[string, string, number | null]> = [
      ["succeeded-old", "succeeded", 15],
      ["succeeded-recent", "succeeded", 13],
      ["cancelled-old", "cancelled", 15],
      ["dead-old", "dead", 91],
      ["dead-recent", "dead", 30],
      ["queued", "queued", null],
    ];
    for (const [key, status, days] of jobs) {
      await sql`
        insert into app.jobs (client_id, kind, idempotency_key, status, max_attempts, created_at, finished_at)
        values (${clientId}, 'test.retention', ${key}, ${status}, 3, now() - interval '100 days',
          now() - make_interval(days => ${days}::int))`;
    }
    // The webhook inbox: [body, status, received days ago].
    const inbox: Array<[string, string, number]> = [
      ["processed-old", "processed", 15],
      ["processed-recent", "processed", 13],
      ["failed-old", "failed", 91],
      ["unroutable-recent", "unroutable", 30],
      ["pending-old", "pending", 200],
    ];
    for (const [body, status, days] of inbox) {
      await sql`
        insert into app.webhook_inbox (provider, body, status, received_at)
        values ('meta', ${body}, ${status}, now() - make_interval(days => ${days}))`;
    }
    const [endpoint] = await sql<{ id: string }[]>`
      insert into public.webhook_endpoints (client_id, url, events)
      values (${clientId}, 'https://hooks.example.com/leads', '{lead.created}') returning id`;
    // The delivery log, oldest first as ids are given: [message id, days ago].
    for (const [message, days] of [["delivery-old", 31], ["delivery-recent", 29]] as const) {
      await sql`
        insert into public.webhook_deliveries (client_id, endpoint_id, message_id, event, attempt, succeeded,
          created_at)
        values (${clientId}, ${endpoint.id}, ${message}, 'lead.created', 1, true, now() - make_interval(days => ${days}))`;
    }
    // Events: one that failed long ago, one that failed lately, one still pending from long ago.
    const events = [["failed-old", 91], ["failed-recent", 30], ["pending", null]] as const;
    for (const [event, failedDays] of events) {
      await sql`
        insert into app.outbox (client_id, event, created_at, failed_at, error)
        values (${clientId}, ${event}, now() - interval '200 days', now() - make_interval(days => ${failedDays}::int),
          ${failedDays === null ? null : "boom"})`;
    }
    // Sessions: [user agent, created days ago, revoked days ago, newest refresh token expired days ago].
    const sessions: Array<[string, number, number | null, number]> = [
      ["revoked-old", 100, 31, -10],
      ["revoked-recent", 100, 29, -10],
      ["expired-old", 100, null, 31],
      ["expired-recent", 100, null, 29],
      ["in-use", 100, null, -30],
    ];
    const userId = await user(sql);
    for (const [agent, created, revoked, expired] of sessions) {
      const [session] = await sql<{ id: string }[]>`
        insert into app.sessions (user_id, user_agent, created_at, refreshed_at, revoked_at)
        values (${userId}, ${agent}, now() - make_interval(days => ${created}),
          now() - make_interval(days => ${created}), now() - make_interval(days => ${revoked}::int))
        returning id`;
      await sql`
        insert into app.refresh_tokens (token_hash, session_id, issued_at, expires_at)
        values (${new TextEncoder().encode(agent)}, ${session.id}, now() - make_interval(days => ${created}),
          now() - make_interval(days => ${expired}))`;
    }
    // A session in use keeps its live token; its tokens that expired long ago go.
    const [inUse] = await sql<{ id: string }[]>`select id from app.sessions where user_agent = 'in-use'`;
    for (const [hash, days] of [["in-use-expired-old", 31], ["in-use-expired-recent", 29]] as const) {
      await sql`
        insert into app.refresh_tokens (token_hash, session_id, expires_at, rotated_at)
        values (${new TextEncoder().encode(hash)}, ${inUse.id}, now() - make_interval(days => ${days}),
          now() - interval '60 days')`;
    }
    for (const [hash, days] of [["invitation-old", 31], ["invitation-recent", 29]] as const) {
      const invitee = await user(sql);
      await sql`
        insert into app.invitations (token_hash, user_id, expires_at)
        values (${new TextEncoder().encode(hash)}, ${invitee}, now() - make_interval(days => ${days}))`;
    }
    // Notifications: [title, created days ago, read days ago (null: unread)].
    const notifications: Array<[string, number, number | null]> = [
      ["read-old", 200, 91],
      ["read-recent", 200, 89],
      ["unread-old", 400, null],
    ];
    for (const [title, created, read] of notifications) {
      await sql`
        insert into public.notifications (client_id, user_id, kind, title, created_at, read_at)
        values (${clientId}, ${userId}, 'lead.created', ${title}, now() - make_interval(days => ${created}),
          now() - make_interval(days => ${read}::int))`;
    }
    for (const [key, age] of [["ip:old", "25 hours"], ["ip:recent", "23 hours"]] as const) {
      await sql`insert into app.rate_limits (key, window_start, hits) values (${key}, now() - ${age}::interval, 3)`;
    }

    const pruned = await prune(sql);
    assert.deepEqual(pruned, {
      jobs: 3,
      webhook_inbox: 2,
      webhook_deliveries: 1,
      failed_events: 1,
      sessions: 2,
      refresh_tokens: 1,
      invitations: 1,
      rate_limits: 1,
      read_notifications: 1,
      more: false,
    }, "RET-01: the pass reports what it deleted in each table");

    assert.deepEqual(
      await remaining(sql, "app.jobs", "idempotency_key", jobs.map(([key]) => key)),
      ["dead-recent", "queued", "succeeded-recent"],
      "RET-02: finished jobs go after 14 days, dead ones after 90, unfinished ones never",
    );
    assert.deepEqual(
      await remaining(sql, "app.webhook_inbox", "body", inbox.map(([body]) => body)),
      ["pending-old", "processed-recent", "unroutable-recent"],
      "RET-03: processed deliveries go after 14 days, unroutable and failed after 90, pending ones never",
    );
    assert.deepEqual(
      await remaining(sql, "public.webhook_deliveries", "message_id", ["delivery-old", "delivery-recent"]),
      ["delivery-recent"],
      "RET-04: the delivery log keeps 30 days",
    );
    assert.deepEqual(
      await remaining(sql, "app.outbox", "event", ["failed-old", "failed-recent", "pending"]),
      ["failed-recent", "pending"],
      "RET-05: events that failed to dispatch go after 90 days; pending events never",
    );
    assert.deepEqual(
      await remaining(sql, "app.sessions", "user_agent", sessions.map(([agent]) => agent)),
      ["expired-recent", "in-use", "revoked-recent"],
      "RET-06: sessions go 30 days after revocation or after their last refresh token expired",
    );
    const tokens = await sql<{ hash: string }[]>`
      select convert_from(token_hash, 'UTF8') as hash from app.refresh_tokens order by 1`;
    assert.deepEqual(
      tokens.map((row) => row.hash),
      ["expired-recent", "in-use", "in-use-expired-recent", "revoked-recent"],
      "RET-07: refresh tokens go with their session, or 30 days after they expired",
    );
    const invitations = await sql<{ hash: string }[]>`
      select convert_from(token_hash, 'UTF8') as hash from app.invitations order by 1`;
    assert.deepEqual(
      invitations.map((row) => row.hash),
      ["invitation-recent"],
      "RET-08: invitations keep 30 days",
    );
    assert.deepEqual(
      await remaining(sql, "app.rate_limits", "key", ["ip:old", "ip:recent"]),
      ["ip:recent"],
      "RET-09: rate-limit counters go a day after their window began",
    );
    assert.deepEqual(
      await remaining(sql, "public.notifications", "title", notifications.map(([title]) => title)),
      ["read-recent", "unread-old"],
      "RET-15: notifications go 90 days after they were read; unread ones never",
    );
  });
});

test("a pass runs once per interval, sooner while a backlog remains, and one at a time", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const clientId = await client(sql);
    const oldJobs = (count: number, prefix: string) =>
      sql`
        insert into app.jobs (client_id, kind, idempotency_key, status, max_attempts, finished_at)
        select ${clientId}, 'test.retention', ${prefix} || n, 'succeeded', 3, now() - interval '20 days'
        from generate_series(1, ${count}) n`;
    await oldJobs(5, "first-");
    assert.deepEqual(
      await prune(sql, { every: 3600, batch: 2 }).then((p) => [p?.jobs, p?.more]),
      [2, true],
      "RET-10: a pass deletes at most its batch from a table, and says more remain",
    );
    assert.equal(
      (await prune(sql, { every: 3600, batch: 2 }))?.jobs,
      2,
      "RET-11: while more remain, the next check runs a pass at once",
    );
    assert.deepEqual(
      await prune(sql, { every: 3600, batch: 2 }).then((p) => [p?.jobs, p?.more]),
      [1, false],
      "RET-11: until the backlog is gone",
    );
    await oldJobs(3, "second-");
    assert.equal(
      await prune(sql, { every: 3600 }),
      null,
      "RET-12: no pass within the interval of the last one",
    );
    const [{ count }] = await sql<{ count: number }[]>`select count(*)::int as count from app.jobs`;
    assert.equal(count, 3, "RET-12: and nothing is deleted");

    // Another worker's pass is running: its transaction holds the pass's lock.
    const other = postgres(url, { max: 1, onnotice: () => {} });
    try {
      await other.begin(async (tx) => {
        await tx`select pg_advisory_xact_lock(hashtextextended('prune_expired', 0))`;
        assert.equal(await prune(sql), null, "RET-13: a second pass does not start while one runs");
      });
    } finally {
      await other.end();
    }
    assert.equal((await prune(sql))?.jobs, 3, "RET-13: once it is over, a due pass runs");
  });
});

test("the worker runs the retention pass with its periodic work", async () => {
  await withPrivateDatabase(async (sql) => {
    const clientId = await client(sql);
    await sql`
      insert into app.jobs (client_id, kind, idempotency_key, status, max_attempts, finished_at)
      values (${clientId}, 'test.retention', 'worker-old', 'succeeded', 3, now() - interval '3 days'),
             (${clientId}, 'test.retention', 'worker-recent', 'succeeded', 3, now() - interval '1 day')`;
    const userId = await user(sql);
    await sql`
      insert into public.notifications (client_id, user_id, kind, title, read_at)
      values (${clientId}, ${userId}, 'lead.created', 'worker-read-old', now() - interval '3 days'),
             (${clientId}, ${userId}, 'lead.created', 'worker-read-recent', now() - interval '1 day')`;
    const config = loadConfig({ APP_ENV: "test" }, {
      retention: { finished_jobs_days: 2, read_notifications_days: 2 },
    });
    const worker = createWorker({ sql, config }, {});
    await worker.drain();
    assert.deepEqual(
      await remaining(sql, "app.jobs", "idempotency_key", ["worker-old", "worker-recent"]),
      ["worker-recent"],
      "RET-14: a worker's first round prunes with the configured ages",
    );
    assert.deepEqual(
      await remaining(sql, "public.notifications", "title", ["worker-read-old", "worker-read-recent"]),
      ["worker-read-recent"],
      "RET-14: read notifications too",
    );
    const [state] = await sql<{ pruned: Pruned }[]>`select pruned from app.retention_state`;
    assert.equal(state.pruned.jobs, 1, "RET-14: and records the pass");
  });
});
