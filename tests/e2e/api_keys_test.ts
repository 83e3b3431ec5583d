/**
 * The API key service over HTTP: creating a key shows its secret exactly once and stores only its SHA-256,
 * lists never reveal secrets or hashes, revocation and expiry stop the key at once, rotation keeps the old
 * key alive for its grace period only, and only members with api_keys.manage in the key's own client can do
 * any of it.
 */
import assert from "node:assert/strict";
import { hashToken } from "../../functions/_shared/auth.ts";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import { assertProblem, call, db, startStack, teamWithTokens, test, uniq } from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

const KEY_FORMAT = /^lap_(live|test)_([a-z2-7]{8})_([A-Za-z0-9_-]{43})$/;

type Team = Awaited<ReturnType<typeof teamWithTokens>>;

const keysPath = (clientId: string) => `/api/clients/${clientId}/api-keys`;
const keyPath = (clientId: string, keyId: string, action: "revoke" | "rotate") =>
  `/api/clients/${clientId}/api-keys/${keyId}/${action}`;

async function createKey(team: Team, body: Record<string, unknown> = {}, token = team.tokens.owner) {
  const reply = await call(stack, "POST", keysPath(team.clientId), {
    token,
    body: { name: "Website form", ...body },
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  return reply.body;
}

/** Sends one lead with a key; returns the reply. */
function ingest(key: string, body: Record<string, unknown> = { email: `${uniq("lead")}@example.com` }) {
  return call(stack, "POST", "/ingest/leads", { headers: { "x-api-key": key }, body });
}

async function keyRow(id: string) {
  const [row] = await db()<
    {
      key_hash: Uint8Array;
      prefix: string;
      expires_at: string | null;
      revoked_at: string | null;
      replaced_by: string | null;
      last_used_at: string | null;
    }[]
  >`select key_hash, prefix, expires_at, revoked_at, replaced_by, last_used_at from app.api_keys where id = ${id}`;
  return row;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// -- Creating and listing -------------------------------------------------------------------------------

test("api_keys.manage is in the permission catalog, held by owner and admin only", async () => {
  assert.ok(PERMISSIONS["api_keys.manage"], "declared by the key routes");
  const team = await teamWithTokens();
  const rows = await db()<{ key: string; permissions: string[] }[]>`
    select key, permissions from public.roles where client_id = ${team.clientId}`;
  const holders = rows.filter((r) => r.permissions.includes("api_keys.manage")).map((r) => r.key).sort();
  assert.deepEqual(holders, ["admin", "owner"]);
});

test("POST /api-keys returns the key record and its secret once; only the SHA-256 is stored", async () => {
  const team = await teamWithTokens();
  const created = await createKey(team, {
    name: "  Landing page  ",
    environment: "test",
    scopes: ["ingest:single"],
    allowed_origins: ["https://www.example.com", "http://localhost:3000"],
    rate_limit_per_minute: 120,
    default_source: "api",
  });
  const match = created.secret.match(KEY_FORMAT);
  assert.ok(match, `secret ${created.secret} has the lap_<env>_<prefix>_<secret> format`);
  assert.equal(match[1], "test");
  assert.equal(match[2], created.prefix, "the key embeds its public prefix");
  assert.equal(created.name, "Landing page", "names are trimmed");
  assert.equal(created.client_id, team.clientId);
  assert.equal(created.environment, "test");
  assert.deepEqual(created.scopes, ["ingest:single"]);
  assert.deepEqual(created.allowed_origins, ["https://www.example.com", "http://localhost:3000"]);
  assert.equal(created.rate_limit_per_minute, 120);
  assert.equal(created.default_source, "api");
  assert.equal(created.status, "active");
  assert.equal(created.expires_at, null);
  assert.equal(created.revoked_at, null);
  assert.equal(created.last_used_at, null);
  assert.ok(!("key_hash" in created), "no hash in the response");

  const row = await keyRow(created.id);
  assert.deepEqual(new Uint8Array(row.key_hash), await hashToken(created.secret), "hash = SHA-256(key)");
  const [stored] = await db()`select to_jsonb(k)::text as text from app.api_keys k where id = ${created.id}`;
  assert.ok(!stored.text.includes(created.secret.slice(-43)), "the secret itself is stored nowhere");

  const used = await ingest(created.secret);
  assert.equal(used.status, 201, "the shown secret works");
});

test("POST /api-keys applies the defaults: live, both scopes, no origins, 600/min, website", async () => {
  const team = await teamWithTokens();
  const created = await createKey(team);
  assert.match(created.secret, /^lap_live_/);
  assert.deepEqual(created.scopes, ["ingest:single", "ingest:batch"]);
  assert.deepEqual(created.allowed_origins, []);
  assert.equal(created.rate_limit_per_minute, 600);
  assert.equal(created.default_source, "website");
  const other = await createKey(team);
  assert.notEqual(other.prefix, created.prefix, "prefixes are random");
  assert.notEqual(other.secret, created.secret);
});

test("GET /api-keys lists keys newest first and never shows a secret or hash", async () => {
  const team = await teamWithTokens();
  const first = await createKey(team, { name: "First" });
  const second = await createKey(team, { name: "Second" });
  const list = await call(stack, "GET", keysPath(team.clientId), { token: team.tokens.owner });
  assert.equal(list.status, 200);
  assert.deepEqual(list.body.data.map((k: { id: string }) => k.id), [second.id, first.id]);
  const text = JSON.stringify(list.body);
  for (const key of [first, second]) {
    assert.ok(!text.includes(key.secret.slice(-43)), "the secret is never listed");
    const { secret: _secret, ...record } = key;
    assert.deepEqual(list.body.data.find((k: { id: string }) => k.id === key.id), record);
  }
  for (const listed of list.body.data) {
    assert.deepEqual(Object.keys(listed).sort(), [
      "allowed_origins",
      "client_id",
      "created_at",
      "default_source",
      "environment",
      "expires_at",
      "id",
      "last_used_at",
      "name",
      "prefix",
      "rate_limit_per_minute",
      "replaced_by",
      "revoked_at",
      "scopes",
      "status",
    ]);
  }
});

test("GET /api-keys shows last_used_at once the key has been used", async () => {
  const team = await teamWithTokens();
  const key = await createKey(team);
  assert.equal((await ingest(key.secret)).status, 201);
  const list = await call(stack, "GET", keysPath(team.clientId), { token: team.tokens.owner });
  const listed = list.body.data.find((k: { id: string }) => k.id === key.id);
  assert.ok(listed.last_used_at, "set by the first use");
  assert.ok(Math.abs(Date.parse(listed.last_used_at) - Date.now()) < 60_000);
});

// -- Revoking ------------------------------------------------------------------------------------------

test("POST /revoke stops the key on the next request; revoking again keeps the first time", async () => {
  const team = await teamWithTokens();
  const key = await createKey(team);
  assert.equal((await ingest(key.secret)).status, 201);

  const revoked = await call(stack, "POST", keyPath(team.clientId, key.id, "revoke"), {
    token: team.tokens.admin,
  });
  assert.equal(revoked.status, 200);
  assert.equal(revoked.body.status, "revoked");
  assert.ok(revoked.body.revoked_at);
  assert.ok(!("secret" in revoked.body));

  const refused = await ingest(key.secret);
  assertProblem(refused, 401, "api_key_revoked");

  const again = await call(stack, "POST", keyPath(team.clientId, key.id, "revoke"), {
    token: team.tokens.owner,
  });
  assert.equal(again.status, 200);
  assert.equal(again.body.revoked_at, revoked.body.revoked_at, "the first revocation time stays");

  const list = await call(stack, "GET", keysPath(team.clientId), { token: team.tokens.owner });
  assert.equal(list.body.data[0].status, "revoked", "revoked keys stay listed");
});

// -- Rotating ------------------------------------------------------------------------------------------

test("POST /rotate with grace 0 issues a new secret with the same settings; the old key stops at once", async () => {
  const team = await teamWithTokens();
  const old = await createKey(team, {
    name: "Rotating",
    scopes: ["ingest:single"],
    allowed_origins: ["https://forms.example.org"],
    rate_limit_per_minute: 77,
    default_source: "manual",
    environment: "test",
  });
  assert.equal((await ingest(old.secret)).status, 201);

  const rotated = await call(stack, "POST", keyPath(team.clientId, old.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace_seconds: 0 },
  });
  assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
  assert.match(rotated.body.secret, /^lap_test_/, "the environment is kept");
  assert.notEqual(rotated.body.secret, old.secret);
  assert.notEqual(rotated.body.id, old.id);
  for (const field of ["name", "scopes", "allowed_origins", "rate_limit_per_minute", "default_source"]) {
    assert.deepEqual(rotated.body[field], old[field], `${field} is copied`);
  }
  assert.equal(rotated.body.previous.id, old.id);
  assert.equal(rotated.body.previous.replaced_by, rotated.body.id);
  assert.equal(rotated.body.previous.status, "expired");

  assertProblem(await ingest(old.secret), 401, "api_key_expired");
  assert.equal((await ingest(rotated.body.secret)).status, 201);
});

test("POST /rotate without a body means grace 0", async () => {
  const team = await teamWithTokens();
  const old = await createKey(team);
  const rotated = await call(stack, "POST", keyPath(team.clientId, old.id, "rotate"), {
    token: team.tokens.owner,
  });
  assert.equal(rotated.status, 201, JSON.stringify(rotated.body));
  assertProblem(await ingest(old.secret), 401, "api_key_expired");
  assert.equal((await ingest(rotated.body.secret)).status, 201);
});

test("POST /rotate with grace 2 keeps the old key working for 2 seconds, then refuses it", async () => {
  const team = await teamWithTokens();
  const old = await createKey(team);
  const rotated = await call(stack, "POST", keyPath(team.clientId, old.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace_seconds: 2 },
  });
  assert.equal(rotated.status, 201);
  const graceEnd = Date.parse(rotated.body.previous.expires_at);
  assert.ok(Math.abs(graceEnd - (Date.now() + 2000)) < 1500, "the old key expires after the grace period");
  assert.equal(rotated.body.previous.status, "active");

  assert.equal((await ingest(old.secret)).status, 201, "old key during the grace period");
  assert.equal((await ingest(rotated.body.secret)).status, 201, "new key at once");

  await sleep(Math.max(0, graceEnd - Date.now()) + 300);
  assertProblem(await ingest(old.secret), 401, "api_key_expired");
  assert.equal((await ingest(rotated.body.secret)).status, 201, "new key after the grace period");
});

test("POST /rotate refuses revoked, expired and already rotated keys with 409", async () => {
  const team = await teamWithTokens();
  const revoked = await createKey(team);
  await call(stack, "POST", keyPath(team.clientId, revoked.id, "revoke"), { token: team.tokens.owner });
  assertProblem(
    await call(stack, "POST", keyPath(team.clientId, revoked.id, "rotate"), { token: team.tokens.owner }),
    409,
    "api_key_revoked",
  );

  const expired = await createKey(team);
  await db()`update app.api_keys set expires_at = now() - interval '1 second' where id = ${expired.id}`;
  assertProblem(
    await call(stack, "POST", keyPath(team.clientId, expired.id, "rotate"), { token: team.tokens.owner }),
    409,
    "api_key_expired",
  );

  const rotated = await createKey(team);
  const first = await call(stack, "POST", keyPath(team.clientId, rotated.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace_seconds: 3600 },
  });
  assert.equal(first.status, 201);
  const second = await call(stack, "POST", keyPath(team.clientId, rotated.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace_seconds: 3600 },
  });
  assertProblem(second, 409, "api_key_replaced");
  assert.match(second.body.detail, new RegExp(first.body.id), "names the replacement to rotate instead");
  const count = await db()`select count(*)::int as n from app.api_keys where client_id = ${team.clientId}`;
  assert.equal(count[0].n, 4, "no key was issued by a refused rotation");
});

