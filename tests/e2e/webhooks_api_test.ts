/**
 * The outbound webhooks API over HTTP: an endpoint's signing secret is shown once and stored only sealed
 * (bound to its endpoint), URLs are held to the SSRF rules and events to the automation catalog, PATCH
 * re-enables a disabled endpoint with a clean slate, secrets rotate, the delivery log pages newest first,
 * and a delivery is replayed as a new job with the same message id. A delivery made by the worker is signed
 * with exactly the secret the API showed. Everything needs webhooks.manage in the endpoint's own client.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createSecretBox } from "../../functions/_shared/integrations/secret_box.ts";
import { signWebhook, webhookSecretContext } from "../../functions/_shared/outbound_webhooks.ts";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import { deliverWebhook } from "../../functions/worker/webhook_delivery.ts";
import type { Job } from "../../functions/worker/queue.ts";
import {
  assertProblem,
  call,
  createTeam,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });
/** A development stack, where endpoints on this machine are allowed. */
const localStack = startStack({ RATE_LIMIT_PER_USER: "100000", WEBHOOKS_ALLOW_LOCAL_TARGETS: "true" });
const config = loadConfig({ APP_ENV: "test" });
const box = createSecretBox(config.secrets.encryption_key);

const SECRET_FORMAT = /^whsec_[A-Za-z0-9+/]{43}=$/;
const ENDPOINT_KEYS = [
  "client_id",
  "created_at",
  "created_by",
  "description",
  "disabled_reason",
  "enabled",
  "events",
  "failing_since",
  "id",
  "last_failure_at",
  "last_success_at",
  "updated_at",
  "url",
];

async function teamWithTokens() {
  const team = await createTeam();
  // Deliveries these tests queue (replays) are never run by workers of parallel files; the signing test runs
  // its one delivery itself.
  await db()`insert into app.job_pauses (client_id, kind_pattern, reason)
    values (${team.clientId}, 'webhook.%', 'webhooks API test')`;
  const tokens = {
    owner: await sessionToken(team.users.owner, team.clientId),
    admin: await sessionToken(team.users.admin, team.clientId),
    manager: await sessionToken(team.users.manager, team.clientId),
    viewer: await sessionToken(team.users.viewer, team.clientId),
  };
  return { ...team, tokens };
}
type Team = Awaited<ReturnType<typeof teamWithTokens>>;

const hooksPath = (clientId: string) => `/api/clients/${clientId}/webhooks`;
const hookPath = (clientId: string, id: string, rest = "") =>
  `/api/clients/${clientId}/webhooks/${id}${rest}`;

function assertInvalid(reply: Reply, path: string, code?: string) {
  assertProblem(reply, 422, "validation_failed");
  const error = reply.body.errors.find((e: { path: string }) => e.path === path);
  assert.ok(error, `${path} is named: ${JSON.stringify(reply.body)}`);
  if (code) assert.equal(error.code, code);
}

