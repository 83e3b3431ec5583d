/**
 * POST /ingest/leads end to end: field validation and normalisation, deduplication, idempotency (also under
 * concurrency), key refusals, tenant isolation (the client comes only from the key), per-key CORS, batches
 * with partial failures, round-robin assignment under 1,000 concurrent ingests, products, rate limits, and
 * the one-database-call budget of a request.
 */
import assert from "node:assert/strict";
import { createClient as createSupabaseClient } from "@supabase/supabase-js";
import { SignJWT } from "jose";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createIngestApp } from "../../functions/ingest/app.ts";
import {
  addMember,
  assertProblem,
  assertTimeOrderedId,
  call,
  createClient,
  createUser,
  db,
  nested,
  type Reply,
  sessionToken,
  startStack,
  test,
  testDatabaseUrl,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

interface Tenant {
  clientId: string;
  token: string;
  agents: string[];
}

/** A client with an owner (who manages keys) and `agents` available agents. */
async function tenant(agents = 1): Promise<Tenant> {
  const clientId = await createClient(uniq("ingest"));
  const owner = await createUser({ name: "Owner" });
  const ownerMembership = await addMember(clientId, owner.id, "owner");
  const agentIds: string[] = [];
  for (let i = 0; i < agents; i++) {
    agentIds.push(
      await addMember(clientId, (await createUser({ name: `Agent ${i}` })).id, "agent", ownerMembership),
    );
  }
  return { clientId, token: await sessionToken(owner, clientId), agents: agentIds };
}

/** Creates a key through the API and returns its secret and id. */
async function apiKey(
  t: Tenant,
  settings: Record<string, unknown> = {},
): Promise<{ id: string; secret: string }> {
  const reply = await call(stack, "POST", `/api/clients/${t.clientId}/api-keys`, {
    token: t.token,
    body: { name: "Form", rate_limit_per_minute: 100_000, ...settings },
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return { id: reply.body.id, secret: reply.body.secret };
}

function ingest(
  key: string | undefined,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Reply> {
  return call(stack, "POST", "/ingest/leads", {
    headers: { ...(key ? { "x-api-key": key } : {}), ...headers },
    body,
  });
}

interface LeadRow {
  id: string;
  client_id: string;
  source: string;
  external_ref: string | null;
  full_name: string | null;
  email: string | null;
  phone: string | null;
  product_id: string | null;
  owner_membership_id: string | null;
  duplicate_of: string | null;
  utm_source: string | null;
  utm_medium: string | null;
  utm_campaign: string | null;
  utm_term: string | null;
  utm_content: string | null;
  consent: boolean;
  custom: Record<string, unknown>;
  raw_payload: Record<string, unknown>;
}

async function leadsOf(clientId: string): Promise<LeadRow[]> {
  return await db()<LeadRow[]>`
    select id, client_id, source, external_ref, full_name, email, phone, product_id, owner_membership_id,
           duplicate_of, utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom, raw_payload
    from public.leads where client_id = ${clientId} order by created_at, id`;
}

async function lead(id: string): Promise<LeadRow> {
  const [row] = await db()<LeadRow[]>`
    select id, client_id, source, external_ref, full_name, email, phone, product_id, owner_membership_id,
           duplicate_of, utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom, raw_payload
    from public.leads where id = ${id}`;
  return row;
}

async function countLeads(clientId: string): Promise<number> {
  const [row] = await db()<
    { n: number }[]
  >`select count(*)::int as n from public.leads where client_id = ${clientId}`;
  return row.n;
}

/** A product in the global catalog, optionally enabled for a client. */
async function product(enableFor?: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    with industry as (insert into public.industries (name) values (${uniq("Industry")}) returning id),
    category as (insert into public.categories (industry_id, name) select id, ${
    uniq("Category")
  } from industry returning id)
    insert into public.products (category_id, name) select id, ${uniq("Product")} from category returning id`;
  if (enableFor) {
    await db()`insert into public.client_products (client_id, product_id) values (${enableFor}, ${row.id})`;
  }
  return row.id;
}

const email = () => `${uniq("lead")}@example.com`;

/** A batch's results as [outcome, each error as "path code"], after checking the batch was answered. */
function outcomes(batch: Reply): [string, string[] | undefined][] {
  assert.equal(batch.status, 200, JSON.stringify(batch.body));
  return batch.body.results.map((r: { outcome: string; errors?: { path: string; code: string }[] }) => [
    r.outcome,
    r.errors?.map((e) => `${e.path} ${e.code}`),
  ]);
}

// -- A single lead -------------------------------------------------------------------------------------

test("a single lead is stored with normalised contact details, custom fields and the raw payload", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const body = {
    first_name: "Ada",
    last_name: "Lovelace",
    email: "  Ada.Lovelace@Example.COM ",
    phone: "020 7946 0018",
    country: "gb",
    utm_source: "google",
    utm_medium: "cpc",
    utm_campaign: "spring",
    utm_term: "loans",
    utm_content: "banner-a",
    consent: true,
    custom: { budget: 5000 },
    message: "Call me after 5pm",
    page: { url: "https://www.example.com/contact" },
  };
  const before = Date.now();
  const reply = await ingest(key.secret, body);
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  assertTimeOrderedId(reply.body.lead_id, before, Date.now());
  assert.deepEqual(Object.keys(reply.body).sort(), ["duplicate_of", "lead_id", "outcome"]);
  assert.equal(reply.body.outcome, "created");
  assert.equal(reply.body.duplicate_of, null);
  assert.ok(reply.headers.get("x-request-id"));
  assert.equal(reply.headers.get("ratelimit-limit"), "100000");
  assert.equal(reply.headers.get("ratelimit-remaining"), "99999");
  assert.equal(reply.headers.get("access-control-allow-origin"), null, "no Origin, no CORS headers");

  const row = await lead(reply.body.lead_id);
  assert.equal(row.client_id, t.clientId);
  assert.equal(row.source, "website", "the key's default source");
  assert.equal(row.full_name, "Ada Lovelace", "first and last name joined");
  assert.equal(row.email, "ada.lovelace@example.com", "trimmed and lower-cased");
  assert.equal(row.phone, "+442079460018", "E.164");
  assert.equal(row.utm_source, "google");
  assert.equal(row.utm_medium, "cpc");
  assert.equal(row.utm_campaign, "spring");
  assert.equal(row.utm_term, "loans");
  assert.equal(row.utm_content, "banner-a");
  assert.equal(row.consent, true);
  assert.equal(row.external_ref, null);
  assert.deepEqual(row.custom, {
    budget: 5000,
    message: "Call me after 5pm",
    page: { url: "https://www.example.com/contact" },
  }, "unknown top-level fields join custom");
  assert.deepEqual(row.raw_payload, body, "the item exactly as sent");
  assert.equal(row.owner_membership_id, t.agents[0], "assigned to the client's agent");
});

test("null and empty strings count as absent; source and external_ref are honoured", async () => {
  const t = await tenant();
  const key = await apiKey(t, { default_source: "api" });
  const reply = await ingest(key.secret, {
    email: email(),
    phone: "",
    full_name: null,
    utm_source: "   ",
    country: null,
    source: "manual",
    external_ref: "form-123",
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  const row = await lead(reply.body.lead_id);
  assert.equal(row.phone, null);
  assert.equal(row.full_name, null);
  assert.equal(row.utm_source, null);
  assert.equal(row.source, "manual");
  assert.equal(row.external_ref, "form-123");
  assert.equal(row.consent, false);

  const defaulted = await ingest(key.secret, { phone: "+14155552671" });
  assert.equal((await lead(defaulted.body.lead_id)).source, "api", "the key's default_source");
});

test("every lead field is validated: 422 naming the field, and nothing is stored", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const ok = email();
  const cases: [Record<string, unknown>, string, string][] = [
    [{}, "email", "contact_required"],
    [{ full_name: "Nobody" }, "email", "contact_required"],
    [{ email: "not-an-email" }, "email", "invalid_format"],
    [{ email: 42 }, "email", "invalid_type"],
    [{ email: `${"x".repeat(310)}@example.com` }, "email", "too_big"],
    [{ phone: "12" }, "phone", "too_small"],
    [{ phone: "1".repeat(41) }, "phone", "too_big"],
    [{ phone: "12345" }, "phone", "invalid_phone"],
    [{ phone: "+44 20" }, "phone", "invalid_phone"],
    [{ phone: "555-2671", country: "US" }, "phone", "invalid_phone"],
    [{ phone: 4155552671 }, "phone", "invalid_type"],
    [{ email: ok, country: "GBR" }, "country", "invalid_format"],
    [{ email: ok, full_name: "x".repeat(201) }, "full_name", "too_big"],
    [{ email: ok, first_name: "x".repeat(101) }, "first_name", "too_big"],
    [{ email: ok, last_name: ["Smith"] }, "last_name", "invalid_type"],
    [{ email: ok, external_ref: "x".repeat(201) }, "external_ref", "too_big"],
    [{ email: ok, product_id: "widget" }, "product_id", "invalid_format"],
    [{ email: ok, utm_source: 5 }, "utm_source", "invalid_type"],
    [{ email: ok, utm_medium: "x".repeat(201) }, "utm_medium", "too_big"],
    [{ email: ok, utm_campaign: {} }, "utm_campaign", "invalid_type"],
    [{ email: ok, utm_term: true }, "utm_term", "invalid_type"],
    [{ email: ok, utm_content: "x".repeat(201) }, "utm_content", "too_big"],
    [{ email: ok, consent: "yes" }, "consent", "invalid_type"],
    [{ email: ok, custom: ["a"] }, "custom", "invalid_type"],
    [{ email: ok, custom: "notes" }, "custom", "invalid_type"],
    [{ email: ok, source: "meta" }, "source", "invalid_value"],
    [{ email: ok, source: "google_sheets" }, "source", "invalid_value"],
  ];
  for (const [body, path, code] of cases) {
    const reply = await ingest(key.secret, body);
    assertProblem(reply, 422, "validation_failed");
    assert.ok(
      reply.body.errors.some((e: { path: string; code: string }) => e.path === path && e.code === code),
      `${JSON.stringify(body).slice(0, 80)}: expected ${path}/${code} in ${
        JSON.stringify(reply.body.errors)
      }`,
    );
  }
  const both = await ingest(key.secret, { email: "bad", phone: "12345", consent: 1 });
  assertProblem(both, 422, "validation_failed");
  assert.deepEqual(both.body.errors.map((e: { path: string }) => e.path).sort(), ["consent", "email"]);
  assert.equal(await countLeads(t.clientId), 0);
});

test("phone numbers of several countries are normalised to E.164", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const cases: [string, string | undefined, string][] = [
    ["020 7946 0018", "GB", "+442079460018"],
    ["(415) 555-2671", "US", "+14155552671"],
    ["030 12345678", "de", "+493012345678"],
    ["98765 43210", "IN", "+919876543210"],
    ["06 12 34 56 78", "FR", "+33612345678"],
    ["(11) 96123-4567", "BR", "+5511961234567"],
    ["0412 345 678", "AU", "+61412345678"],
    ["090-1234-5678", "JP", "+819012345678"],
    ["+81 3-1234-5678", undefined, "+81312345678"],
    ["+1 415 555 2671", "GB", "+14155552671"],
  ];
  for (const [phone, country, expected] of cases) {
    const reply = await ingest(key.secret, { phone, ...(country ? { country } : {}) });
    assert.equal(reply.status, 201, `${phone} ${country}: ${JSON.stringify(reply.body)}`);
    assert.equal((await lead(reply.body.lead_id)).phone, expected, `${phone} (${country})`);
  }
});

test("the body must be JSON: 415 for other types, 400 when malformed, 413 above 5 MB, 422 for non-objects", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  assertProblem(
    await ingest(key.secret, "email=a@example.com", { "content-type": "application/x-www-form-urlencoded" }),
    415,
    "unsupported_media_type",
  );
  assertProblem(
    await ingest(key.secret, '{"email": "a@example.com"}', { "content-type": "text/plain" }),
    415,
  );
  const noType = await fetch(`${stack.url}/functions/v1/ingest/leads`, {
    method: "POST",
    headers: { "x-api-key": key.secret },
    body: new Blob(['{"email":"a@example.com"}']),
  });
  await noType.body?.cancel();
  assert.equal(noType.status, 415);
  assertProblem(await ingest(key.secret, '{"email": '), 400, "malformed_json");
  assertProblem(await ingest(key.secret, ""), 400, "malformed_json");
  assertProblem(
    await ingest(
      key.secret,
      JSON.stringify({ email: email(), custom: { blob: "x".repeat(5 * 1024 * 1024) } }),
    ),
    413,
    "payload_too_large",
  );
  // A chunked body declares no length; it is cut off while being read.
  const chunks = new ReadableStream<Uint8Array>({
    start(controller) {
      controller.enqueue(new TextEncoder().encode('{"email":"a@example.com","custom":{"blob":"'));
      for (let i = 0; i < 6; i++) controller.enqueue(new TextEncoder().encode("x".repeat(1024 * 1024)));
      controller.enqueue(new TextEncoder().encode('"}}'));
      controller.close();
    },
  });
  const chunked = await fetch(`${stack.url}/functions/v1/ingest/leads`, {
    method: "POST",
    headers: { "x-api-key": key.secret, "content-type": "application/json" },
    body: chunks,
  });
  assert.equal(chunked.status, 413);
  assert.equal((await chunked.json()).code, "payload_too_large");

  for (const body of ["[]", '"hello"', "42", "null", '[{"email":"a@example.com"}]']) {
    const reply = await ingest(key.secret, body);
    assertProblem(reply, 422, "validation_failed");
    assert.equal(reply.body.errors[0].code, "invalid_type");
  }
  assert.equal(await countLeads(t.clientId), 0);

  const get = await call(stack, "GET", "/ingest/leads", { headers: { "x-api-key": key.secret } });
  assertProblem(get, 405, "method_not_allowed");
  assert.equal(get.headers.get("allow"), "POST, OPTIONS");
});

test("a body of almost 5 MB is accepted (a full batch with long messages fits)", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const leads = Array.from({ length: 500 }, () => ({ email: email(), message: "m".repeat(9_500) }));
  const body = JSON.stringify({ leads });
  assert.ok(body.length > 4.5 * 1024 * 1024 && body.length < 5 * 1024 * 1024, `${body.length} bytes`);
  const reply = await ingest(key.secret, body);
  assert.equal(reply.status, 200, JSON.stringify(reply.body).slice(0, 300));
  assert.equal(reply.body.summary.created, 500);
  assert.equal(await countLeads(t.clientId), 500);
});

// -- Deduplication and idempotency --------------------------------------------------------------------

test("a lead with the email of an earlier lead is a duplicate linked to it, with the same owner", async () => {
  const t = await tenant(3);
  const key = await apiKey(t);
  const address = email();
  const first = await ingest(key.secret, { email: address, full_name: "First" });
  assert.equal(first.status, 201);
  const second = await ingest(key.secret, { email: address.toUpperCase(), phone: "+14155550100" });
  assert.equal(second.status, 201, JSON.stringify(second.body));
  assert.equal(second.body.outcome, "duplicate");
  assert.equal(second.body.duplicate_of, first.body.lead_id);
  assert.notEqual(second.body.lead_id, first.body.lead_id, "stored, not dropped");
  const [original, duplicate] = [await lead(first.body.lead_id), await lead(second.body.lead_id)];
  assert.equal(duplicate.duplicate_of, original.id);
  assert.equal(duplicate.owner_membership_id, original.owner_membership_id, "the original's owner");
  const [activity] = await db()`
    select data from public.lead_activities where lead_id = ${original.id} and kind = 'duplicate_received'`;
  assert.equal(activity.data.lead_id, duplicate.id, "the original's timeline records the duplicate");
});

test("a lead with the phone of an earlier lead, in another format, is a duplicate", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const first = await ingest(key.secret, { phone: "+44 20 7946 0018", email: email() });
  const second = await ingest(key.secret, { phone: "020 7946 0018", country: "GB" });
  assert.equal(second.status, 201);
  assert.equal(second.body.outcome, "duplicate");
  assert.equal(second.body.duplicate_of, first.body.lead_id);
  // Another client's lead with the same phone is not a duplicate across tenants.
  const other = await tenant();
  const otherKey = await apiKey(other);
  const third = await ingest(otherKey.secret, { phone: "+442079460018" });
  assert.equal(third.body.outcome, "created");
});

test("the same Idempotency-Key twice stores one lead; the second answer is 200 existing", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const idempotencyKey = crypto.randomUUID();
  const body = { email: email(), full_name: "Once" };
  const first = await ingest(key.secret, body, { "idempotency-key": idempotencyKey });
  assert.equal(first.status, 201);
  assert.equal(first.body.outcome, "created");
  const second = await ingest(key.secret, body, { "idempotency-key": idempotencyKey });
  assert.equal(second.status, 200);
  assert.deepEqual(second.body, { lead_id: first.body.lead_id, outcome: "existing", duplicate_of: null });
  const rows = await leadsOf(t.clientId);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].external_ref, idempotencyKey, "the key becomes external_ref");

  // An external_ref in the body wins over the header.
  const ownBody = { email: email(), external_ref: "sub-1" };
  const own = await ingest(key.secret, ownBody, { "idempotency-key": "ignored" });
  assert.equal((await lead(own.body.lead_id)).external_ref, "sub-1");
  const retry = await ingest(key.secret, ownBody);
  assert.equal(retry.status, 200, "external_ref alone is idempotent too");
  assert.equal(retry.body.lead_id, own.body.lead_id);

  for (const bad of ["x".repeat(151), "has\ttab"]) {
    const reply = await ingest(key.secret, { email: email() }, { "idempotency-key": bad });
    assertProblem(reply, 422, "validation_failed");
    assert.equal(reply.body.errors[0].path, "header.idempotency-key");
  }
  assert.equal(await countLeads(t.clientId), 2);
});

test("an Idempotency-Key or external_ref reused for a different lead is a 422 naming it, and stores nothing", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const idempotencyKey = crypto.randomUUID();
  const first = await ingest(key.secret, { email: email(), full_name: "First" }, {
    "idempotency-key": idempotencyKey,
  });
  assert.equal(first.status, 201);
  const other = await ingest(key.secret, { email: email(), full_name: "Second" }, {
    "idempotency-key": idempotencyKey,
  });
  assertProblem(other, 422, "validation_failed");
  assert.deepEqual(other.body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    ["header.idempotency-key", "idempotency_key_reused"],
  ], "IK-01: the header is named");

  await ingest(key.secret, { phone: "+14155550199", external_ref: "form-7" });
  const otherRef = await ingest(key.secret, { phone: "+14155550198", external_ref: "form-7" });
  assertProblem(otherRef, 422, "validation_failed");
  assert.deepEqual(otherRef.body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    ["external_ref", "external_ref_reused"],
  ], "IK-02: the body's external_ref is named");

  // A batch resent with one item changed: the others are existing, the changed one is refused on its own.
  const batchKey = crypto.randomUUID();
  const leads = [{ email: email() }, { email: email(), external_ref: "own-ref" }, { email: email() }];
  assert.equal((await ingest(key.secret, { leads }, { "idempotency-key": batchKey })).status, 200);
  const changed = [leads[0], { ...leads[1], full_name: "Changed" }, { email: email() }];
  const resent = await ingest(key.secret, { leads: changed }, { "idempotency-key": batchKey });
  assert.equal(resent.status, 200);
  assert.deepEqual(resent.body.summary, { created: 0, duplicate: 0, existing: 1, invalid: 2 });
  assert.deepEqual(
    resent.body.results.map((r: { outcome: string; errors?: { path: string; code: string }[] }) => [
      r.outcome,
      r.errors?.map((e) => [e.path, e.code]),
    ]),
    [
      ["existing", undefined],
      ["invalid", [["leads[1].external_ref", "external_ref_reused"]]],
      ["invalid", [["header.idempotency-key", "idempotency_key_reused"]]],
    ],
    "IK-03: each changed item is refused with its own reason",
  );

  // One batch naming one external_ref three times: the later items meet the first one's lead in the same call.
  const twice = { email: email(), external_ref: "in-batch" };
  const inBatch = await ingest(key.secret, { leads: [twice, twice, { ...twice, full_name: "Other" }] });
  assert.equal(inBatch.status, 200);
  const [stored, repeated, differing] = inBatch.body.results;
  assert.equal(stored.outcome, "created");
  assert.deepEqual([repeated.outcome, repeated.lead_id], ["existing", stored.lead_id]);
  assert.deepEqual(
    [differing.outcome, differing.errors.map((e: { path: string; code: string }) => [e.path, e.code])],
    ["invalid", [["leads[2].external_ref", "external_ref_reused"]]],
    "IK-04: within one call too",
  );
  assert.equal(await countLeads(t.clientId), 6, "nothing of the reused keys was stored");
});

test("10 concurrent requests with the same Idempotency-Key store exactly one lead", async () => {
  const t = await tenant(2);
  const key = await apiKey(t);
  const idempotencyKey = crypto.randomUUID();
  const body = { email: email(), phone: "+14155552671" };
  const replies = await Promise.all(
    Array.from({ length: 10 }, () => ingest(key.secret, body, { "idempotency-key": idempotencyKey })),
  );
  const statuses = replies.map((r) => r.status).sort();
  assert.deepEqual(
    statuses,
    [200, 200, 200, 200, 200, 200, 200, 200, 200, 201],
    JSON.stringify(replies[0].body),
  );
  const ids = new Set(replies.map((r) => r.body.lead_id));
  assert.equal(ids.size, 1, "every answer names the same lead");
  assert.equal(await countLeads(t.clientId), 1);
  assert.equal(replies.filter((r) => r.body.outcome === "created").length, 1);
});

test("a batch with an Idempotency-Key gives item i the external_ref <key>:<i>; resending stores nothing", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const idempotencyKey = crypto.randomUUID();
  const leads = [{ email: email() }, { email: email(), external_ref: "own-ref" }, { phone: "+14155550123" }];
  const first = await ingest(key.secret, { leads }, { "idempotency-key": idempotencyKey });
  assert.equal(first.status, 200);
  assert.deepEqual(first.body.summary, { created: 3, duplicate: 0, existing: 0, invalid: 0 });
  const refs = (await leadsOf(t.clientId)).map((l) => l.external_ref).sort();
  assert.deepEqual(refs, [`${idempotencyKey}:0`, `${idempotencyKey}:2`, "own-ref"].sort());

  const again = await ingest(key.secret, { leads }, { "idempotency-key": idempotencyKey });
  assert.equal(again.status, 200);
  assert.deepEqual(again.body.summary, { created: 0, duplicate: 0, existing: 3, invalid: 0 });
  assert.deepEqual(
    again.body.results.map((r: { lead_id: string }) => r.lead_id),
    first.body.results.map((r: { lead_id: string }) => r.lead_id),
  );
  assert.equal(await countLeads(t.clientId), 3);
});

// -- Keys ----------------------------------------------------------------------------------------------

test("missing, unknown, malformed, revoked, expired and wrong-scope keys are refused and store nothing", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const body = { email: email() };
  assertProblem(await ingest(undefined, body), 401, "missing_api_key");
  assertProblem(await ingest(undefined, body, { authorization: "Basic abc" }), 401, "missing_api_key");
  const anonJwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl";
  assertProblem(
    await ingest(undefined, body, { authorization: `Bearer ${anonJwt}` }),
    401,
    "missing_api_key",
  );
  assertProblem(await ingest("not-a-key", body), 401, "invalid_api_key");
  const forged = key.secret.slice(0, -4) + (key.secret.endsWith("AAAA") ? "BBBB" : "AAAA");
  assertProblem(await ingest(forged, body), 401, "invalid_api_key");
  assertProblem(await ingest(`lap_live_abcdefgh_${"x".repeat(43)}`, body), 401, "invalid_api_key");

  const revoked = await apiKey(t);
  await call(stack, "POST", `/api/clients/${t.clientId}/api-keys/${revoked.id}/revoke`, { token: t.token });
  assertProblem(await ingest(revoked.secret, body), 401, "api_key_revoked");

  const expired = await apiKey(t);
  await db()`update app.api_keys set expires_at = now() - interval '1 second' where id = ${expired.id}`;
  assertProblem(await ingest(expired.secret, body), 401, "api_key_expired");

  const batchOnly = await apiKey(t, { scopes: ["ingest:batch"] });
  const single = await ingest(batchOnly.secret, body);
  assertProblem(single, 403, "api_key_scope");
  assert.match(single.body.detail, /ingest:single/);
  const singleOnly = await apiKey(t, { scopes: ["ingest:single"] });
  const batch = await ingest(singleOnly.secret, { leads: [body] });
  assertProblem(batch, 403, "api_key_scope");
  assert.match(batch.body.detail, /ingest:batch/);

  // A bad key is refused before any validation detail is revealed.
  assertProblem(await ingest(revoked.secret, { email: "bad" }), 401, "api_key_revoked");
  assertProblem(await ingest(revoked.secret, { leads: Array(501).fill(body) }), 401, "api_key_revoked");
  assertProblem(await ingest(singleOnly.secret, { leads: "nope" }), 403, "api_key_scope");
  assert.equal(await countLeads(t.clientId), 0);

  const bearer = await call(stack, "POST", "/ingest/leads", {
    token: key.secret,
    body: { email: email() },
  });
  assert.equal(bearer.status, 201, "Authorization: Bearer <key> works too");
  assert.equal(await countLeads(t.clientId), 1);
});

test("a key of client B only ever writes into client B, whatever the body says", async () => {
  const a = await tenant();
  const b = await tenant();
  const bKey = await apiKey(b);
  const reply = await ingest(bKey.secret, { email: email(), client_id: a.clientId, clientId: a.clientId });
  assert.equal(reply.status, 201);
  const row = await lead(reply.body.lead_id);
  assert.equal(row.client_id, b.clientId, "the client comes from the key");
  assert.equal(row.custom.client_id, a.clientId, "a client_id in the body is just a custom field");
  const batch = await ingest(bKey.secret, { leads: [{ email: email(), client_id: a.clientId }] });
  assert.equal(batch.status, 200);
  assert.equal(await countLeads(a.clientId), 0, "nothing reached client A");
  assert.equal(await countLeads(b.clientId), 2);

  // A product enabled only for A is not usable by B's key either.
  const aProduct = await product(a.clientId);
  const cross = await ingest(bKey.secret, { email: email(), product_id: aProduct });
  assertProblem(cross, 422, "validation_failed");
  assert.equal(cross.body.errors[0].code, "product_not_enabled");
});

test("an inactive client's keys are refused with 403 client_inactive", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  await db()`update public.clients set status = 'inactive' where id = ${t.clientId}`;
  assertProblem(await ingest(key.secret, { email: email() }), 403, "client_inactive");
  assert.equal(await countLeads(t.clientId), 0);
});

test("a key's rate limit answers 429 with Retry-After and RateLimit headers", async () => {
  const t = await tenant();
  const key = await apiKey(t, { rate_limit_per_minute: 3 });
  // Stay inside one fixed one-minute window.
  const intoMinute = (Date.now() / 1000) % 60;
  if (intoMinute > 50) await new Promise((resolve) => setTimeout(resolve, (61 - intoMinute) * 1000));
  const remaining: (string | null)[] = [];
  for (let i = 0; i < 3; i++) {
    const reply = await ingest(key.secret, { email: email() });
    assert.equal(reply.status, 201);
    remaining.push(reply.headers.get("ratelimit-remaining"));
  }
  assert.deepEqual(remaining, ["2", "1", "0"]);
  const limited = await ingest(key.secret, { email: email() });
  assertProblem(limited, 429, "rate_limited");
  const retryAfter = Number(limited.headers.get("retry-after"));
  assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
  assert.equal(limited.headers.get("ratelimit-limit"), "3");
  assert.equal(limited.headers.get("ratelimit-remaining"), "0");
  assert.equal(limited.headers.get("ratelimit-reset"), String(retryAfter));
  assert.equal(await countLeads(t.clientId), 3);
  const other = await apiKey(t);
  assert.equal((await ingest(other.secret, { email: email() })).status, 201, "limits are per key");
});

// -- CORS ----------------------------------------------------------------------------------------------

test("a CORS preflight is allowed for an origin an active key lists, and refused for others", async () => {
  const t = await tenant();
  const origin = `https://${uniq("shop")}.example.com`;
  const revokedOrigin = `https://${uniq("old")}.example.com`;
  await apiKey(t, { allowed_origins: [origin] });
  const revoked = await apiKey(t, { allowed_origins: [revokedOrigin] });
  await call(stack, "POST", `/api/clients/${t.clientId}/api-keys/${revoked.id}/revoke`, { token: t.token });

  const preflight = (from: string) =>
    fetch(`${stack.url}/functions/v1/ingest/leads`, {
      method: "OPTIONS",
      headers: {
        origin: from,
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type, x-api-key, idempotency-key",
      },
    });
  const allowed = await preflight(origin);
  await allowed.body?.cancel();
  assert.equal(allowed.status, 204);
  assert.equal(allowed.headers.get("access-control-allow-origin"), origin);
  assert.equal(allowed.headers.get("access-control-allow-methods"), "POST");
  const allowHeaders = allowed.headers.get("access-control-allow-headers")!.split(/,\s*/);
  for (
    const header of [
      "content-type",
      "x-api-key",
      "idempotency-key",
      "authorization",
      "x-client-info",
      "apikey",
    ]
  ) {
    assert.ok(allowHeaders.includes(header), `${header} is allowed`);
  }
  assert.ok(Number(allowed.headers.get("access-control-max-age")) > 0);
  assert.match(allowed.headers.get("vary") ?? "", /origin/i);

  for (
    const refusedOrigin of ["https://evil.example.net", revokedOrigin, origin.toUpperCase(), `${origin}:8443`]
  ) {
    const refused = await preflight(refusedOrigin);
    assert.equal(refused.status, 403, refusedOrigin);
    assert.equal(refused.headers.get("access-control-allow-origin"), null, "no ACAO for a refused origin");
    assert.equal((await refused.json()).code, "origin_not_allowed");
  }
});

test("a browser POST carries CORS headers only when the key allows its origin", async () => {
  const t = await tenant();
  const origin = `https://${uniq("shop")}.example.com`;
  const key = await apiKey(t, { allowed_origins: [origin] });
  const serverOnly = await apiKey(t);

  const allowed = await ingest(key.secret, { email: email() }, { origin });
  assert.equal(allowed.status, 201);
  assert.equal(allowed.headers.get("access-control-allow-origin"), origin);
  assert.match(allowed.headers.get("access-control-expose-headers") ?? "", /x-request-id/);

  const refused = await ingest(key.secret, { email: email() }, { origin: "https://evil.example.net" });
  assertProblem(refused, 403, "origin_not_allowed");
  assert.equal(refused.headers.get("access-control-allow-origin"), null);

  const browserWithServerKey = await ingest(serverOnly.secret, { email: email() }, { origin });
  assertProblem(browserWithServerKey, 403, "origin_not_allowed");
  assert.equal(browserWithServerKey.headers.get("access-control-allow-origin"), null);

  const invalid = await ingest(key.secret, { email: "bad" }, { origin });
  assertProblem(invalid, 422, "validation_failed");
  assert.equal(invalid.headers.get("access-control-allow-origin"), origin, "the form can read its errors");

  const server = await ingest(key.secret, { email: email() });
  assert.equal(server.status, 201, "servers send no Origin and are not subject to CORS");
  assert.equal(server.headers.get("access-control-allow-origin"), null);
  assert.equal(await countLeads(t.clientId), 2);
});

// -- Batches -------------------------------------------------------------------------------------------

test("a batch reports every item's outcome, stores the good ones and drops nothing silently", async () => {
  const t = await tenant(2);
  const key = await apiKey(t);
  const enabled = await product(t.clientId);
  const disabled = await product();
  const shared = email();
  const leads = [
    { email: shared, full_name: "Good one" },
    { email: email(), phone: "12345" },
    { phone: "(415) 555-2671", country: "US", product_id: enabled },
    "not an object",
    { email: shared.toUpperCase(), note: "again" },
    { email: email(), product_id: disabled },
    { email: email(), consent: "yes", source: "meta" },
    null,
  ];
  const before = Date.now();
  const reply = await ingest(key.secret, { leads });
  const after = Date.now();
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const outcomes = reply.body.results.map((r: { outcome: string }) => r.outcome);
  assert.deepEqual(outcomes, [
    "created",
    "invalid",
    "created",
    "invalid",
    "duplicate",
    "invalid",
    "invalid",
    "invalid",
  ]);
  assert.deepEqual(reply.body.results.map((r: { index: number }) => r.index), [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(reply.body.summary, { created: 2, duplicate: 1, existing: 0, invalid: 5 });
  const [r0, r1, r2, r3, r4, r5, r6, r7] = reply.body.results;
  assert.equal(r4.duplicate_of, r0.lead_id, "duplicates within one batch are linked too");
  assert.deepEqual(r1.errors.map((e: { path: string }) => e.path), ["leads[1].phone"]);
  assert.equal(r1.lead_id, null);
  assert.deepEqual(r3.errors.map((e: { path: string }) => e.path), ["leads[3]"]);
  assert.deepEqual(r5.errors, [{
    path: "leads[5].product_id",
    code: "product_not_enabled",
    message: "This product is not enabled for the client",
  }]);
  assert.deepEqual(r6.errors.map((e: { path: string }) => e.path).sort(), [
    "leads[6].consent",
    "leads[6].source",
  ]);
  assert.deepEqual(r7.errors.map((e: { path: string }) => e.path), ["leads[7]"]);
  assert.equal(r0.errors, undefined);
  for (const result of [r0, r2, r4]) assertTimeOrderedId(result.lead_id, before, after);

  const rows = await leadsOf(t.clientId);
  assert.equal(rows.length, 3, "exactly the created and duplicate items are stored");
  assert.deepEqual(rows.map((r) => r.id).sort(), [r0.lead_id, r2.lead_id, r4.lead_id].sort());
  assert.equal((await lead(r2.lead_id)).product_id, enabled);
  assert.deepEqual((await lead(r4.lead_id)).raw_payload, leads[4]);
  assert.equal((await lead(r4.lead_id)).custom.note, "again");
});

test("a batch whose every item is invalid is a 422 listing each error", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const reply = await ingest(key.secret, { leads: [{ email: "x" }, {}, { phone: "1" }] });
  assertProblem(reply, 422, "validation_failed");
  assert.deepEqual(reply.body.errors.map((e: { path: string }) => e.path), [
    "leads[0].email",
    "leads[1].email",
    "leads[2].phone",
  ]);
  assert.equal(await countLeads(t.clientId), 0);
});

test("batch envelopes are validated: 1-500 leads, an array, no other fields", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const lead = () => ({ email: email() });
  const over = await ingest(key.secret, { leads: Array.from({ length: 501 }, lead) });
  assertProblem(over, 422, "validation_failed");
  assert.deepEqual(over.body.errors[0], {
    path: "leads",
    message: "Send between 1 and 500 leads (got 501)",
    code: "too_big",
  });
  const empty = await ingest(key.secret, { leads: [] });
  assertProblem(empty, 422);
  assert.equal(empty.body.errors[0].code, "too_small");
  const notArray = await ingest(key.secret, { leads: { email: email() } });
  assertProblem(notArray, 422);
  assert.equal(notArray.body.errors[0].path, "leads");
  const extra = await ingest(key.secret, { leads: [lead()], client_id: "other" });
  assertProblem(extra, 422);
  assert.equal(extra.body.errors[0].path, "client_id");
  assert.equal(await countLeads(t.clientId), 0);

  const full = await ingest(key.secret, { leads: Array.from({ length: 500 }, lead) });
  assert.equal(full.status, 200);
  assert.equal(full.body.summary.created, 500);
  assert.equal(await countLeads(t.clientId), 500);
});

test("concurrent batches and single leads sharing people in any order all succeed, one original each", async () => {
  const t = await tenant(3);
  const key = await apiKey(t);
  const people = Array.from(
    { length: 40 },
    (_, i) => ({ email: email(), phone: `+1415556${String(i).padStart(4, "0")}` }),
  );
  const shuffled = () => [...people].sort(() => Math.random() - 0.5);
  const [batches, singles] = await Promise.all([
    Promise.all(Array.from({ length: 6 }, () => ingest(key.secret, { leads: shuffled() }))),
    Promise.all(shuffled().map((person) => ingest(key.secret, person))),
  ]);
  for (const reply of [...batches, ...singles]) {
    assert.ok(reply.status === 200 || reply.status === 201, JSON.stringify(reply.body).slice(0, 300));
  }
  const outcomes = [
    ...batches.flatMap((r) => r.body.results.map((x: { outcome: string }) => x.outcome)),
    ...singles.map((r) => r.body.outcome),
  ];
  assert.equal(outcomes.filter((o) => o === "created").length, 40, "each person is created once");
  assert.equal(
    outcomes.filter((o) => o === "duplicate").length,
    240,
    "and linked as a duplicate the other times",
  );
  const rows = await leadsOf(t.clientId);
  assert.equal(rows.length, 280);
  const originals = rows.filter((r) => r.duplicate_of === null);
  assert.equal(originals.length, 40);
  assert.equal(new Set(originals.map((r) => r.email)).size, 40);
  const byId = new Map(rows.map((r) => [r.id, r]));
  for (const row of rows.filter((r) => r.duplicate_of !== null)) {
    assert.equal(byId.get(row.duplicate_of!)!.email, row.email, "linked to the same person's original");
  }
});

// -- Products ------------------------------------------------------------------------------------------

test("a product not enabled for the client makes the lead invalid; an enabled one is stored", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const enabled = await product(t.clientId);
  const notEnabled = await product();
  const refused = await ingest(key.secret, { email: email(), product_id: notEnabled });
  assertProblem(refused, 422, "validation_failed");
  assert.deepEqual(refused.body.errors, [{
    path: "product_id",
    code: "product_not_enabled",
    message: "This product is not enabled for the client",
  }]);
  const unknown = await ingest(key.secret, { email: email(), product_id: crypto.randomUUID() });
  assertProblem(unknown, 422);
  assert.equal(unknown.body.errors[0].code, "product_not_enabled");
  assert.equal(await countLeads(t.clientId), 0);

  const stored = await ingest(key.secret, { email: email(), product_id: enabled });
  assert.equal(stored.status, 201);
  assert.equal((await lead(stored.body.lead_id)).product_id, enabled);
});

// -- Assignment under load -----------------------------------------------------------------------------

test("1,000 concurrent single ingests: all stored, all assigned, exactly 250 to each available agent", async () => {
  const clientId = await createClient(uniq("load"));
  const owner = await createUser({ name: "Owner" });
  const ownerMembership = await addMember(clientId, owner.id, "owner");
  await addMember(clientId, (await createUser({ name: "Manager" })).id, "manager", ownerMembership);
  const agents: string[] = [];
  for (let i = 0; i < 4; i++) {
    agents.push(
      await addMember(clientId, (await createUser({ name: `Agent ${i}` })).id, "agent", ownerMembership),
    );
  }
  const disabledUser = await createUser({ name: "Disabled agent" });
  const disabled = await addMember(clientId, disabledUser.id, "agent", ownerMembership);
  await db()`update public.users set disabled_at = now() where id = ${disabledUser.id}`;
  const away = await addMember(
    clientId,
    (await createUser({ name: "Away agent" })).id,
    "agent",
    ownerMembership,
  );
  await db()`update public.memberships set available = false where id = ${away}`;
  const t: Tenant = { clientId, token: await sessionToken(owner, clientId), agents };
  const key = await apiKey(t, { rate_limit_per_minute: 1_000_000 });

  const total = 1000;
  const workers = 50;
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  let next = 0;
  const started = performance.now();
  await Promise.all(Array.from({ length: workers }, async () => {
    while (next < total) {
      const i = next++;
      const sentAt = performance.now();
      const reply = await ingest(key.secret, {
        full_name: `Load ${i}`,
        email: `load-${i}-${clientId}@example.com`,
        phone: `+1415555${String(i).padStart(4, "0")}`,
      });
      latencies.push(performance.now() - sentAt);
      statuses.set(reply.status, (statuses.get(reply.status) ?? 0) + 1);
      if (reply.status !== 201) {
        throw new Error(`request ${i}: ${reply.status} ${JSON.stringify(reply.body)}`);
      }
    }
  }));
  const elapsed = performance.now() - started;
  latencies.sort((x, y) => x - y);
  const percentile = (p: number) => Math.round(latencies[Math.floor((latencies.length - 1) * p)] * 10) / 10;
  console.log(JSON.stringify({
    ingest_load: {
      requests: total,
      workers,
      seconds: Math.round(elapsed) / 1000,
      requests_per_second: Math.round(total / (elapsed / 1000)),
      latency_ms: { p50: percentile(0.5), p95: percentile(0.95), p99: percentile(0.99), max: percentile(1) },
    },
  }));
  assert.deepEqual([...statuses], [[201, total]]);

  assert.equal(await countLeads(clientId), total, "every request stored exactly one lead");
  const perOwner = await db()<{ owner: string | null; n: number }[]>`
    select owner_membership_id as owner, count(*)::int as n from public.leads
    where client_id = ${clientId} group by 1`;
  const counts = Object.fromEntries(perOwner.map((row) => [String(row.owner), row.n]));
  assert.equal(counts["null"], undefined, "no lead is unassigned");
  for (const agent of agents) assert.equal(counts[agent], 250, `agent ${agent} gets exactly a quarter`);
  assert.equal(counts[disabled], undefined, "a disabled account gets none");
  assert.equal(counts[away], undefined, "an unavailable member gets none");
  assert.equal(perOwner.length, 4);
  const [dupes] = await db()`
    select count(*)::int as n from public.leads where client_id = ${clientId} and duplicate_of is not null`;
  assert.equal(dupes.n, 0);
});

test("supabase-js functions.invoke('ingest/leads') sends a lead with X-API-Key beside the anon key", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const config = loadConfig({ APP_ENV: "test" });
  const anonKey = await new SignJWT({ role: "anon", iss: "supabase" }).setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode(config.secrets.jwt_secret));
  const supabase = createSupabaseClient(stack.url, anonKey, {
    auth: { persistSession: false, autoRefreshToken: false },
  });
  const sent = await supabase.functions.invoke("ingest/leads", {
    body: { email: email(), full_name: "From supabase-js" },
    headers: { "x-api-key": key.secret, "idempotency-key": "sb-1" },
  });
  assert.equal(sent.error, null);
  assert.equal(sent.data.outcome, "created");
  assert.equal((await lead(sent.data.lead_id)).client_id, t.clientId);

  const anonOnly = await supabase.functions.invoke("ingest/leads", { body: { email: email() } });
  assert.equal(anonOnly.error?.name, "FunctionsHttpError");
  assert.equal((await anonOnly.error.context.json()).code, "missing_api_key", "the anon JWT is not a key");
});