// -- Expiry --------------------------------------------------------------------------------------------

test("a key with expires_at works until then and is refused with api_key_expired after", async () => {
  const team = await teamWithTokens();
  const expiresAt = new Date(Date.now() + 2000).toISOString();
  const key = await createKey(team, { expires_at: expiresAt });
  assert.equal(Date.parse(key.expires_at), Date.parse(expiresAt));
  assert.equal((await ingest(key.secret)).status, 201);
  await sleep(Date.parse(expiresAt) - Date.now() + 300);
  assertProblem(await ingest(key.secret), 401, "api_key_expired");
  const list = await call(stack, "GET", keysPath(team.clientId), { token: team.tokens.owner });
  assert.equal(list.body.data[0].status, "expired");
});

// -- Who may manage keys -------------------------------------------------------------------------------

test("members without api_keys.manage get 403 on every key route, and nothing changes", async () => {
  const team = await teamWithTokens();
  const key = await createKey(team);
  for (const role of ["manager", "agent", "viewer"] as const) {
    const token = team.tokens[role];
    assertProblem(
      await call(stack, "POST", keysPath(team.clientId), { token, body: { name: "Mine" } }),
      403,
      "permission_denied",
    );
    assertProblem(await call(stack, "GET", keysPath(team.clientId), { token }), 403, "permission_denied");
    assertProblem(
      await call(stack, "POST", keyPath(team.clientId, key.id, "revoke"), { token }),
      403,
      "permission_denied",
    );
    assertProblem(
      await call(stack, "POST", keyPath(team.clientId, key.id, "rotate"), { token, body: {} }),
      403,
      "permission_denied",
    );
  }
  const rows =
    await db()`select id, revoked_at, replaced_by from app.api_keys where client_id = ${team.clientId}`;
  assert.equal(rows.length, 1);
  assert.equal(rows[0].revoked_at, null);
  assert.equal(rows[0].replaced_by, null);
  assert.equal((await ingest(key.secret)).status, 201);
  assertProblem(await call(stack, "GET", keysPath(team.clientId)), 401, "missing_token");
});