async function createEndpoint(team: Team, body: Record<string, unknown> = {}, on = stack) {
  const reply = await call(on, "POST", hooksPath(team.clientId), {
    token: team.tokens.admin,
    body: { url: "https://hooks.example.com/leads", ...body },
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return reply.body;
}

async function sealedSecret(endpointId: string): Promise<string | undefined> {
  const [row] = await db()<{ secret_sealed: string }[]>`
    select secret_sealed from app.webhook_secrets where endpoint_id = ${endpointId}`;
  return row?.secret_sealed;
}

async function endpointRow(id: string) {
  const [row] = await db()<
    {
      url: string;
      enabled: boolean;
      events: string[];
      failing_since: string | null;
      disabled_reason: string | null;
    }[]
  >`select url, enabled, events, failing_since, disabled_reason from public.webhook_endpoints where id = ${id}`;
  return row;
}

/** A webhook.deliver job of an endpoint as the dispatcher makes it; returns its id. */
async function deliveryJob(
  clientId: string,
  endpointId: string,
  options: { kind?: string; status?: string; messageId?: string } = {},
): Promise<number> {
  const payload = {
    endpoint_id: endpointId,
    message_id: options.messageId ?? `evt_${crypto.randomUUID()}`,
    event: "lead.created",
    timestamp: "2026-01-01T00:00:00Z",
    data: { lead_id: crypto.randomUUID() },
  };
  const [row] = await db()<{ id: string }[]>`
    insert into app.jobs (client_id, kind, payload, idempotency_key, status, attempts, max_attempts, finished_at)
    values (${clientId}, ${options.kind ?? "webhook.deliver"}, ${db().json(payload)}, ${
    uniq("test-delivery")
  },
      ${options.status ?? "dead"}, 1, 1, now())
    returning id::text`;
  return Number(row.id);
}

async function jobById(id: number) {
  const [row] = await db()<
    { client_id: string; kind: string; payload: Record<string, unknown>; idempotency_key: string }[]
  >`select client_id, kind, payload, idempotency_key from app.jobs where id = ${id}`;
  return row;
}

// -- Creating -------------------------------------------------------------------------------------------

test("webhooks.manage is in the permission catalog, held by owner and admin only", async () => {
  assert.ok(PERMISSIONS["webhooks.manage"]);
  const team = await teamWithTokens();
  const rows = await db()<{ key: string; permissions: string[] }[]>`
    select key, permissions from public.roles where client_id = ${team.clientId}`;
  const holders = rows.filter((r) => r.permissions.includes("webhooks.manage")).map((r) => r.key).sort();
  assert.deepEqual(holders, ["admin", "owner"]);
});

test("POST /webhooks returns the endpoint and its secret once; only the sealed secret is stored", async () => {
  const team = await teamWithTokens();
  const created = await createEndpoint(team, {
    url: "https://crm.example.com/hooks?source=lap",
    description: "  CRM sync  ",
    events: ["lead.created", "lead.assigned", "lead.created"],
  });
  assert.match(created.secret, SECRET_FORMAT);
  assert.equal(created.client_id, team.clientId);
  assert.equal(created.url, "https://crm.example.com/hooks?source=lap");
  assert.equal(created.description, "CRM sync", "descriptions are trimmed");
  assert.deepEqual(created.events, ["lead.created", "lead.assigned"], "each event once");
  assert.equal(created.enabled, true);
  assert.equal(created.created_by, team.users.admin.id);
  assert.deepEqual(Object.keys(created).filter((k) => k !== "secret").sort(), ENDPOINT_KEYS);

  const sealed = await sealedSecret(created.id);
  assert.ok(sealed, "a secret is stored");
  assert.ok(!sealed.includes(created.secret.slice(6)), "never in the clear");
  assert.equal(await box.open(sealed, webhookSecretContext(created.id)), created.secret);
  await assert.rejects(
    box.open(sealed, webhookSecretContext(crypto.randomUUID())),
    "the sealed secret only opens for its own endpoint",
  );
});

test("POST /webhooks subscribes to every event by default and folds '*' with names into ['*']", async () => {
  const team = await teamWithTokens();
  const plain = await createEndpoint(team);
  assert.deepEqual(plain.events, ["*"]);
  assert.equal(plain.description, "");
  const star = await createEndpoint(team, { events: ["lead.created", "*"] });
  assert.deepEqual(star.events, ["*"]);
  const every = await createEndpoint(team, {
    events: [
      "lead.created",
      "lead.duplicate",
      "lead.assigned",
      "lead.status_changed",
      "message.received",
      "member.added",
      "member.changed",
      "member.removed",
    ],
  });
  assert.equal(every.events.length, 8, "every catalog event is accepted");
  assert.notEqual(plain.secret, star.secret, "secrets are random");
});

test("POST /webhooks refuses unsafe URLs and unknown events with 422 naming each field", async () => {
  const team = await teamWithTokens();
  const post = (body: Record<string, unknown>) =>
    call(stack, "POST", hooksPath(team.clientId), { token: team.tokens.owner, body });
  for (
    const url of [
      "http://hooks.example.com/leads",
      "https://localhost/hook",
      "https://127.0.0.1/hook",
      "https://10.1.2.3/hook",
      "https://169.254.169.254/latest/meta-data",
      "https://[::1]/hook",
      "https://user:pass@hooks.example.com/",
      "ftp://hooks.example.com/",
      "not a url",
    ]
  ) {
    assertInvalid(await post({ url }), "body.url", "invalid_url");
  }
  assertInvalid(await post({ url: `https://example.com/${"a".repeat(2000)}` }), "body.url");
  assertInvalid(await post({}), "body.url");
  assertInvalid(await post({ url: "https://example.com", events: [] }), "body.events");
  assertInvalid(await post({ url: "https://example.com", events: "lead.created" }), "body.events");
  const unknown = await post({
    url: "https://example.com",
    events: ["lead.created", "lead.exploded", "LEAD"],
  });
  assertInvalid(unknown, "body.events.1", "unknown_event");
  assertInvalid(unknown, "body.events.2", "unknown_event");
  assertInvalid(
    await post({ url: "https://example.com", secret: "whsec_mine" }),
    "body.secret",
    "unknown_field",
  );
  assertInvalid(
    await post({ url: "https://example.com", events: Array.from({ length: 51 }, () => "*") }),
    "body.events",
  );
  const both = await post({ url: "http://insecure.example.com", events: ["nope"] });
  assertInvalid(both, "body.url", "invalid_url");
  assertInvalid(both, "body.events.0", "unknown_event");
  const [{ n }] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.webhook_endpoints where client_id = ${team.clientId}`;
  assert.equal(n, 0, "nothing was created");
});

test("POST /webhooks accepts http and local addresses only where local targets are allowed", async () => {
  const team = await teamWithTokens();
  const local = await createEndpoint(team, { url: "http://127.0.0.1:9/hook" }, localStack);
  assert.equal(local.url, "http://127.0.0.1:9/hook");
  assertInvalid(
    await call(stack, "POST", hooksPath(team.clientId), {
      token: team.tokens.owner,
      body: { url: "http://127.0.0.1:9/hook" },
    }),
    "body.url",
    "invalid_url",
  );
});

// -- Reading --------------------------------------------------------------------------------------------

test("GET /webhooks lists the client's endpoints newest first, never a secret, never another client's", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const first = await createEndpoint(team);
  const second = await createEndpoint(team, { url: "https://two.example.com/" });
  const foreign = await createEndpoint(other);
  const list = await call(stack, "GET", hooksPath(team.clientId), { token: team.tokens.owner });
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.data.map((e: { id: string }) => e.id), [second.id, first.id]);
  assert.ok(!JSON.stringify(list.body).includes(foreign.id));
  for (const endpoint of list.body.data) assert.deepEqual(Object.keys(endpoint).sort(), ENDPOINT_KEYS);
  assert.ok(!JSON.stringify(list.body).includes("whsec_"), "no secret is listed");

  const one = await call(stack, "GET", hookPath(team.clientId, first.id), { token: team.tokens.admin });
  assert.equal(one.status, 200);
  const { secret: _secret, ...record } = first;
  assert.deepEqual(one.body, record);
});

test("GET /webhooks/{id} is 404 for another client's endpoint or an unknown id, 422 for a malformed one", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const foreign = await createEndpoint(other);
  for (const id of [foreign.id, crypto.randomUUID()]) {
    assertProblem(
      await call(stack, "GET", hookPath(team.clientId, id), { token: team.tokens.owner }),
      404,
      "webhook_endpoint_not_found",
    );
  }
  assertProblem(
    await call(stack, "GET", hookPath(other.clientId, foreign.id), { token: team.tokens.owner }),
    404,
    "client_not_found",
  );
  assertInvalid(
    await call(stack, "GET", hookPath(team.clientId, "42"), { token: team.tokens.owner }),
    "param.endpointId",
  );
});

test("every webhook route needs webhooks.manage: managers and viewers get 403", async () => {
  const team = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const job = await deliveryJob(team.clientId, endpoint.id);
  const requests: Array<[string, string, unknown?]> = [
    ["POST", hooksPath(team.clientId), { url: "https://example.com" }],
    ["GET", hooksPath(team.clientId)],
    ["GET", hookPath(team.clientId, endpoint.id)],
    ["PATCH", hookPath(team.clientId, endpoint.id), { enabled: false }],
    ["DELETE", hookPath(team.clientId, endpoint.id)],
    ["POST", hookPath(team.clientId, endpoint.id, "/rotate-secret")],
    ["GET", hookPath(team.clientId, endpoint.id, "/deliveries")],
    ["POST", hookPath(team.clientId, endpoint.id, `/deliveries/${job}/replay`)],
  ];
  for (const role of ["manager", "viewer"] as const) {
    for (const [method, path, body] of requests) {
      const reply = await call(stack, method, path, { token: team.tokens[role], body });
      assertProblem(reply, 403, "permission_denied");
    }
  }
  const row = await endpointRow(endpoint.id);
  assert.equal(row.enabled, true, "the endpoint is unchanged");
  assert.equal(
    await box.open((await sealedSecret(endpoint.id))!, webhookSecretContext(endpoint.id)),
    endpoint.secret,
  );
});

// -- Changing -------------------------------------------------------------------------------------------

test("PATCH /webhooks/{id} changes URL, description and events, validated like POST", async () => {
  const team = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const reply = await call(stack, "PATCH", hookPath(team.clientId, endpoint.id), {
    token: team.tokens.owner,
    body: { url: "https://new.example.com/hook", description: "New", events: ["member.added"] },
  });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.url, "https://new.example.com/hook");
  assert.equal(reply.body.description, "New");
  assert.deepEqual(reply.body.events, ["member.added"]);
  assert.ok(!("secret" in reply.body));

  const patch = (body: unknown) =>
    call(stack, "PATCH", hookPath(team.clientId, endpoint.id), { token: team.tokens.owner, body });
  assertInvalid(await patch({ url: "https://192.168.1.1/" }), "body.url", "invalid_url");
  assertInvalid(await patch({ events: ["lead.deleted"] }), "body.events.0", "unknown_event");
  assertInvalid(await patch({ enabled: "no" }), "body.enabled");
  assertInvalid(await patch({ id: crypto.randomUUID() }), "body.id", "unknown_field");
  assertProblem(await patch({}), 422, "validation_failed");
  const row = await endpointRow(endpoint.id);
  assert.equal(row.url, "https://new.example.com/hook", "refused patches change nothing");
  assert.deepEqual(row.events, ["member.added"]);
});

test("PATCH /webhooks/{id} disables with a reason; re-enabling or a new URL clears the failure state", async () => {
  const team = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const patch = (body: unknown) =>
    call(stack, "PATCH", hookPath(team.clientId, endpoint.id), { token: team.tokens.admin, body });

  const off = await patch({ enabled: false });
  assert.equal(off.body.enabled, false);
  assert.equal(off.body.disabled_reason, "Disabled by a user");

  // As the worker leaves an endpoint it disabled after days of failures.
  await db()`update public.webhook_endpoints set enabled = false, failing_since = now() - interval '4 days',
    disabled_reason = 'Disabled after failing for 72 hours without a success' where id = ${endpoint.id}`;
  const still = await patch({ description: "Still off" });
  assert.equal(still.body.enabled, false);
  assert.ok(still.body.failing_since, "other changes keep the failure state");
  assert.match(still.body.disabled_reason, /72 hours/);

  const on = await patch({ enabled: true });
  assert.equal(on.status, 200);
  assert.equal(on.body.enabled, true);
  assert.equal(on.body.failing_since, null, "re-enabling restarts the failure clock");
  assert.equal(on.body.disabled_reason, null);

  await db()`update public.webhook_endpoints set failing_since = now() - interval '1 day' where id = ${endpoint.id}`;
  const again = await patch({ enabled: true });
  assert.ok(again.body.failing_since, "enabling an enabled endpoint keeps its failure clock");
  const moved = await patch({ url: "https://moved.example.com/" });
  assert.equal(moved.body.failing_since, null, "a new URL restarts the failure clock");
});

test("DELETE /webhooks/{id} removes the endpoint with its secret; twice is 404", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const foreign = await createEndpoint(other);
  assertProblem(
    await call(stack, "DELETE", hookPath(team.clientId, foreign.id), { token: team.tokens.owner }),
    404,
    "webhook_endpoint_not_found",
  );
  assert.ok(await endpointRow(foreign.id), "another client's endpoint survives");

  const reply = await call(stack, "DELETE", hookPath(team.clientId, endpoint.id), {
    token: team.tokens.owner,
  });
  assert.equal(reply.status, 204);
  assert.equal(await endpointRow(endpoint.id), undefined);
  assert.equal(await sealedSecret(endpoint.id), undefined, "the secret went with it");
  assertProblem(
    await call(stack, "DELETE", hookPath(team.clientId, endpoint.id), { token: team.tokens.owner }),
    404,
    "webhook_endpoint_not_found",
  );
  assertProblem(
    await call(stack, "GET", hookPath(team.clientId, endpoint.id), { token: team.tokens.owner }),
    404,
    "webhook_endpoint_not_found",
  );
});

test("POST /webhooks/{id}/rotate-secret seals a new secret, shown once; the old one no longer opens", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const reply = await call(stack, "POST", hookPath(team.clientId, endpoint.id, "/rotate-secret"), {
    token: team.tokens.owner,
  });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.match(reply.body.secret, SECRET_FORMAT);
  assert.notEqual(reply.body.secret, endpoint.secret);
  assert.equal(reply.body.id, endpoint.id);
  const opened = await box.open((await sealedSecret(endpoint.id))!, webhookSecretContext(endpoint.id));
  assert.equal(opened, reply.body.secret, "the stored secret is the new one");

  const foreign = await createEndpoint(other);
  const sealedBefore = await sealedSecret(foreign.id);
  assertProblem(
    await call(stack, "POST", hookPath(team.clientId, foreign.id, "/rotate-secret"), {
      token: team.tokens.owner,
    }),
    404,
    "webhook_endpoint_not_found",
  );
  assert.equal(await sealedSecret(foreign.id), sealedBefore, "another client's secret is untouched");
});

// -- Deliveries and replay ------------------------------------------------------------------------------

test("GET /webhooks/{id}/deliveries pages the endpoint's attempts newest first", async () => {
  const team = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const sibling = await createEndpoint(team);
  const job = await deliveryJob(team.clientId, endpoint.id);
  const inserted: number[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const [row] = await db()<{ id: string }[]>`
      insert into public.webhook_deliveries (client_id, endpoint_id, job_id, message_id, event, attempt,
        succeeded, status_code, duration_ms, error, response_excerpt)
      values (${team.clientId}, ${endpoint.id}, ${job}, 'evt_1', 'lead.created', ${attempt}, ${attempt === 3},
        ${attempt === 3 ? 200 : 500}, 12, ${attempt === 3 ? null : "HTTP 500"}, 'ok')
      returning id::text`;
    inserted.push(Number(row.id));
  }
  await db()`insert into public.webhook_deliveries (client_id, endpoint_id, message_id, event, attempt, succeeded)
    values (${team.clientId}, ${sibling.id}, 'evt_2', 'lead.created', 1, true)`;

  const path = hookPath(team.clientId, endpoint.id, "/deliveries");
  const page1 = await call(stack, "GET", `${path}?limit=2`, { token: team.tokens.owner });
  assert.equal(page1.status, 200, JSON.stringify(page1.body));
  assert.deepEqual(page1.body.data.map((d: { id: number }) => d.id), [inserted[2], inserted[1]]);
  assert.deepEqual(page1.body.data[0], {
    id: inserted[2],
    endpoint_id: endpoint.id,
    job_id: job,
    message_id: "evt_1",
    event: "lead.created",
    attempt: 3,
    succeeded: true,
    status_code: 200,
    duration_ms: 12,
    error: null,
    response_excerpt: "ok",
    created_at: page1.body.data[0].created_at,
  });
  const page2 = await call(stack, "GET", `${path}?limit=2&cursor=${page1.body.next_cursor}`, {
    token: team.tokens.owner,
  });
  assert.deepEqual(page2.body.data.map((d: { id: number }) => d.id), [inserted[0]]);
  assert.equal(page2.body.next_cursor, null);

  assertInvalid(await call(stack, "GET", `${path}?cursor=abc`, { token: team.tokens.owner }), "query.cursor");
  assertProblem(
    await call(stack, "GET", hookPath(team.clientId, crypto.randomUUID(), "/deliveries"), {
      token: team.tokens.owner,
    }),
    404,
    "webhook_endpoint_not_found",
  );
});

test("POST .../deliveries/{jobId}/replay enqueues the same event with the same message id as a new job", async () => {
  const team = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const original = await deliveryJob(team.clientId, endpoint.id, { messageId: "evt_replayed" });
  const path = hookPath(team.clientId, endpoint.id, `/deliveries/${original}/replay`);
  const reply = await call(stack, "POST", path, { token: team.tokens.admin });
  assert.equal(reply.status, 202, JSON.stringify(reply.body));
  assert.equal(reply.body.message_id, "evt_replayed");
  assert.notEqual(reply.body.job_id, original);
  const [before, replayed] = [await jobById(original), await jobById(reply.body.job_id)];
  assert.equal(replayed.client_id, team.clientId);
  assert.equal(replayed.kind, "webhook.deliver");
  assert.deepEqual(replayed.payload, before.payload, "the same event, endpoint and message id");
  assert.match(
    replayed.idempotency_key,
    new RegExp(`^replay:${original}:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`),
  );
  const again = await call(stack, "POST", path, { token: team.tokens.admin });
  assert.equal(again.status, 202);
  assert.notEqual(again.body.job_id, reply.body.job_id, "each replay is a new delivery");
});

test("replay is 404 for a job that is not a delivery to that endpoint in that client, 409 when disabled", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const endpoint = await createEndpoint(team);
  const sibling = await createEndpoint(team);
  const foreignEndpoint = await createEndpoint(other);
  const replay = (endpointId: string, jobId: number | string) =>
    call(stack, "POST", hookPath(team.clientId, endpointId, `/deliveries/${jobId}/replay`), {
      token: team.tokens.owner,
    });
  const [{ max }] = await db()<{ max: string }[]>`select coalesce(max(id), 0)::text as max from app.jobs`;

  const notADelivery = await deliveryJob(team.clientId, endpoint.id, { kind: "whatsapp.greeting" });
  const ofSibling = await deliveryJob(team.clientId, sibling.id);
  const ofOtherClient = await deliveryJob(other.clientId, foreignEndpoint.id);
  for (const job of [notADelivery, ofSibling, ofOtherClient, 999_999_999_999]) {
    assertProblem(await replay(endpoint.id, job), 404, "webhook_delivery_not_found");
  }
  assertProblem(await replay(foreignEndpoint.id, ofOtherClient), 404, "webhook_endpoint_not_found");
  assertInvalid(await replay(endpoint.id, "latest"), "param.jobId");
  assertInvalid(await replay(endpoint.id, 0), "param.jobId");

  const job = await deliveryJob(team.clientId, endpoint.id);
  await call(stack, "PATCH", hookPath(team.clientId, endpoint.id), {
    token: team.tokens.owner,
    body: { enabled: false },
  });
  assertProblem(await replay(endpoint.id, job), 409, "webhook_endpoint_disabled");
  const [{ n }] = await db()<{ n: number }[]>`
    select count(*)::int as n from app.jobs where id > ${max}::bigint and idempotency_key like 'replay:%'
      and client_id = ${team.clientId}`;
  assert.equal(n, 0, "no refused replay enqueued anything");
});

test("a delivery of an endpoint created over the API is signed with the secret the API showed", async () => {
  const team = await teamWithTokens();
  const received: Array<{ headers: Headers; body: string }> = [];
  const receiver = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, async (request) => {
    received.push({ headers: request.headers, body: await request.text() });
    return new Response("thanks");
  });
  try {
    const endpoint = await createEndpoint(
      team,
      { url: `http://127.0.0.1:${receiver.addr.port}/hook`, events: ["lead.created"] },
      localStack,
    );
    const original = await deliveryJob(team.clientId, endpoint.id, { messageId: "evt_signed" });
    const replay = await call(
      localStack,
      "POST",
      hookPath(team.clientId, endpoint.id, `/deliveries/${original}/replay`),
      { token: team.tokens.owner },
    );
    assert.equal(replay.status, 202, JSON.stringify(replay.body));

    const [job] = await db()<Job[]>`
      select id::int, client_id, kind, payload, idempotency_key, status, attempts + 1 as attempts, max_attempts,
        run_at, errors
      from app.jobs where id = ${replay.body.job_id}`;
    const localConfig = loadConfig({ APP_ENV: "test", WEBHOOKS_ALLOW_LOCAL_TARGETS: "true" });
    const result = await deliverWebhook(job, {
      sql: db(),
      config: localConfig,
      workerId: "webhooks-api-test",
    });
    // A success is logged when its job completes, as the worker completes it.
    await db()`update app.jobs set status = 'running', attempts = ${job.attempts}, locked_by = 'webhooks-api-test'
               where id = ${job.id}`;
    await db()`select app.complete_jobs('webhooks-api-test',
      ${db().json([{ id: job.id, attempt: job.attempts, result }] as never)})`;

    assert.equal(received.length, 1);
    const [{ headers, body }] = received;
    assert.equal(headers.get("webhook-id"), "evt_signed", "the replay keeps the message id");
    const timestamp = Number(headers.get("webhook-timestamp"));
    assert.equal(
      headers.get("webhook-signature"),
      await signWebhook(endpoint.secret, "evt_signed", timestamp, body),
      "signed with the secret shown at creation",
    );
    assert.equal(JSON.parse(body).type, "lead.created");

    const log = await call(localStack, "GET", hookPath(team.clientId, endpoint.id, "/deliveries"), {
      token: team.tokens.owner,
    });
    assert.equal(log.body.data.length, 1);
    assert.equal(log.body.data[0].job_id, replay.body.job_id);
    assert.equal(log.body.data[0].succeeded, true);
    assert.equal(log.body.data[0].status_code, 200);
  } finally {
    await receiver.shutdown();
  }
});
