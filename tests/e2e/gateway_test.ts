import assert from "node:assert/strict";
import { createApiApp } from "../../functions/api/app.ts";
import { createAuthApp } from "../../functions/auth/app.ts";
import { createIngestApp } from "../../functions/ingest/app.ts";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createDb } from "../../functions/_shared/db.ts";
import { call, createTeam, login, startStack, test, testDatabaseUrl } from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "1000" });
const team = await createTeam();
const owner = await login(stack, team.users.owner.email);

test("GET /api/health reports the database as reachable", async () => {
  const reply = await call(stack, "GET", "/api/health");
  assert.equal(reply.status, 200);
  assert.deepEqual(reply.body, { status: "ok", database: "ok" });
  assert.ok(reply.headers.get("x-request-id"), "every response carries a request id");
});

test("GET /api/openapi.json documents every route with its permission", async () => {
  const reply = await call(stack, "GET", "/api/openapi.json");
  assert.equal(reply.status, 200);
  assert.equal(reply.body.openapi, "3.1.0");
  const patch = reply.body.paths["/api/clients/{clientId}"].patch;
  assert.equal(patch["x-permission"], "clients.update");
  assert.ok(reply.body.paths["/api/clients/{clientId}/members"].post.requestBody);
  const shortcut = await fetch(`${stack.url}/openapi.json`).then((r) => r.json());
  assert.deepEqual(
    Object.keys(shortcut.paths),
    Object.keys(reply.body.paths),
    "/openapi.json is the same document",
  );
});

test("GET /docs redirects to interactive docs that load both OpenAPI documents", async () => {
  const redirect = await fetch(`${stack.url}/docs`, { redirect: "manual" });
  await redirect.body?.cancel();
  assert.equal(redirect.status, 302);
  const page = await fetch(new URL(redirect.headers.get("location")!, stack.url));
  assert.equal(page.status, 200);
  const html = await page.text();
  assert.match(html, /swagger-ui/);
  assert.match(html, /openapi\.json/);
});

test("authenticated routes refuse a missing token with 401 problem+json", async () => {
  const reply = await call(stack, "GET", "/api/clients");
  assert.equal(reply.status, 401);
  assert.equal(reply.headers.get("content-type"), "application/problem+json");
  assert.equal(reply.body.code, "missing_token");
  assert.equal(reply.body.status, 401);
  assert.ok(reply.body.request_id);
});

test("malformed JSON is a 400 malformed_json", async () => {
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: "{oops",
  });
  assert.equal(reply.status, 400);
  assert.equal(reply.body.code, "malformed_json");
});

test("a body that is not application/json is a 415", async () => {
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: "name=x",
    headers: { "content-type": "application/x-www-form-urlencoded" },
  });
  assert.equal(reply.status, 415);
  assert.equal(reply.body.code, "unsupported_media_type");
});

test("a +json type the body validator cannot read (a+b+json) is a 415 unsupported_media_type; vnd.api+json is read", async () => {
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: { name: "Renamed by a+b+json" },
    headers: { "content-type": "application/a+b+json" },
  });
  assert.equal(reply.status, 415, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "unsupported_media_type");
  const vendorType = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: { name: "Renamed by vnd.api+json" },
    headers: { "content-type": "application/vnd.api+json; charset=utf-8" },
  });
  assert.equal(vendorType.status, 200, JSON.stringify(vendorType.body));
  assert.equal(vendorType.body.name, "Renamed by vnd.api+json");
});

test("an oversized body is a 413 before it is read", async () => {
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: { name: "x".repeat(1_100_000) },
  });
  assert.equal(reply.status, 413);
  assert.equal(reply.body.code, "payload_too_large");
});

test("unknown fields are a 422 naming each field", async () => {
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token: owner.access_token,
    body: { name: "Renamed", id: "new-id", colour: "red" },
  });
  assert.equal(reply.status, 422);
  assert.equal(reply.body.code, "validation_failed");
  const paths = reply.body.errors.map((e: { path: string }) => e.path).sort();
  assert.deepEqual(paths, ["body.colour", "body.id"]);
});

test("a bad query parameter is a 422 naming it", async () => {
  const reply = await call(stack, "GET", "/api/clients?limit=0", { token: owner.access_token });
  assert.equal(reply.status, 422);
  assert.equal(reply.body.errors[0].path, "query.limit");
  const cursor = await call(stack, "GET", "/api/clients?cursor=not-a-cursor", { token: owner.access_token });
  assert.equal(cursor.status, 422);
  assert.equal(cursor.body.errors[0].code, "invalid_cursor");
});

test("an unknown route is a 404 problem, an unknown function too", async () => {
  const route = await call(stack, "GET", "/api/nothing-here", { token: owner.access_token });
  assert.equal(route.status, 404);
  assert.equal(route.body.code, "route_not_found");
  const fn = await call(stack, "GET", "/nope/health");
  assert.equal(fn.status, 404);
  assert.equal(fn.body.code, "function_not_found");
});

test("CORS preflight is answered with the allowed headers", async () => {
  const response = await fetch(`${stack.url}/functions/v1/api/clients`, {
    method: "OPTIONS",
    headers: {
      origin: "https://app.example.com",
      "access-control-request-method": "POST",
      "access-control-request-headers": "authorization, content-type",
    },
  });
  await response.body?.cancel();
  assert.equal(response.status, 204);
  assert.equal(response.headers.get("access-control-allow-origin"), "*");
  assert.match(response.headers.get("access-control-allow-headers") ?? "", /authorization/);
});

