/**
 * The client service over HTTP: creating clients with client-provided ids, listing and reading them under
 * row-level security, updating them, and deactivating them (platform administrators only).
 */
import assert from "node:assert/strict";
import {
  addMember,
  call,
  createClient,
  createTeam,
  createUser,
  db,
  login,
  PASSWORD,
  type Reply,
  type Stack,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

/** Logs a fixture user in (every fixture has PASSWORD) and returns the access token. */
async function signIn(user: { email: string }, clientId: string | null = null): Promise<string> {
  return (await login(stack, user.email, PASSWORD, clientId ?? undefined)).access_token;
}

/** Every page of GET path (which must have a query string), following next_cursor until it is null. */
async function allPages(s: Stack, path: string, token: string): Promise<{ pages: Reply[]; ids: string[] }> {
  const pages: Reply[] = [];
  let cursor: string | null = null;
  do {
    const reply = await call(s, "GET", cursor ? `${path}&cursor=${cursor}` : path, { token });
    assert.equal(reply.status, 200, `page ${pages.length + 1}: ${JSON.stringify(reply.body)}`);
    pages.push(reply);
    cursor = reply.body.next_cursor;
    assert.ok(pages.length < 1000, "pagination terminates");
  } while (cursor !== null);
  return { pages, ids: pages.flatMap((p) => p.body.data.map((row: { id: string }) => row.id)) };
}

async function clientRow(id: string) {
  const [row] = await db()<{ name: string; status: string; settings: Record<string, unknown> }[]>`
    select name, status, settings from public.clients where id = ${id}`;
  return row;
}

const platformAdmin = await createUser({ admin: true, name: "Platform admin" });
const adminToken = await signIn(platformAdmin);

// -- Creating ------------------------------------------------------------------------------------------

test("a platform administrator creates a client with its own id (201) and becomes its owner", async () => {
  const id = uniq("acme");
  const reply = await call(stack, "POST", "/api/clients", {
    token: adminToken,
    body: { id, name: "Acme Realty", settings: { timezone: "Europe/Paris" } },
  });
  assert.equal(reply.status, 201, JSON.stringify(reply.body));
  assert.deepEqual(
    Object.keys(reply.body).sort(),
    ["created_at", "id", "name", "settings", "status", "updated_at"],
    "the body is exactly the Client shape",
  );
  assert.equal(reply.body.id, id, "the id is the one the caller chose");
  assert.equal(reply.body.name, "Acme Realty");
  assert.equal(reply.body.status, "active", "a new client is active");
  assert.deepEqual(reply.body.settings, { timezone: "Europe/Paris" });
  assert.ok(!Number.isNaN(Date.parse(reply.body.created_at)), "created_at is a timestamp");
  assert.ok(!Number.isNaN(Date.parse(reply.body.updated_at)), "updated_at is a timestamp");

  const me = await call(stack, "GET", "/auth/me", { token: adminToken });
  assert.equal(me.status, 200);
  const membership = me.body.memberships.find((m: { client_id: string }) => m.client_id === id);
  assert.ok(membership, "the creator has a membership in the new client");
  assert.equal(membership.role.key, "owner", "the creator is the owner");

  const members = await call(stack, "GET", `/api/clients/${id}/members`, { token: adminToken });
  assert.equal(members.status, 200);
  assert.deepEqual(
    members.body.data.map((m: { user: { id: string }; role: { key: string } }) => [m.user.id, m.role.key]),
    [[platformAdmin.id, "owner"]],
    "the creator is the only member, as owner",
  );
});

test("a new client gets its own copies of the system roles owner, admin, manager, agent and viewer", async () => {
  const id = uniq("roles");
  const created = await call(stack, "POST", "/api/clients", {
    token: adminToken,
    body: { id, name: "Roles Co" },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.deepEqual(created.body.settings, {}, "settings default to an empty object");

  const reply = await call(stack, "GET", `/api/clients/${id}/roles`, { token: adminToken });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const roles = reply.body.data as Array<
    { key: string; rank: number; client_id: string; is_system: boolean; permissions: string[] }
  >;
  assert.deepEqual(
    roles.map((r) => [r.key, r.rank]),
    [["owner", 10], ["admin", 20], ["manager", 30], ["agent", 40], ["viewer", 50]],
    "the five system roles, most powerful first",
  );
  for (const role of roles) {
    assert.equal(role.client_id, id, `role ${role.key} belongs to the new client`);
    assert.equal(role.is_system, true, `role ${role.key} mirrors its template`);
  }
  const byKey = Object.fromEntries(roles.map((r) => [r.key, r.permissions]));
  assert.ok(byKey.owner.includes("clients.update") && byKey.owner.includes("members.manage"));
  assert.ok(byKey.agent.includes("members.read"), "agents hold *.read");
  assert.ok(!byKey.agent.includes("members.manage"), "agents do not manage members");
  assert.ok(!byKey.viewer.includes("clients.update"), "viewers only read");
});

test("creating a client with an id that is already taken is a 409 client_id_taken", async () => {
  const id = await createClient(uniq("taken"), "Original");
  const reply = await call(stack, "POST", "/api/clients", {
    token: adminToken,
    body: { id, name: "Impostor" },
  });
  assert.equal(reply.status, 409, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "client_id_taken");
  assert.equal((await clientRow(id)).name, "Original", "the existing client is untouched");
});

test("a client id that is not a 3-64 character lowercase slug is a 422 naming body.id", async () => {
  for (const id of ["A", "UPPER", "-lead", "a b", "a".repeat(65)]) {
    const reply = await call(stack, "POST", "/api/clients", {
      token: adminToken,
      body: { id, name: "Bad id" },
    });
    assert.equal(reply.status, 422, `id ${JSON.stringify(id)}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.code, "validation_failed", `id ${JSON.stringify(id)}`);
    assert.deepEqual(
      reply.body.errors.map((e: { path: string }) => e.path),
      ["body.id"],
      `id ${JSON.stringify(id)} is the only invalid field`,
    );
    assert.equal(await clientRow(id), undefined, `no client ${JSON.stringify(id)} was created`);
  }
});

test("a user who is not a platform administrator cannot create a client (403)", async () => {
  const team = await createTeam();
  const ownerToken = await signIn(team.users.owner, team.clientId);
  const id = uniq("rogue");
  const reply = await call(stack, "POST", "/api/clients", { token: ownerToken, body: { id, name: "Rogue" } });
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal(await clientRow(id), undefined, "no client was created");
});

// -- Listing and reading -------------------------------------------------------------------------------

test("a member's client list holds exactly the clients they belong to", async () => {
  const user = await createUser();
  const a = await createClient(uniq("mine-a"));
  const b = await createClient(uniq("mine-b"));
  const notMine = await createClient(uniq("not-mine"));
  await addMember(a, user.id, "agent");
  await addMember(b, user.id, "viewer");
  const token = await signIn(user, a);

  const { ids } = await allPages(stack, "/api/clients?limit=50", token);
  assert.deepEqual(ids, [a, b].sort(), "only the member's clients, ordered by id");
  assert.ok(!ids.includes(notMine));
});

test("the client list pages with limit and next_cursor, with no duplicates or gaps", async () => {
  const user = await createUser();
  const mine = [
    await createClient(uniq("page")),
    await createClient(uniq("page")),
    await createClient(uniq("page")),
  ];
  for (const id of mine) await addMember(id, user.id, "agent");
  const token = await signIn(user, mine[0]);

  const { pages, ids } = await allPages(stack, "/api/clients?limit=1", token);
  assert.equal(pages.length, 3, "one page per client");
  for (const page of pages) assert.equal(page.body.data.length, 1, "each page holds limit rows");
  assert.equal(pages[2].body.next_cursor, null, "the last page has no next_cursor");
  assert.equal(new Set(ids).size, ids.length, "no client appears twice");
  assert.deepEqual(ids, [...mine].sort(), "every client once, in id order");
});

test("a platform administrator's client list includes every client", async () => {
  const others = [await createClient(uniq("any")), await createClient(uniq("any"))];
  const { ids } = await allPages(stack, "/api/clients?limit=200", adminToken);
  for (const id of others) assert.ok(ids.includes(id), `${id} is listed although the admin is not a member`);
  assert.equal(new Set(ids).size, ids.length, "no client appears twice");
});

test("reading another client is a 404 client_not_found, the same answer as for a nonexistent id", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const token = await signIn(a.users.agent, a.clientId);

  const own = await call(stack, "GET", `/api/clients/${a.clientId}`, { token });
  assert.equal(own.status, 200, "a member reads their own client");
  assert.equal(own.body.id, a.clientId);

  const other = await call(stack, "GET", `/api/clients/${b.clientId}`, { token });
  const missing = await call(stack, "GET", `/api/clients/${uniq("nowhere")}`, { token });
  assert.equal(other.status, 404, JSON.stringify(other.body));
  assert.equal(other.body.code, "client_not_found");
  assert.equal(missing.status, 404);
  assert.deepEqual(
    [other.body.code, other.body.type, other.body.title],
    [missing.body.code, missing.body.type, missing.body.title],
    "an existing but invisible client is indistinguishable from a missing one",
  );
});

// -- Updating ------------------------------------------------------------------------------------------

test("the owner renames the client with PATCH (200) and the change is stored", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token,
    body: { name: "  Renamed Realty  ", settings: { locale: "fr" } },
  });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.id, team.clientId);
  assert.equal(reply.body.name, "Renamed Realty", "the name is trimmed and changed");
  assert.deepEqual(reply.body.settings, { locale: "fr" });
  assert.equal((await clientRow(team.clientId)).name, "Renamed Realty");

  const again = await call(stack, "GET", `/api/clients/${team.clientId}`, { token });
  assert.equal(again.body.name, "Renamed Realty", "GET returns the new name");
});

test("PATCH settings takes notify_manager_levels as a whole number from 0 to 100 or null, and refuses the rest", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const ok = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
    token,
    body: { settings: { notify_manager_levels: 1, locale: "fr" } },
  });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.deepEqual(
    ok.body.settings,
    { notify_manager_levels: 1, locale: "fr" },
    "the setting and other keys are kept",
  );
  assert.deepEqual((await clientRow(team.clientId)).settings, { notify_manager_levels: 1, locale: "fr" });
  for (const levels of [-1, 101, 1.5, "2", true]) {
    const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
      token,
      body: { settings: { notify_manager_levels: levels } },
    });
    assert.equal(reply.status, 422, `${JSON.stringify(levels)}: ${JSON.stringify(reply.body)}`);
    assert.ok(
      reply.body.errors.some((e: { path: string }) => e.path === "body.settings.notify_manager_levels"),
      `${JSON.stringify(levels)}: the setting is named`,
    );
  }
  assert.deepEqual(
    (await clientRow(team.clientId)).settings,
    { notify_manager_levels: 1, locale: "fr" },
    "a refused value changes nothing",
  );
});

test("agents and viewers cannot PATCH the client (403 permission_denied)", async () => {
  const team = await createTeam();
  for (const role of ["agent", "viewer"] as const) {
    const token = await signIn(team.users[role], team.clientId);
    const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, {
      token,
      body: { name: "Hijacked" },
    });
    assert.equal(reply.status, 403, `${role}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.code, "permission_denied", role);
  }
  assert.equal((await clientRow(team.clientId)).name, "Test Client", "the name is unchanged");
});

test("the owner of another client cannot PATCH this one and gets 404 client_not_found", async () => {
  const target = await createTeam();
  const other = await createTeam();
  const token = await signIn(other.users.owner, other.clientId);
  const reply = await call(stack, "PATCH", `/api/clients/${target.clientId}`, {
    token,
    body: { name: "Hijacked" },
  });
  assert.equal(reply.status, 404, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "client_not_found");
  assert.equal((await clientRow(target.clientId)).name, "Test Client", "the name is unchanged");
});

test("the client id is immutable: PATCH with id is a 422 naming body.id", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const newId = uniq("moved");
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, { token, body: { id: newId } });
  assert.equal(reply.status, 422, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "validation_failed");
  assert.ok(reply.body.errors.some((e: { path: string }) => e.path === "body.id"), "body.id is named");
  assert.ok(await clientRow(team.clientId), "the client keeps its id");
  assert.equal(await clientRow(newId), undefined, "no client has the new id");
});

test("PATCH with an empty body is a 422 validation_failed", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const reply = await call(stack, "PATCH", `/api/clients/${team.clientId}`, { token, body: {} });
  assert.equal(reply.status, 422, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "validation_failed");
});