// -- Cost and documentation ----------------------------------------------------------------------------

test("POST /ingest/leads costs one database statement for one lead, a batch of 100 and a refused key", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  let calls = 0;
  const sql = stack.sql;
  const counting = new Proxy(sql, {
    apply(target, thisArg, args) {
      calls++;
      return Reflect.apply(target, thisArg, args);
    },
  });
  const app = createIngestApp({
    config: loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl() }),
    sql: counting,
  });
  const post = (body: unknown) =>
    app.request("/ingest/leads", {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key.secret },
      body: JSON.stringify(body),
    });
  const single = await post({ email: email() });
  assert.equal(single.status, 201);
  assert.equal(calls, 1);
  calls = 0;
  const batch = await post({ leads: Array.from({ length: 100 }, () => ({ email: email() })) });
  assert.equal(batch.status, 200);
  assert.equal(calls, 1);
  calls = 0;
  const invalid = await post({ email: "bad" });
  assert.equal(invalid.status, 422);
  assert.equal(calls, 1, "the key is still checked and counted");
  calls = 0;
  await call(stack, "POST", `/api/clients/${t.clientId}/api-keys/${key.id}/revoke`, { token: t.token });
  const refused = await post({ email: email() });
  assert.equal(refused.status, 401);
  assert.equal(calls, 1, "a request its key refuses stores nothing");
  assert.equal(await countLeads(t.clientId), 101);
});

