import assert from "node:assert/strict";
import { SignJWT } from "jose";
import { loadConfig } from "../../functions/_shared/config.ts";
import {
  addMember,
  call,
  createClient,
  createTeam,
  createUser,
  db,
  login,
  PASSWORD,
  startStack,
  test,
} from "../_helpers.ts";

const stack = startStack();
const team = await createTeam();
const secret = new TextEncoder().encode(loadConfig({}).secrets.jwt_secret);

test("POST /auth/login returns Supabase-compatible tokens scoped to the first client", async () => {
  const reply = await call(stack, "POST", "/auth/login", {
    body: { email: team.users.agent.email.toUpperCase(), password: PASSWORD },
  });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.token_type, "bearer");
  assert.equal(reply.body.client_id, team.clientId);
  const [, payload] = reply.body.access_token.split(".");
  const claims = JSON.parse(atob(payload.replaceAll("-", "+").replaceAll("_", "/")));
  assert.equal(claims.sub, team.users.agent.id);
  assert.equal(claims.role, "authenticated");
  assert.equal(claims.aud, "authenticated");
  assert.equal(claims.client_id, team.clientId);
  assert.ok(claims.session_id && claims.exp > claims.iat);
  assert.match(reply.body.refresh_token, /^lap_rt_/);
});

test("POST /auth/login refuses a wrong password and an unknown user alike", async () => {
  const wrong = await call(stack, "POST", "/auth/login", {
    body: { email: team.users.agent.email, password: "nope" },
  });
  const unknown = await call(stack, "POST", "/auth/login", {
    body: { email: "ghost@example.com", password: "nope" },
  });
  assert.equal(wrong.status, 401);
  assert.equal(unknown.status, 401);
  assert.equal(wrong.body.code, "invalid_credentials");
  assert.equal(unknown.body.detail, wrong.body.detail, "no hint whether the account exists");
});

test("POST /auth/login refuses a disabled user", async () => {
  const user = await createUser();
  await db()`update public.users set disabled_at = now() where id = ${user.id}`;
  const reply = await call(stack, "POST", "/auth/login", { body: { email: user.email, password: PASSWORD } });
  assert.equal(reply.status, 403);
  assert.equal(reply.body.code, "user_disabled");
});

test("POST /auth/login validates its body", async () => {
  const reply = await call(stack, "POST", "/auth/login", {
    body: { email: "not-an-email", password: "", extra: 1 },
  });
  assert.equal(reply.status, 422);
  const paths = reply.body.errors.map((e: { path: string }) => e.path).sort();
  assert.deepEqual(paths, ["body.email", "body.extra", "body.password"]);
});

test("POST /auth/login is throttled per email", async () => {
  const user = await createUser();
  const statuses: number[] = [];
  for (let i = 0; i < 12; i++) {
    statuses.push(
      (await call(stack, "POST", "/auth/login", { body: { email: user.email, password: "wrong" } })).status,
    );
  }
  assert.deepEqual(statuses.slice(0, 10), Array(10).fill(401));
  assert.deepEqual(statuses.slice(10), [429, 429]);
  const locked = await call(stack, "POST", "/auth/login", {
    body: { email: user.email, password: PASSWORD },
  });
  assert.equal(locked.status, 429, "even the right password waits for the window");
  assert.ok(Number(locked.headers.get("retry-after")) >= 1);
});

test("POST /auth/refresh rotates the token and detects reuse", async () => {
  const first = await login(stack, team.users.manager.email);
  const second = await call(stack, "POST", "/auth/refresh", { body: { refresh_token: first.refresh_token } });
  assert.equal(second.status, 200);
  assert.notEqual(second.body.refresh_token, first.refresh_token, "a new refresh token every time");
  const me = await call(stack, "GET", "/auth/me", { token: second.body.access_token });
  assert.equal(me.status, 200);

  const replay = await call(stack, "POST", "/auth/refresh", { body: { refresh_token: first.refresh_token } });
  assert.equal(replay.status, 401);
  assert.equal(replay.body.code, "refresh_token_reused");
  const afterReuse = await call(stack, "POST", "/auth/refresh", {
    body: { refresh_token: second.body.refresh_token },
  });
  assert.equal(afterReuse.status, 401, "reuse revoked the whole session");
  assert.equal(afterReuse.body.code, "refresh_token_revoked");
  const access = await call(stack, "GET", "/api/clients", { token: second.body.access_token });
  assert.equal(access.status, 401, "and its access tokens");
  assert.equal(access.body.code, "session_revoked");
});