test("the key functions refuse callers without api_keys.manage in the database too", async () => {
  const team = await teamWithTokens();
  const key = await createKey(team);
  const claims = (userId: string) =>
    JSON.stringify({
      sub: userId,
      role: "authenticated",
      session_id: crypto.randomUUID(),
      client_id: team.clientId,
    });
  for (const user of [team.users.agent, team.users.manager]) {
    for (
      const statement of [
        `select public.list_api_keys('${team.clientId}')`,
        `select public.revoke_api_key('${team.clientId}', '${key.id}')`,
        `select public.rotate_api_key('${team.clientId}', '${key.id}', 'aaaaaaaa', '\\x00', 0)`,
        `select public.create_api_key('${team.clientId}', 'x', 'live', 'bbbbbbbb', '\\x01', '{ingest:single}',
         '{}', 10, 'website', null)`,
      ]
    ) {
      await assert.rejects(
        db().begin(async (tx) => {
          await tx`select set_config('role', 'authenticated', true),
                          set_config('request.jwt.claims', ${claims(user.id)}, true)`;
          await tx.unsafe(statement);
        }),
        (error: { code?: string }) => error.code === "42501",
        statement,
      );
    }
  }
  await assert.rejects(
    db().begin(async (tx) => {
      await tx`select set_config('role', 'authenticated', true),
                      set_config('request.jwt.claims', ${claims(team.users.owner.id)}, true)`;
      await tx`select key_hash from app.api_keys`;
    }),
    (error: { code?: string }) => error.code === "42501",
    "no API role reads the key table",
  );
});