// -- Grouped calls -------------------------------------------------------------------------------------

/** One lead's outcome, as a single request's reply or a batch's item gives it. */
interface ItemReply {
  outcome: string;
  lead_id: string;
  duplicate_of: string | null;
}

/** An ingest app with its own queue over a pool whose calls are counted (and can be made to fail). */
function groupingApp(
  options: { maxCalls: number; failWhen?: (param: string) => boolean; holdUntil?: Promise<void> },
) {
  const sql = stack.sql;
  const counter = { calls: 0 };
  const counting = new Proxy(sql, {
    apply(target, thisArg, args) {
      counter.calls++;
      const param = JSON.stringify(args.slice(1).map((arg) => (arg as { value?: unknown })?.value ?? arg));
      if (options.failWhen?.(param)) {
        return Promise.reject(Object.assign(new Error("simulated database failure"), { code: "XX000" }));
      }
      // A call carrying "hold" waits for the test, so the requests sent meanwhile queue up behind it.
      if (options.holdUntil && param.includes("hold")) {
        return options.holdUntil.then(() => Reflect.apply(target, thisArg, args));
      }
      return Reflect.apply(target, thisArg, args);
    },
  });
  const app = createIngestApp(
    { config: loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl() }), sql: counting },
    { maxCalls: options.maxCalls, maxItems: 500, overlapItems: 1 },
  );
  const post = async (key: string, body: unknown) => {
    const response = await app.request("/ingest/leads", {
      method: "POST",
      headers: { "content-type": "application/json", "x-api-key": key },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      body: await response.json(),
      remaining: response.headers.get("ratelimit-remaining"),
      retryAfter: response.headers.get("retry-after"),
    };
  };
  return { post, counter };
}