test("the caller's request id is echoed back", async () => {
  const reply = await call(stack, "GET", "/api/health", { headers: { "x-request-id": "trace-123" } });
  assert.equal(reply.headers.get("x-request-id"), "trace-123");
});

test("the per-user rate limit answers 429 with Retry-After and RateLimit headers", async () => {
  const limited = startStack({ RATE_LIMIT_PER_USER: "3" });
  try {
    const statuses: number[] = [];
    let last;
    for (let i = 0; i < 5; i++) {
      last = await call(limited, "GET", "/api/clients", { token: owner.access_token });
      statuses.push(last.status);
    }
    assert.deepEqual(statuses.slice(-2), [429, 429], `statuses were ${statuses}`);
    assert.equal(last!.body.code, "rate_limited");
    const retryAfter = Number(last!.headers.get("retry-after"));
    assert.ok(retryAfter >= 1 && retryAfter <= 60, `Retry-After ${retryAfter}`);
    assert.equal(last!.headers.get("ratelimit-remaining"), "0");
  } finally {
    await limited.close();
  }
});

test("the per-IP rate limit applies before authentication", async () => {
  const limited = startStack({ RATE_LIMIT_PER_IP: "2" });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await call(limited, "GET", "/api/clients")).status);
    // Without a token the answer would be 401; a 429 proves the IP bucket is counted first.
    assert.ok(statuses.filter((s) => s === 429).length >= 2, `statuses were ${statuses}`);
    // The local stack takes the address from the socket: a forged X-Forwarded-For opens no new bucket.
    const forged = await call(limited, "GET", "/api/clients", {
      headers: {
        "x-forwarded-for": `2001:db8::${crypto.randomUUID().slice(0, 4)}:${crypto.randomUUID().slice(0, 4)}`,
      },
    });
    assert.equal(
      forged.status,
      429,
      "GW-01: a forged X-Forwarded-For does not escape the local stack's limit",
    );
  } finally {
    await limited.close();
  }
});

test("a function served alone, as Supabase deploys it, routes without /functions/v1 and limits by X-Forwarded-For", async () => {
  const config = loadConfig({ APP_ENV: "test", DATABASE_URL: testDatabaseUrl(), RATE_LIMIT_PER_IP: "2" });
  const sql = createDb(testDatabaseUrl(), { max: 2 });
  try {
    const api = createApiApp({ config, sql });
    const from = (address: string) =>
      api.fetch(
        new Request("http://functions.local/api/clients", { headers: { "x-forwarded-for": address } }),
      );
    const address = `2001:db8::${crypto.randomUUID().slice(0, 4)}:${crypto.randomUUID().slice(0, 4)}`;
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) statuses.push((await from(`${address}, 10.0.0.1`)).status);
    assert.deepEqual(
      statuses,
      [401, 401, 429],
      "GW-02: the path routes, and the first forwarded hop is counted",
    );
    const other = await from(
      `2001:db8::${crypto.randomUUID().slice(0, 4)}:${crypto.randomUUID().slice(0, 4)}`,
    );
    assert.equal(other.status, 401, "GW-03: another client address has its own bucket");
    await other.body?.cancel();
  } finally {
    await sql.end();
  }
});

test("with the database unreachable, the API, auth and ingest answer 503 database_unavailable with Retry-After", async () => {
  // Port 1 on this machine accepts no connection: every query fails with ECONNREFUSED.
  const url = "postgres://postgres@127.0.0.1:1/nowhere";
  const config = loadConfig({ APP_ENV: "test", DATABASE_URL: url });
  const sql = createDb(url, { max: 1 });
  try {
    const json = { "content-type": "application/json" };
    const apiKey = `lap_live_abcdefgh_${"k".repeat(43)}`;
    const requests: [string, (request: Request) => Response | Promise<Response>, Request][] = [
      [
        "GET /api/clients",
        createApiApp({ config, sql }).fetch,
        new Request("http://functions.local/api/clients"),
      ],
      [
        "POST /auth/login",
        createAuthApp({ config, sql }).fetch,
        new Request("http://functions.local/auth/login", {
          method: "POST",
          headers: json,
          body: JSON.stringify({ email: "nobody@example.com", password: "correct horse battery" }),
        }),
      ],
      [
        "POST /ingest/leads",
        createIngestApp({ config, sql }).fetch,
        new Request("http://functions.local/ingest/leads", {
          method: "POST",
          headers: { ...json, "x-api-key": apiKey },
          body: JSON.stringify({ full_name: "Una Reachable", email: "una@example.com" }),
        }),
      ],
    ];
    for (const [name, fetch, request] of requests) {
      const response = await fetch(request);
      const body = await response.json();
      assert.deepEqual(
        { status: response.status, retryAfter: response.headers.get("retry-after"), code: body.code },
        { status: 503, retryAfter: "5", code: "database_unavailable" },
        `GW-04: ${name}`,
      );
      assert.equal(body.detail, "The database is unreachable; retry shortly", `${name} names no address`);
    }
  } finally {
    await sql.end();
  }
});