test("a key id of another client is a 404 on revoke and rotate, and the key stays untouched", async () => {
  const a = await teamWithTokens();
  const b = await teamWithTokens();
  const bKey = await createKey(b);
  for (const action of ["revoke", "rotate"] as const) {
    for (const keyId of [bKey.id, crypto.randomUUID()]) {
      assertProblem(
        await call(stack, "POST", keyPath(a.clientId, keyId, action), { token: a.tokens.owner, body: {} }),
        404,
        "api_key_not_found",
      );
    }
  }
  const list = await call(stack, "GET", keysPath(a.clientId), { token: a.tokens.owner });
  assert.deepEqual(list.body.data, [], "client A sees none of B's keys");

  // B's owner addressing client A: the client itself is not visible.
  for (
    const [method, path] of [
      ["GET", keysPath(a.clientId)],
      ["POST", keysPath(a.clientId)],
      ["POST", keyPath(a.clientId, bKey.id, "revoke")],
      ["POST", keyPath(a.clientId, bKey.id, "rotate")],
    ]
  ) {
    assertProblem(
      await call(stack, method, path, {
        token: b.tokens.owner,
        body: method === "POST" ? { name: "Spy" } : undefined,
      }),
      404,
      "client_not_found",
    );
  }
  const row = await keyRow(bKey.id);
  assert.equal(row.revoked_at, null);
  assert.equal(row.replaced_by, null);
  assert.equal((await ingest(bKey.secret)).status, 201);
});