test("requests that wait for a busy database share one call, each with its own outcome and errors", async () => {
  const a = await tenant(2);
  const b = await tenant(1);
  const aKey = await apiKey(a);
  const bKey = await apiKey(b);
  const revoked = await apiKey(a);
  await call(stack, "POST", `/api/clients/${a.clientId}/api-keys/${revoked.id}/revoke`, { token: a.token });
  const singleOnly = await apiKey(b, { scopes: ["ingest:single"] });
  const { post, counter } = groupingApp({ maxCalls: 1 });
  const shared = email();
  const [first, ...rest] = await Promise.all([
    post(aKey.secret, { email: email() }),
    post(aKey.secret, { email: shared }),
    post(bKey.secret, { email: shared }),
    post(aKey.secret, { email: shared.toUpperCase(), full_name: "Again" }),
    post(aKey.secret, { email: email(), phone: "12" }),
    post(revoked.secret, { email: email() }),
    post(singleOnly.secret, { leads: [{ email: email() }] }),
    post(bKey.secret, { leads: [{ email: email() }, { email: "bad" }, { email: shared }] }),
    post(aKey.secret, { email: email(), product_id: crypto.randomUUID() }),
  ]);
  const [aShared, bShared, aAgain, badPhone, revokedReply, wrongScope, bBatch, badProduct] = rest;
  assert.ok(counter.calls < 9, `9 requests took ${counter.calls} database calls`);
  assert.equal(first.status, 201);
  // Concurrent requests reach the queue in no promised order (each awaits its own parsing and key hash), so
  // of two requests carrying one person the original is whichever the database saw first; the other is its
  // duplicate, and only within the same client.
  const pair = (x: ItemReply, y: ItemReply) => {
    assert.deepEqual([x.outcome, y.outcome].sort(), ["created", "duplicate"], JSON.stringify([x, y]));
    const [original, repeat] = x.outcome === "created" ? [x, y] : [y, x];
    assert.equal(repeat.duplicate_of, original.lead_id);
    return original.lead_id;
  };
  assert.equal(aShared.status, 201);
  assert.equal(aAgain.status, 201);
  const aOriginal = pair(aShared.body, aAgain.body);
  assert.equal(bShared.status, 201);
  assert.equal(bBatch.status, 200);
  assert.deepEqual(bBatch.body.results.slice(0, 2).map((r: { outcome: string }) => r.outcome), [
    "created",
    "invalid",
  ]);
  const bOriginal = pair(bShared.body, bBatch.body.results[2]);
  assert.notEqual(bOriginal, aOriginal, "the same person in another client is a lead of that client");
  assert.equal(badPhone.status, 422);
  assert.equal(badPhone.body.errors[0].path, "phone");
  assert.equal(revokedReply.status, 401);
  assert.equal(revokedReply.body.code, "api_key_revoked");
  assert.equal(wrongScope.status, 403);
  assert.equal(wrongScope.body.code, "api_key_scope");
  assert.equal(badProduct.status, 422);
  assert.equal(badProduct.body.errors[0].code, "product_not_enabled");
  assert.equal(await countLeads(a.clientId), 3);
  assert.equal(await countLeads(b.clientId), 3);
  const owners = (await leadsOf(a.clientId)).map((row) => row.owner_membership_id);
  assert.ok(owners.every((owner) => owner !== null && a.agents.includes(owner)), "every lead is assigned");
});

