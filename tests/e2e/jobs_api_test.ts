/**
 * The jobs API over HTTP: a client's admins list and read its background jobs (newest first, filtered,
 * paged), see every error, retry dead or cancelled work with a fresh set of attempts and cancel work that
 * has not run; running and succeeded jobs are refused with 409, another client's jobs are 404, and payloads
 * (which can carry lead data) are shown only to roles that see the whole client.
 *
 * Fixture jobs use kinds no worker handles ("test.*"), so workers of parallel test files never claim them.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import { assertProblem, call, db, type Reply, startStack, teamWithTokens, test, uniq } from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });
const MAX_ATTEMPTS = loadConfig({ APP_ENV: "test" }).queue.max_attempts;

interface JobFixture {
  kind?: string;
  status?: "queued" | "running" | "succeeded" | "dead" | "cancelled";
  payload?: Record<string, unknown>;
  attempts?: number;
  maxAttempts?: number;
  errors?: Array<Record<string, unknown>>;
  result?: unknown;
  runAt?: string;
}

/** Inserts a job of a client as the worker would have left it; returns its id. */
async function newJob(clientId: string, job: JobFixture = {}): Promise<number> {
  const status = job.status ?? "queued";
  const finished = ["succeeded", "dead", "cancelled"].includes(status);
  const [row] = await db()<{ id: string }[]>`
    insert into app.jobs (client_id, kind, payload, idempotency_key, status, attempts, max_attempts, errors,
      result, run_at, finished_at, locked_by, locked_until)
    values (${clientId}, ${job.kind ?? "test.noop"}, ${db().json((job.payload ?? { n: 1 }) as never)},
      ${uniq("test-job")}, ${status}, ${job.attempts ?? 0}, ${job.maxAttempts ?? 5},
      ${db().json((job.errors ?? []) as never)}, ${
    job.result === undefined ? null : db().json(job.result as never)
  },
      ${job.runAt ?? new Date().toISOString()}, ${finished ? new Date().toISOString() : null},
      ${status === "running" ? "worker-test" : null},
      ${status === "running" ? new Date(Date.now() + 3_600_000).toISOString() : null})
    returning id::text`;
  return Number(row.id);
}

async function jobRow(id: number) {
  const [row] = await db()<
    {
      status: string;
      attempts: number;
      max_attempts: number;
      run_at: string;
      finished_at: string | null;
      errors: unknown[];
    }[]
  >`select status, attempts, max_attempts, run_at, finished_at, errors from app.jobs where id = ${id}`;
  return row;
}

const jobsPath = (clientId: string, query = "") => `/api/clients/${clientId}/jobs${query}`;
const jobPath = (clientId: string, id: number | string, action?: "retry" | "cancel") =>
  `/api/clients/${clientId}/jobs/${id}${action ? `/${action}` : ""}`;

const ids = (reply: Reply): number[] => reply.body.data.map((job: { id: number }) => job.id);

// -- Permissions ----------------------------------------------------------------------------------------

test("jobs.read is held by every template role, jobs.manage by owner and admin only", async () => {
  assert.ok(PERMISSIONS["jobs.read"] && PERMISSIONS["jobs.manage"], "declared by the job routes");
  const team = await teamWithTokens();
  const rows = await db()<{ key: string; permissions: string[] }[]>`
    select key, permissions from public.roles where client_id = ${team.clientId}`;
  const holders = (code: string) => rows.filter((r) => r.permissions.includes(code)).map((r) => r.key).sort();
  assert.deepEqual(holders("jobs.read"), ["admin", "agent", "manager", "owner", "viewer"]);
  assert.deepEqual(holders("jobs.manage"), ["admin", "owner"]);
});

// -- Listing --------------------------------------------------------------------------------------------

test("GET /jobs lists the client's jobs newest first, pages by cursor, and never another client's", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const created: number[] = [];
  for (let i = 0; i < 5; i++) created.push(await newJob(team.clientId));
  const foreign = await newJob(other.clientId);

  const first = await call(stack, "GET", jobsPath(team.clientId, "?limit=2"), { token: team.tokens.admin });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.deepEqual(ids(first), [created[4], created[3]]);
  assert.ok(first.body.next_cursor, "a next page exists");
  const second = await call(
    stack,
    "GET",
    jobsPath(team.clientId, `?limit=2&cursor=${first.body.next_cursor}`),
    {
      token: team.tokens.admin,
    },
  );
  assert.deepEqual(ids(second), [created[2], created[1]]);
  const third = await call(
    stack,
    "GET",
    jobsPath(team.clientId, `?limit=2&cursor=${second.body.next_cursor}`),
    {
      token: team.tokens.admin,
    },
  );
  assert.deepEqual(ids(third), [created[0]]);
  assert.equal(third.body.next_cursor, null, "the last page has no cursor");

  const all = await call(stack, "GET", jobsPath(team.clientId, "?limit=200"), { token: team.tokens.admin });
  assert.ok(!ids(all).includes(foreign), "another client's job leaks into the list");
  assert.deepEqual(ids(all), [...created].reverse());
});