test("POST /auth/refresh lets exactly one of two concurrent uses win", async () => {
  const tokens = await login(stack, team.users.viewer.email);
  const replies = await Promise.all(
    [1, 2].map(() => call(stack, "POST", "/auth/refresh", { body: { refresh_token: tokens.refresh_token } })),
  );
  assert.deepEqual(replies.map((r) => r.status).sort(), [200, 401]);
});

test("POST /auth/refresh refuses an unknown token", async () => {
  const reply = await call(stack, "POST", "/auth/refresh", { body: { refresh_token: "lap_rt_made-up" } });
  assert.equal(reply.status, 401);
  assert.equal(reply.body.code, "refresh_token_unknown");
});

test("an expired access token is refused with token_expired", async () => {
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({
    role: "authenticated",
    session_id: crypto.randomUUID(),
    client_id: team.clientId,
  })
    .setProtectedHeader({ alg: "HS256" }).setSubject(team.users.owner.id).setAudience("authenticated")
    .setIssuedAt(now - 3600).setExpirationTime(now - 60).sign(secret);
  const reply = await call(stack, "GET", "/api/clients", { token });
  assert.equal(reply.status, 401);
  assert.equal(reply.body.code, "token_expired");
});

test("a tampered or foreign-signed access token is refused", async () => {
  const tokens = await login(stack, team.users.owner.email);
  const [header, payload, signature] = tokens.access_token.split(".");
  const claims = JSON.parse(atob(payload.replaceAll("-", "+").replaceAll("_", "/")));
  const forged = btoa(JSON.stringify({ ...claims, sub: team.users.admin.id })).replaceAll("=", "");
  const tampered = await call(stack, "GET", "/api/clients", { token: `${header}.${forged}.${signature}` });
  assert.equal(tampered.status, 401);
  assert.equal(tampered.body.code, "invalid_token");
  const foreign = await new SignJWT({ ...claims }).setProtectedHeader({ alg: "HS256" })
    .sign(new TextEncoder().encode("another-secret-another-secret-another-secret"));
  assert.equal((await call(stack, "GET", "/api/clients", { token: foreign })).status, 401);
  const anon = await new SignJWT({ role: "anon" }).setProtectedHeader({ alg: "HS256" }).setAudience(
    "authenticated",
  )
    .sign(secret);
  const anonReply = await call(stack, "GET", "/api/clients", { token: anon });
  assert.equal(anonReply.status, 401, "an anon key is not a user token");
});

test("GET /auth/me returns the profile and every membership", async () => {
  const user = await createUser();
  const other = await createClient();
  await addMember(team.clientId, user.id, "viewer", team.memberships.admin);
  await addMember(other, user.id, "agent");
  const tokens = await login(stack, user.email);
  const me = await call(stack, "GET", "/auth/me", { token: tokens.access_token });
  assert.equal(me.status, 200);
  assert.equal(me.body.user.email, user.email);
  assert.deepEqual(
    me.body.memberships.map((m: { client_id: string }) => m.client_id).sort(),
    [team.clientId, other].sort(),
  );
});