test("a database error in one grouped request fails only that request; the others are stored", async () => {
  const t = await tenant(1);
  const key = await apiKey(t);
  const { post, counter } = groupingApp({ maxCalls: 1, failWhen: (param) => param.includes("poison") });
  const replies = await Promise.all([
    post(key.secret, { email: email() }),
    post(key.secret, { email: email() }),
    post(key.secret, { email: `poison-${uniq("x")}@example.com` }),
    post(key.secret, { email: email() }),
    post(key.secret, { leads: [{ email: email() }, { email: email() }] }),
  ]);
  assert.deepEqual(replies.map((reply) => reply.status), [201, 201, 500, 201, 200]);
  assert.equal(replies[2].body.code, "internal_error", JSON.stringify(replies[2].body));
  assert.ok(!JSON.stringify(replies[2].body).includes("simulated"), "the database error is not echoed");
  assert.ok(counter.calls > 2, "the failed group was sent again one request at a time");
  assert.equal(await countLeads(t.clientId), 5);
});

test("a request sent again alone after its group failed is not counted against its key again", async () => {
  const t = await tenant(1);
  const key = await apiKey(t, { rate_limit_per_minute: 100 });
  const intoMinute = (Date.now() / 1000) % 60;
  if (intoMinute > 55) await new Promise((resolve) => setTimeout(resolve, (61 - intoMinute) * 1000));
  let release = () => {};
  const holdUntil = new Promise<void>((resolve) => release = resolve);
  const { post, counter } = groupingApp({
    maxCalls: 1,
    failWhen: (param) => param.includes("poison"),
    holdUntil,
  });
  // The first request's call is held, so the next four wait and leave as one group.
  const first = post(key.secret, { email: `hold-${uniq("x")}@example.com` });
  while (counter.calls < 1) await new Promise((resolve) => setTimeout(resolve, 1));
  const rest = [
    post(key.secret, { email: email() }),
    post(key.secret, { email: `poison-${uniq("x")}@example.com` }),
    post(key.secret, { email: email() }),
    post(key.secret, { email: email() }),
  ];
  await new Promise((resolve) => setTimeout(resolve, 100));
  release();
  const replies = await Promise.all([first, ...rest]);
  assert.deepEqual(replies.map((reply) => reply.status), [201, 201, 500, 201, 201]);
  // The held request's call, the group's failed call, then four calls alone.
  assert.equal(counter.calls, 6, "the group failed and its requests were stored alone");
  const [{ hits }] = await stack.sql<{ hits: number }[]>`
    select hits from app.rate_limits where key = ${"key:" + key.id}`;
  // A failed call's counts roll back with it, so the request whose own call failed is not counted at all.
  assert.equal(hits, 4, "each stored request counts once, however often it reached the database");
});