// -- Validation ----------------------------------------------------------------------------------------

test("POST /api-keys validates every field with 422 naming it", async () => {
  const team = await teamWithTokens();
  const cases: [Record<string, unknown>, string, string?][] = [
    [{}, "body.name"],
    [{ name: "" }, "body.name"],
    [{ name: "x".repeat(101) }, "body.name"],
    [{ name: "k", environment: "prod" }, "body.environment"],
    [{ name: "k", scopes: [] }, "body.scopes"],
    [{ name: "k", scopes: ["ingest:all"] }, "body.scopes.0"],
    [{ name: "k", scopes: "ingest:single" }, "body.scopes"],
    [{ name: "k", allowed_origins: ["https://www.example.com/"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["https://www.example.com/contact"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["https://WWW.example.com"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["https://www.example.com:443"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["www.example.com"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["ftp://example.com"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["*"] }, "body.allowed_origins.0"],
    [{ name: "k", allowed_origins: ["https://ok.example.com", "null"] }, "body.allowed_origins.1"],
    [
      { name: "k", allowed_origins: Array.from({ length: 51 }, (_, i) => `https://s${i}.example.com`) },
      "body.allowed_origins",
    ],
    [{ name: "k", rate_limit_per_minute: 0 }, "body.rate_limit_per_minute"],
    [{ name: "k", rate_limit_per_minute: 1.5 }, "body.rate_limit_per_minute"],
    [{ name: "k", rate_limit_per_minute: 1_000_001 }, "body.rate_limit_per_minute"],
    [{ name: "k", default_source: "meta" }, "body.default_source"],
    [{ name: "k", expires_at: new Date(Date.now() - 60_000).toISOString() }, "body.expires_at"],
    [{ name: "k", expires_at: "tomorrow" }, "body.expires_at"],
    [{ name: "k", key_hash: "00" }, "body.key_hash", "unknown_field"],
    [{ name: "k", client_id: "someone-else" }, "body.client_id", "unknown_field"],
  ];
  for (const [body, path, code] of cases) {
    const reply = await call(stack, "POST", keysPath(team.clientId), { token: team.tokens.owner, body });
    assertProblem(reply, 422, "validation_failed");
    const paths = reply.body.errors.map((e: { path: string }) => e.path);
    assert.ok(paths.includes(path), `${JSON.stringify(body)}: expected ${path} in ${JSON.stringify(paths)}`);
    if (code) assert.ok(reply.body.errors.some((e: { code: string }) => e.code === code));
  }
  const rows = await db()`select 1 from app.api_keys where client_id = ${team.clientId}`;
  assert.equal(rows.length, 0, "nothing was created");

  const ok = await createKey(team, {
    allowed_origins: ["https://a.example.com", "https://a.example.com", "http://127.0.0.1:8080"],
    scopes: ["ingest:batch", "ingest:batch"],
  });
  assert.deepEqual(ok.allowed_origins, ["https://a.example.com", "http://127.0.0.1:8080"], "deduplicated");
  assert.deepEqual(ok.scopes, ["ingest:batch"]);
});

test("POST /rotate validates grace_seconds (0-604800) and the key id", async () => {
  const team = await teamWithTokens();
  const key = await createKey(team);
  for (const grace of [-1, 604_801, 1.5, "10"]) {
    const reply = await call(stack, "POST", keyPath(team.clientId, key.id, "rotate"), {
      token: team.tokens.owner,
      body: { grace_seconds: grace },
    });
    assertProblem(reply, 422, "validation_failed");
    assert.equal(reply.body.errors[0].path, "body.grace_seconds");
  }
  const unknown = await call(stack, "POST", keyPath(team.clientId, key.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace: 5 },
  });
  assertProblem(unknown, 422, "validation_failed");
  const badId = await call(stack, "POST", keyPath(team.clientId, "not-a-uuid", "revoke"), {
    token: team.tokens.owner,
  });
  assertProblem(badId, 422, "validation_failed");
  assert.equal(badId.body.errors[0].path, "param.keyId");

  const week = await call(stack, "POST", keyPath(team.clientId, key.id, "rotate"), {
    token: team.tokens.owner,
    body: { grace_seconds: 604_800 },
  });
  assert.equal(week.status, 201, "a week is the longest grace");
  assert.equal((await keyRow(key.id)).replaced_by, week.body.id);
});