test("POST /auth/switch-client issues a token for another client of the user, not for a stranger's", async () => {
  const user = await createUser();
  const first = await createClient();
  const second = await createClient();
  await addMember(first, user.id, "owner");
  await addMember(second, user.id, "owner");
  const tokens = await login(stack, user.email, PASSWORD, first);
  assert.equal(tokens.client_id, first);
  const switched = await call(stack, "POST", "/auth/switch-client", {
    token: tokens.access_token,
    body: { client_id: second },
  });
  assert.equal(switched.status, 200);
  assert.equal(switched.body.client_id, second);
  const refreshed = await call(stack, "POST", "/auth/refresh", {
    body: { refresh_token: tokens.refresh_token },
  });
  assert.equal(refreshed.body.client_id, second, "the session remembers the switch");

  const refused = await call(stack, "POST", "/auth/switch-client", {
    token: switched.body.access_token,
    body: { client_id: team.clientId },
  });
  assert.equal(refused.status, 404);
  const refusedLogin = await call(stack, "POST", "/auth/login", {
    body: { email: user.email, password: PASSWORD, client_id: team.clientId },
  });
  assert.equal(refusedLogin.status, 403);
});

test("POST /auth/logout ends the session for access and refresh alike", async () => {
  const tokens = await login(stack, team.users.otherAgent.email);
  const out = await call(stack, "POST", "/auth/logout", { token: tokens.access_token });
  assert.equal(out.status, 204);
  assert.equal(
    (await call(stack, "GET", "/auth/me", { token: tokens.access_token })).body.code,
    "session_revoked",
  );
  const refresh = await call(stack, "POST", "/auth/refresh", {
    body: { refresh_token: tokens.refresh_token },
  });
  assert.equal(refresh.status, 401);
});

test("POST /auth/password changes the password and ends the other sessions", async () => {
  const user = await createUser();
  await addMember(team.clientId, user.id, "viewer");
  const here = await login(stack, user.email);
  const elsewhere = await login(stack, user.email);
  const wrong = await call(stack, "POST", "/auth/password", {
    token: here.access_token,
    body: { current_password: "wrong-password", new_password: "a-brand-new-password" },
  });
  assert.equal(wrong.status, 401);
  const weak = await call(stack, "POST", "/auth/password", {
    token: here.access_token,
    body: { current_password: PASSWORD, new_password: "short" },
  });
  assert.equal(weak.status, 422);
  const changed = await call(stack, "POST", "/auth/password", {
    token: here.access_token,
    body: { current_password: PASSWORD, new_password: "a-brand-new-password" },
  });
  assert.equal(changed.status, 204);
  assert.equal(
    (await call(stack, "GET", "/auth/me", { token: here.access_token })).status,
    200,
    "this session stays",
  );
  assert.equal(
    (await call(stack, "GET", "/auth/me", { token: elsewhere.access_token })).status,
    401,
    "others end",
  );
  await login(stack, user.email, "a-brand-new-password");
});

test("a removed membership is refused on the very next request", async () => {
  const user = await createUser();
  const membership = await addMember(team.clientId, user.id, "agent", team.memberships.manager);
  const tokens = await login(stack, user.email);
  assert.equal(
    (await call(stack, "GET", `/api/clients/${team.clientId}`, { token: tokens.access_token })).status,
    200,
  );
  await db()`delete from public.memberships where id = ${membership}`;
  const reply = await call(stack, "GET", `/api/clients/${team.clientId}`, { token: tokens.access_token });
  assert.equal(reply.status, 403);
  assert.equal(reply.body.code, "membership_revoked");
});

test("POST /auth/login is throttled per client IP across emails", async () => {
  const limited = startStack({}, { auth: { login_attempts_per_ip: 3 } });
  try {
    const statuses: number[] = [];
    for (let i = 0; i < 5; i++) {
      const reply = await call(limited, "POST", "/auth/login", {
        body: { email: `nobody-${i}@example.com`, password: "wrong" },
      });
      statuses.push(reply.status);
    }
    // The bucket is shared with every other test's logins from 127.0.0.1, so count the refusals.
    assert.ok(statuses.filter((s) => s === 429).length >= 2, `statuses were ${statuses}`);
  } finally {
    await limited.close();
  }
});