test("a grouped call that waits past the lock timeout answers each request 503 lock_timeout, once", async () => {
  const t = await tenant(1);
  const key = await apiKey(t);
  const other = await apiKey(await tenant(1));
  assert.equal((await ingest(key.secret, { email: email() })).status, 201, "the key's counter row exists");
  // Another transaction holds the key's rate-limit counter, as a stuck call or an operator's lock would.
  const holder = await stack.sql.reserve();
  await holder`begin`;
  await holder`select 1 from app.rate_limits where key = ${"key:" + key.id} for update`;
  try {
    let release = () => {};
    const holdUntil = new Promise<void>((resolve) => release = resolve);
    const { post, counter } = groupingApp({ maxCalls: 1, holdUntil });
    // Another client's request is held before the database, so the next three wait and leave as one group.
    const first = post(other.secret, { email: `hold-${uniq("x")}@example.com` });
    while (counter.calls < 1) await new Promise((resolve) => setTimeout(resolve, 1));
    const group = [
      post(key.secret, { email: email() }),
      post(key.secret, { leads: [{ email: email() }, { email: email() }] }),
      post(key.secret, { email: email() }),
    ];
    await new Promise((resolve) => setTimeout(resolve, 100));
    release();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const stuck = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("LT-00: the calls still wait after 20 s")), 20_000);
    });
    const replies = await Promise.race([Promise.all([first, ...group]), stuck]).finally(() =>
      clearTimeout(timer)
    );
    assert.deepEqual(
      replies.map((reply) => reply.status),
      [201, 503, 503, 503],
      "LT-01: the held key's group",
    );
    for (const reply of replies.slice(1)) {
      assert.equal(reply.body.code, "lock_timeout", "LT-02: the reason, for each request");
      assert.equal(reply.retryAfter, "5", "LT-03: and when to send it again");
    }
    assert.equal(counter.calls, 2, "LT-04: the group's call was not repeated request by request");
    assert.equal(await countLeads(t.clientId), 1, "LT-05: the call rolled back; nothing of it is stored");
  } finally {
    await holder`rollback`;
    holder.release();
  }
  assert.equal((await ingest(key.secret, { email: email() })).status, 201, "LT-06: once the lock is gone");
});