// -- Status --------------------------------------------------------------------------------------------

test("only platform administrators deactivate or activate a client; the owner gets 403", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  for (const action of ["deactivate", "activate"]) {
    const reply = await call(stack, "POST", `/api/clients/${team.clientId}/${action}`, { token });
    assert.equal(reply.status, 403, `${action}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.code, "permission_denied", action);
  }
  assert.equal((await clientRow(team.clientId)).status, "active", "the client is still active");

  const missing = await call(stack, "POST", `/api/clients/${uniq("nowhere")}/deactivate`, {
    token: adminToken,
  });
  assert.equal(missing.status, 404, "deactivating a nonexistent client is a 404");
  assert.equal(missing.body.code, "client_not_found");
});

test("deactivating a client refuses its members' existing tokens with 403 client_inactive until reactivated", async () => {
  const team = await createTeam();
  const agent = await signIn(team.users.agent, team.clientId);
  const owner = await signIn(team.users.owner, team.clientId);
  assert.equal((await call(stack, "GET", `/api/clients/${team.clientId}`, { token: agent })).status, 200);

  const off = await call(stack, "POST", `/api/clients/${team.clientId}/deactivate`, { token: adminToken });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.equal(off.body.status, "inactive");

  const refused = await call(stack, "GET", `/api/clients/${team.clientId}`, { token: agent });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal(refused.body.code, "client_inactive");
  const ownerRefused = await call(stack, "GET", `/api/clients/${team.clientId}/members`, { token: owner });
  assert.equal(ownerRefused.status, 403, "the owner is refused too");
  assert.equal(ownerRefused.body.code, "client_inactive");
  const list = await call(stack, "GET", "/api/clients", { token: agent });
  assert.equal(list.status, 403, "every route is refused, not only the client's own");

  const seen = await call(stack, "GET", `/api/clients/${team.clientId}`, { token: adminToken });
  assert.equal(seen.status, 200, "platform administrators still see an inactive client");
  assert.equal(seen.body.status, "inactive");

  const on = await call(stack, "POST", `/api/clients/${team.clientId}/activate`, { token: adminToken });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.status, "active");
  const restored = await call(stack, "GET", `/api/clients/${team.clientId}`, { token: agent });
  assert.equal(restored.status, 200, "the same token works again once the client is active");
  assert.equal(restored.body.status, "active");
});

test("a client-scoped route under a malformed client id is a 404 client_not_found, whatever the id holds", async () => {
  const a = await createTeam();
  const token = await signIn(a.users.owner, a.clientId);
  for (const id of ["a%00b", "Not%20An%20Id", "x".repeat(65), "-a-"]) {
    for (
      const path of [`/api/clients/${id}/members`, `/api/clients/${id}/leads`, `/api/clients/${id}/api-keys`]
    ) {
      const reply = await call(stack, "GET", path, { token });
      assert.equal(reply.status, 404, `${path}: ${JSON.stringify(reply.body)}`);
      assert.equal(reply.body.code, "client_not_found", path);
    }
  }
});