test("GET /jobs filters by status and kind, shows the latest error, and leaves payloads to the detail", async () => {
  const team = await teamWithTokens();
  const dead = await newJob(team.clientId, {
    kind: "test.sheets",
    status: "dead",
    attempts: 2,
    maxAttempts: 2,
    errors: [
      { attempt: 1, at: "2026-01-01T00:00:00Z", message: "First failure", code: "http_500" },
      { attempt: 2, at: "2026-01-01T00:01:00Z", message: "Second failure", code: "http_503" },
    ],
  });
  const queued = await newJob(team.clientId, { kind: "test.sheets" });
  const otherKind = await newJob(team.clientId, { kind: "test.greeting", status: "dead" });

  const byStatus = await call(stack, "GET", jobsPath(team.clientId, "?status=dead"), {
    token: team.tokens.owner,
  });
  assert.deepEqual(ids(byStatus), [otherKind, dead]);
  const byKind = await call(stack, "GET", jobsPath(team.clientId, "?kind=test.sheets"), {
    token: team.tokens.owner,
  });
  assert.deepEqual(ids(byKind), [queued, dead]);
  const both = await call(stack, "GET", jobsPath(team.clientId, "?kind=test.sheets&status=dead"), {
    token: team.tokens.owner,
  });
  assert.deepEqual(ids(both), [dead]);

  const listed = both.body.data[0];
  assert.equal(listed.status, "dead");
  assert.equal(listed.attempts, 2);
  assert.equal(listed.max_attempts, 2);
  assert.equal(listed.client_id, team.clientId);
  assert.deepEqual(listed.last_error, {
    attempt: 2,
    at: "2026-01-01T00:01:00Z",
    message: "Second failure",
    code: "http_503",
  });
  assert.ok(!("payload" in listed) && !("errors" in listed), "lists leave payloads and histories out");
  const none = await call(stack, "GET", jobsPath(team.clientId, "?kind=test.nothing"), {
    token: team.tokens.owner,
  });
  assert.deepEqual(none.body, { data: [], next_cursor: null });
});

test("GET /jobs answers 422 for an unknown status, a malformed kind, a bad limit or a forged cursor", async () => {
  const team = await teamWithTokens();
  for (
    const [query, path] of [
      ["?status=exploded", "query.status"],
      ["?kind=DROP%20TABLE", "query.kind"],
      ["?limit=0", "query.limit"],
      ["?limit=201", "query.limit"],
      ["?cursor=not-a-cursor", "query.cursor"],
      [`?cursor=${btoa(JSON.stringify(["x"]))}`, "query.cursor"],
    ]
  ) {
    const reply = await call(stack, "GET", jobsPath(team.clientId, query), { token: team.tokens.owner });
    assertProblem(reply, 422, "validation_failed");
    assert.ok(reply.body.errors.some((e: { path: string }) => e.path === path), `${query}: ${path} is named`);
  }
});