test("text PostgreSQL cannot store (NUL, an unpaired surrogate) is refused per item with 422, not a failed call", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const single = await ingest(key.secret, { email: email(), message: "a\u0000b" });
  assertProblem(single, 422, "validation_failed");
  assert.deepEqual(single.body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    ["message", "invalid_string"],
  ]);
  // JSON.stringify writes an unpaired surrogate as an escape such as "\ud800", which jsonb refuses.
  const batch = await ingest(key.secret, {
    leads: [
      { email: email(), full_name: "x\u0000" },
      { email: email(), note: "a literal \\u0000 is fine" },
      { email: email(), custom: { note: "half an emoji \ud83d" } },
      { email: email(), "\udc00": "a key" },
      { email: email(), full_name: "A whole emoji \ud83d\ude00" },
    ],
  });
  assert.equal(batch.status, 200, JSON.stringify(batch.body));
  assert.deepEqual(batch.body.results.map((r: { outcome: string }) => r.outcome), [
    "invalid",
    "created",
    "invalid",
    "invalid",
    "created",
  ]);
  assert.deepEqual(
    batch.body.results.flatMap((r: { errors?: { path: string; code: string }[] }) =>
      (r.errors ?? []).map((e) => [e.path, e.code])
    ),
    [
      ["leads[0].full_name", "invalid_string"],
      ["leads[2].custom.note", "invalid_string"],
      ["leads[3].\udc00", "invalid_string"],
    ],
  );
  const [stored] = await leadsOf(t.clientId).then((rows) =>
    rows.filter((row) => row.full_name?.startsWith("A whole"))
  );
  assert.equal(stored.full_name, "A whole emoji \u{1f600}");
});

test("JSON nested deeper than 64 levels is refused per item with 422 too_deep, not a failed call", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  // 20,000 levels is past what PostgreSQL's jsonb parser can take (stack depth limit exceeded).
  const single = await ingest(key.secret, `{"email": "${email()}", "custom": {"tree": ${nested(20_000)}}}`);
  assertProblem(single, 422, "validation_failed");
  assert.deepEqual(single.body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    [["custom", "tree", ...Array(62).fill("0")].join("."), "too_deep"],
  ]);
  const batch = await ingest(key.secret, {
    leads: [
      // The lead, custom and the 62 arrays: 64 levels.
      { email: email(), custom: { tree: JSON.parse(nested(62)) } },
      { email: email(), custom: { tree: JSON.parse(nested(63)) } },
      { email: email(), full_name: "Shallow" },
    ],
  });
  assert.equal(batch.status, 200, JSON.stringify(batch.body));
  assert.deepEqual(batch.body.results.map((r: { outcome: string }) => r.outcome), [
    "created",
    "invalid",
    "created",
  ]);
  assert.equal(batch.body.results[1].errors[0].code, "too_deep");
  assert.equal(await countLeads(t.clientId), 2);
});

test("a key named __proto__ is refused per item with 422 reserved_key, not silently dropped", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  // Text: in a JavaScript object literal "__proto__" sets the prototype and never reaches JSON.
  const batch = await ingest(
    key.secret,
    `{"leads": [{"email": "${email()}", "custom": {"__proto__": {"plan": "pro"}}},
                {"email": "${email()}", "__proto__": "an extra field"},
                {"email": "${email()}", "custom": {"proto": 1}}]}`,
  );
  assert.deepEqual(
    outcomes(batch),
    [
      ["invalid", ["leads[0].custom.__proto__ reserved_key"]],
      ["invalid", ["leads[1].__proto__ reserved_key"]],
      ["created", undefined],
    ],
  );
});

test("a number too large for a double (1e400) is refused per item with 422, not stored as null", async () => {
  const t = await tenant();
  const key = await apiKey(t);
  const batch = await ingest(
    key.secret,
    `{"leads": [{"email": "${email()}", "custom": {"budget": 1e400}}, {"email": "${email()}", "seats": -1e999},
                {"email": "${email()}", "custom": {"budget": 1e300}}]}`,
  );
  assert.deepEqual(
    outcomes(batch),
    [
      ["invalid", ["leads[0].custom.budget number_out_of_range"]],
      ["invalid", ["leads[1].seats number_out_of_range"]],
      ["created", undefined],
    ],
  );
  const [stored] = await leadsOf(t.clientId);
  assert.deepEqual(stored.custom, { budget: 1e300 });
});

test("a key's rate limit counts grouped requests one by one: exactly the limit is stored", async () => {
  const t = await tenant();
  const key = await apiKey(t, { rate_limit_per_minute: 4 });
  const intoMinute = (Date.now() / 1000) % 60;
  if (intoMinute > 50) await new Promise((resolve) => setTimeout(resolve, (61 - intoMinute) * 1000));
  const { post } = groupingApp({ maxCalls: 1 });
  const replies = await Promise.all(Array.from({ length: 7 }, () => post(key.secret, { email: email() })));
  const statuses = replies.map((reply) => reply.status).sort();
  assert.deepEqual(statuses, [201, 201, 201, 201, 429, 429, 429]);
  assert.equal(await countLeads(t.clientId), 4);
});

test("a key's rate limit holds exactly across concurrent calls and function instances", async () => {
  const t = await tenant();
  const key = await apiKey(t, { rate_limit_per_minute: 4 });
  const intoMinute = (Date.now() / 1000) % 60;
  if (intoMinute > 50) await new Promise((resolve) => setTimeout(resolve, (61 - intoMinute) * 1000));
  // Two instances of the function, each with several calls in flight at once.
  const instances = [groupingApp({ maxCalls: 4 }), groupingApp({ maxCalls: 4 })];
  const replies = await Promise.all(
    Array.from({ length: 24 }, (_, i) => instances[i % 2].post(key.secret, { email: email() })),
  );
  const statuses = replies.map((reply) => reply.status);
  assert.equal(statuses.filter((status) => status === 201).length, 4, JSON.stringify(statuses));
  assert.equal(statuses.filter((status) => status === 429).length, 20);
  assert.equal(await countLeads(t.clientId), 4);
  const remaining = replies.filter((reply) => reply.status === 201).map((reply) => reply.remaining).sort();
  assert.deepEqual(remaining, ["0", "1", "2", "3"], "each accepted request saw its own place in the window");
});

test("GET /ingest/openapi.json documents POST /ingest/leads with the API key scheme", async () => {
  const reply = await call(stack, "GET", "/ingest/openapi.json");
  assert.equal(reply.status, 200);
  const post = reply.body.paths["/ingest/leads"].post;
  assert.deepEqual(post.security, [{ apiKey: [] }]);
  for (const status of ["200", "201", "401", "403", "413", "415", "422", "429"]) {
    assert.ok(post.responses[status], `documents ${status}`);
  }
  assert.equal(reply.body.components.securitySchemes.apiKey.name, "X-API-Key");
});