test("GET /jobs is open to every role holding jobs.read and refuses a member without it", async () => {
  const team = await teamWithTokens();
  const job = await newJob(team.clientId);
  for (const role of ["manager", "agent", "viewer"] as const) {
    const reply = await call(stack, "GET", jobsPath(team.clientId), { token: team.tokens[role] });
    assert.equal(reply.status, 200, `${role}: ${JSON.stringify(reply.body)}`);
    assert.ok(ids(reply).includes(job));
  }
  await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${team.clientId}, 'nothing', 'Nothing', 60, 'own', '{}')`;
  await db()`update public.memberships set role_id = (
      select id from public.roles where client_id = ${team.clientId} and key = 'nothing')
    where id = ${team.memberships.viewer}`;
  assertProblem(
    await call(stack, "GET", jobsPath(team.clientId), { token: team.tokens.viewer }),
    403,
    "permission_denied",
  );
});

// -- Reading one ------------------------------------------------------------------------------------------

test("GET /jobs/{id} shows payload, result, attempts and every error to a whole-client role", async () => {
  const team = await teamWithTokens();
  const errors = [
    { attempt: 1, at: "2026-01-01T00:00:00Z", message: "Timed out", code: "unreachable" },
    { attempt: 2, at: "2026-01-01T00:05:00Z", message: "HTTP 500", code: "http_500" },
  ];
  const id = await newJob(team.clientId, {
    kind: "test.deliver",
    status: "succeeded",
    payload: { endpoint_id: crypto.randomUUID(), data: { lead: { email: "lead@example.com" } } },
    attempts: 3,
    maxAttempts: 8,
    errors,
    result: { status: 200, duration_ms: 12 },
  });
  const reply = await call(stack, "GET", jobPath(team.clientId, id), { token: team.tokens.admin });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const job = reply.body;
  assert.equal(job.id, id);
  assert.equal(job.kind, "test.deliver");
  assert.equal(job.status, "succeeded");
  assert.equal(job.attempts, 3);
  assert.equal(job.max_attempts, 8);
  assert.deepEqual(job.errors, errors);
  assert.deepEqual(job.last_error, errors[1]);
  assert.deepEqual(job.result, { status: 200, duration_ms: 12 });
  assert.equal(job.payload.data.lead.email, "lead@example.com");
  assert.equal(job.payload_visible, true);
  assert.match(job.idempotency_key, /^test-job-/);
  assert.ok(job.finished_at, "a finished job has finished_at");
  assert.equal(job.locked_by, null);
});

test("GET /jobs/{id} withholds payload and result from roles that see only part of the client", async () => {
  const team = await teamWithTokens();
  const id = await newJob(team.clientId, {
    payload: { data: { lead: { email: "someone-elses-lead@example.com" } } },
    status: "succeeded",
    result: { echoed: "someone-elses-lead@example.com" },
  });
  for (const role of ["manager", "agent", "viewer"] as const) {
    const reply = await call(stack, "GET", jobPath(team.clientId, id), { token: team.tokens[role] });
    assert.equal(reply.status, 200, `${role}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.payload, null, `${role} sees no payload`);
    assert.equal(reply.body.result, null, `${role} sees no result`);
    assert.equal(reply.body.payload_visible, false);
    assert.ok(!JSON.stringify(reply.body).includes("someone-elses-lead"), `${role}: no lead data at all`);
  }
});

test("GET /jobs/{id} is 404 for another client's job or an unknown id, 422 for an id that is not one", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const foreign = await newJob(other.clientId);
  assertProblem(
    await call(stack, "GET", jobPath(team.clientId, foreign), { token: team.tokens.owner }),
    404,
    "job_not_found",
  );
  assertProblem(
    await call(stack, "GET", jobPath(team.clientId, 999_999_999_999), { token: team.tokens.owner }),
    404,
    "job_not_found",
  );
  assertProblem(
    await call(stack, "GET", jobPath(other.clientId, foreign), { token: team.tokens.owner }),
    404,
    "client_not_found",
  );
  for (const bad of ["abc", "0", "-1", "1.5", "1e3", "12345678901234567890", "%20"]) {
    const reply = await call(stack, "GET", jobPath(team.clientId, bad), { token: team.tokens.owner });
    assertProblem(reply, 422, "validation_failed");
    assert.equal(reply.body.errors[0].path, "param.jobId", bad);
  }
});

// -- Retry ----------------------------------------------------------------------------------------------

test("POST /jobs/{id}/retry queues a dead job now with a fresh set of attempts and keeps its errors", async () => {
  const team = await teamWithTokens();
  const errors = [{ attempt: 3, at: "2026-01-01T00:00:00Z", message: "Gave up", code: "http_500" }];
  const id = await newJob(team.clientId, {
    status: "dead",
    attempts: 3,
    maxAttempts: 3,
    errors,
    runAt: "2026-01-01T00:00:00Z",
  });
  const reply = await call(stack, "POST", jobPath(team.clientId, id, "retry"), { token: team.tokens.admin });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.status, "queued");
  assert.equal(reply.body.attempts, 3, "attempts made are kept");
  assert.equal(reply.body.max_attempts, 3 + MAX_ATTEMPTS, "a fresh budget of attempts");
  assert.equal(reply.body.finished_at, null);
  assert.deepEqual(reply.body.errors, errors, "the error history stays");
  assert.ok(Date.now() - Date.parse(reply.body.run_at) < 60_000, "due now");
  const row = await jobRow(id);
  assert.equal(row.status, "queued");
  assert.equal(row.max_attempts, 3 + MAX_ATTEMPTS);
});

test("POST /jobs/{id}/retry runs a cancelled job, and a queued one waiting for its backoff, now", async () => {
  const team = await teamWithTokens();
  const cancelled = await newJob(team.clientId, { status: "cancelled", attempts: 1 });
  const waiting = await newJob(team.clientId, {
    status: "queued",
    attempts: 2,
    runAt: new Date(Date.now() + 3_600_000).toISOString(),
  });
  for (const id of [cancelled, waiting]) {
    const reply = await call(stack, "POST", jobPath(team.clientId, id, "retry"), {
      token: team.tokens.owner,
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.status, "queued");
    assert.ok(Date.parse(reply.body.run_at) <= Date.now() + 1000, "due now");
  }
});

test("POST /jobs/{id}/retry refuses a running job and a succeeded one with 409, changing nothing", async () => {
  const team = await teamWithTokens();
  const running = await newJob(team.clientId, { status: "running", attempts: 1 });
  const succeeded = await newJob(team.clientId, { status: "succeeded", attempts: 1 });
  const before = [await jobRow(running), await jobRow(succeeded)];
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, running, "retry"), { token: team.tokens.owner }),
    409,
    "job_running",
  );
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, succeeded, "retry"), { token: team.tokens.owner }),
    409,
    "job_succeeded",
  );
  assert.deepEqual([await jobRow(running), await jobRow(succeeded)], before);
});

test("POST /jobs/{id}/retry refuses a job that would exceed the queue's cap on attempts with 409", async () => {
  const team = await teamWithTokens();
  const worn = await newJob(team.clientId, {
    status: "dead",
    attempts: 100 - MAX_ATTEMPTS + 1,
    maxAttempts: 100,
  });
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, worn, "retry"), { token: team.tokens.owner }),
    409,
    "job_retry_limit",
  );
  assert.equal((await jobRow(worn)).status, "dead", "the job is unchanged");
});

test("POST /jobs/{id}/retry needs jobs.manage and addresses only the path's client", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const dead = await newJob(team.clientId, { status: "dead", attempts: 1, maxAttempts: 1 });
  const foreign = await newJob(other.clientId, { status: "dead", attempts: 1, maxAttempts: 1 });
  for (const role of ["manager", "viewer"] as const) {
    assertProblem(
      await call(stack, "POST", jobPath(team.clientId, dead, "retry"), { token: team.tokens[role] }),
      403,
      "permission_denied",
    );
  }
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, foreign, "retry"), { token: team.tokens.owner }),
    404,
    "job_not_found",
  );
  assert.equal((await jobRow(dead)).status, "dead");
  assert.equal((await jobRow(foreign)).status, "dead");
});

// -- Cancel ---------------------------------------------------------------------------------------------

test("POST /jobs/{id}/cancel cancels a queued or dead job; cancelling again keeps the first time", async () => {
  const team = await teamWithTokens();
  const queued = await newJob(team.clientId);
  const dead = await newJob(team.clientId, { status: "dead", attempts: 5 });
  for (const id of [queued, dead]) {
    const reply = await call(stack, "POST", jobPath(team.clientId, id, "cancel"), {
      token: team.tokens.admin,
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.equal(reply.body.status, "cancelled");
    assert.ok(reply.body.finished_at);
    assert.equal((await jobRow(id)).status, "cancelled");
  }
  const first = (await jobRow(queued)).finished_at;
  const again = await call(stack, "POST", jobPath(team.clientId, queued, "cancel"), {
    token: team.tokens.admin,
  });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body.status, "cancelled");
  assert.equal(again.body.finished_at, first, "cancelling twice keeps the first time");
});

test("POST /jobs/{id}/cancel refuses a running or succeeded job with 409 and another client's with 404", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const running = await newJob(team.clientId, { status: "running", attempts: 1 });
  const succeeded = await newJob(team.clientId, { status: "succeeded", attempts: 1 });
  const foreign = await newJob(other.clientId);
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, running, "cancel"), { token: team.tokens.owner }),
    409,
    "job_running",
  );
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, succeeded, "cancel"), { token: team.tokens.owner }),
    409,
    "job_succeeded",
  );
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, foreign, "cancel"), { token: team.tokens.owner }),
    404,
    "job_not_found",
  );
  assertProblem(
    await call(stack, "POST", jobPath(team.clientId, running, "cancel"), { token: team.tokens.manager }),
    403,
    "permission_denied",
  );
  assert.equal((await jobRow(running)).status, "running");
  assert.equal((await jobRow(succeeded)).status, "succeeded");
  assert.equal((await jobRow(foreign)).status, "queued");
});

test("a cancelled job is never claimed by a worker; after a retry it is", async () => {
  const team = await teamWithTokens();
  const kind = `test.claim${crypto.randomUUID().slice(0, 8)}`;
  const id = await newJob(team.clientId, { kind });
  await call(stack, "POST", jobPath(team.clientId, id, "cancel"), { token: team.tokens.owner });
  const claim = () =>
    db()<{ id: string }[]>`
      select id::text from app.claim_jobs(${"worker-" + kind}, 10, 60, 10, ${[kind]}::text[])`;
  assert.equal((await claim()).length, 0, "a cancelled job is not claimed");
  await call(stack, "POST", jobPath(team.clientId, id, "retry"), { token: team.tokens.owner });
  assert.deepEqual((await claim()).map((row) => Number(row.id)), [id], "the retried job is claimed");
  assert.equal((await jobRow(id)).status, "running");
});
