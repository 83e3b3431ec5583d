/**
 * The permission service over HTTP: the permission catalog, the system roles every client gets, role
 * CRUD with its validation, the escalation guards (rank, permissions, the fixed owner role), system roles
 * detaching from their templates when edited, role changes applying on the very next request, and who may
 * see or change the roles of a client at all.
 */
import assert from "node:assert/strict";
import { hashToken, randomToken, signAccessToken } from "../../functions/_shared/auth.ts";
import { loadConfig } from "../../functions/_shared/config.ts";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import type { RoleRow } from "../../functions/api/roles/roles.queries.ts";
import { createSession } from "../../functions/auth/auth.queries.ts";
import { call, createTeam, createUser, db, type Reply, startStack, test, uniq } from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });
const config = loadConfig({ APP_ENV: "test" });

const CATALOG = Object.keys(PERMISSIONS).sort();
const READ_CODES = CATALOG.filter((code) => code.endsWith(".read"));

/**
 * An access token for a fresh session, made with the auth service's own session query and signer (real
 * logins are rate-limited per IP, and every test file logs in from 127.0.0.1).
 */
async function signIn(user: { id: string; email: string }, clientId: string | null = null): Promise<string> {
  const sessionId = await createSession(db(), {
    userId: user.id,
    clientId,
    ip: "127.0.0.1",
    refreshHash: await hashToken(randomToken("lap_rt_")),
    ttl: 3600,
  });
  const { token } = await signAccessToken(config, {
    userId: user.id,
    email: user.email,
    sessionId,
    clientId,
  });
  return token;
}

type Team = Awaited<ReturnType<typeof createTeam>>;

/** A team with a signed-in token per person. */
async function teamWithTokens() {
  const team = await createTeam();
  const tokens = {
    owner: await signIn(team.users.owner, team.clientId),
    admin: await signIn(team.users.admin, team.clientId),
    manager: await signIn(team.users.manager, team.clientId),
    agent: await signIn(team.users.agent, team.clientId),
    viewer: await signIn(team.users.viewer, team.clientId),
  };
  return { ...team, tokens };
}

/** The client's roles as the database holds them, by key. */
async function rolesOf(clientId: string): Promise<Record<string, RoleRow>> {
  const rows = await db()<RoleRow[]>`
    select id, client_id, key, name, rank, scope, permissions, is_system, created_at, updated_at
    from public.roles where client_id = ${clientId}`;
  return Object.fromEntries(rows.map((row) => [row.key, row]));
}

async function roleById(id: string): Promise<RoleRow | undefined> {
  const [row] = await db()<RoleRow[]>`
    select id, client_id, key, name, rank, scope, permissions, is_system, created_at, updated_at
    from public.roles where id = ${id}`;
  return row;
}

/** Inserts a role with the database's own rights (no API guards), returning its id. */
async function insertRole(
  clientId: string,
  role: { key?: string; name?: string; rank: number; scope: string; permissions: string[] },
): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${clientId}, ${role.key ?? uniq("custom")}, ${role.name ?? "Custom"}, ${role.rank}, ${role.scope},
            ${role.permissions}::text[])
    returning id`;
  return row.id;
}

/** Gives a new user a membership with a role id (database rights), returning the user and membership. */
async function addMemberWithRole(clientId: string, roleId: string, reportsTo: string | null) {
  const user = await createUser({ name: "Delegate" });
  const [row] = await db()<{ id: string }[]>`
    insert into public.memberships (client_id, user_id, role_id, reports_to)
    values (${clientId}, ${user.id}, ${roleId}, ${reportsTo}) returning id`;
  return { user, membershipId: row.id };
}

async function memberRoleKey(membershipId: string): Promise<string> {
  const [row] = await db()<{ key: string }[]>`
    select r.key from public.memberships m join public.roles r on r.id = m.role_id where m.id = ${membershipId}`;
  return row.key;
}

/**
 * A team plus a delegate: a member whose custom role (rank 25, client scope) holds roles.manage and every
 * other catalog permission except clients.update, so any refusal below comes from the escalation guards.
 */
async function teamWithDelegate() {
  const team = await teamWithTokens();
  const delegatePermissions = CATALOG.filter((code) => code !== "clients.update");
  assert.ok(delegatePermissions.includes("roles.manage"));
  assert.ok(delegatePermissions.includes("members.manage"));
  const delegateRoleId = await insertRole(team.clientId, {
    key: uniq("delegate"),
    name: "Delegate",
    rank: 25,
    scope: "client",
    permissions: delegatePermissions,
  });
  const delegate = await addMemberWithRole(team.clientId, delegateRoleId, team.memberships.owner);
  const token = await signIn(delegate.user, team.clientId);
  return {
    ...team,
    delegate: { ...delegate, roleId: delegateRoleId, token, permissions: delegatePermissions },
  };
}

const rolesPath = (clientId: string) => `/api/clients/${clientId}/roles`;
const rolePath = (clientId: string, roleId: string) => `/api/clients/${clientId}/roles/${roleId}`;

function fieldPaths(reply: Reply): string[] {
  return (reply.body.errors ?? []).map((e: { path: string }) => e.path).sort();
}

function assertProblem(reply: Reply, status: number, code?: string) {
  assert.equal(
    reply.status,
    status,
    `expected ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`,
  );
  assert.equal(reply.headers.get("content-type"), "application/problem+json");
  if (code) assert.equal(reply.body.code, code);
}

async function memberIds(team: Team, token: string): Promise<string[]> {
  const reply = await call(stack, "GET", `/api/clients/${team.clientId}/members?limit=200`, { token });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  return reply.body.data.map((m: { id: string }) => m.id).sort();
}

// -- Catalog and system roles --------------------------------------------------------------------------

test("GET /api/permissions lists exactly the catalog the routes declare", async () => {
  const team = await teamWithTokens();
  for (const token of [team.tokens.owner, team.tokens.viewer]) {
    const reply = await call(stack, "GET", "/api/permissions", { token });
    assert.equal(reply.status, 200);
    const codes = reply.body.data.map((p: { code: string }) => p.code);
    assert.deepEqual(codes, CATALOG, "sorted by code, nothing more, nothing less");
    for (const permission of reply.body.data) {
      assert.equal(permission.description, PERMISSIONS[permission.code]);
    }
  }
  const anonymous = await call(stack, "GET", "/api/permissions");
  assertProblem(anonymous, 401, "missing_token");
});

test("every new client gets the five system roles with their ranks, scopes and permissions", async () => {
  const team = await teamWithTokens();
  const reply = await call(stack, "GET", rolesPath(team.clientId), { token: team.tokens.owner });
  assert.equal(reply.status, 200);
  const roles = reply.body.data as RoleRow[];
  assert.deepEqual(
    roles.map((r) => [r.key, r.rank, r.scope, r.is_system]),
    [
      ["owner", 10, "client", true],
      ["admin", 20, "client", true],
      ["manager", 30, "team", true],
      ["agent", 40, "own", true],
      ["viewer", 50, "own", true],
    ],
    "most powerful first",
  );
  const byKey = Object.fromEntries(roles.map((r) => [r.key, r]));
  assert.deepEqual([...byKey.owner.permissions].sort(), CATALOG, "the owner holds every catalog permission");
  assert.deepEqual([...byKey.admin.permissions].sort(), CATALOG);
  assert.deepEqual([...byKey.viewer.permissions].sort(), READ_CODES, "the viewer only reads");
  assert.ok(byKey.viewer.permissions.every((code) => code.endsWith(".read")));
  for (const key of ["manager", "agent"]) {
    assert.ok(byKey[key].permissions.every((code) => CATALOG.includes(code)), `${key}: catalog codes only`);
    assert.ok(!byKey[key].permissions.includes("roles.manage"));
    assert.ok(!byKey[key].permissions.includes("clients.update"));
  }
  assert.ok(byKey.manager.permissions.includes("members.read"));
  for (const role of roles) assert.equal(role.client_id, team.clientId);

  const viewerView = await call(stack, "GET", rolesPath(team.clientId), { token: team.tokens.viewer });
  assert.equal(viewerView.status, 200, "roles.read is a read permission every system role holds");
  assert.equal(viewerView.body.data.length, 5);
});

// -- Creating roles ------------------------------------------------------------------------------------

test("the owner creates a custom role (201, not a system role); a taken key is a 409", async () => {
  const team = await teamWithTokens();
  const key = uniq("closer");
  const created = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.tokens.owner,
    body: { key, name: "  Closer  ", rank: 35, scope: "team", permissions: ["members.read", "roles.read"] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.key, key);
  assert.equal(created.body.name, "Closer", "the name is trimmed");
  assert.equal(created.body.rank, 35);
  assert.equal(created.body.scope, "team");
  assert.deepEqual([...created.body.permissions].sort(), ["members.read", "roles.read"]);
  assert.equal(created.body.is_system, false);
  assert.equal(created.body.client_id, team.clientId);
  assert.deepEqual(await roleById(created.body.id).then((r) => r?.key), key);

  const list = await call(stack, "GET", rolesPath(team.clientId), { token: team.tokens.owner });
  assert.deepEqual(
    list.body.data.map((r: RoleRow) => r.key),
    ["owner", "admin", "manager", key, "agent", "viewer"],
    "listed in rank order",
  );

  for (const taken of [key, "agent", "owner"]) {
    const duplicate = await call(stack, "POST", rolesPath(team.clientId), {
      token: team.tokens.owner,
      body: { key: taken, name: "Again", rank: 60, scope: "own", permissions: [] },
    });
    assertProblem(duplicate, 409, "role_key_taken");
  }
  const [count] = await db()<{ n: number }[]>`
    select count(*)::int as n from public.roles where client_id = ${team.clientId}`;
  assert.equal(count.n, 6);

  const empty = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.tokens.owner,
    body: { key: uniq("nobody"), name: "Nobody", rank: 1000, scope: "own", permissions: [] },
  });
  assert.equal(empty.status, 201, "a role without permissions is allowed");
  assert.deepEqual(empty.body.permissions, []);
});

test("a permission code outside the catalog is refused with a 422, never a 500", async () => {
  const team = await teamWithTokens();
  const before = Object.keys(await rolesOf(team.clientId)).length;
  // Well-formed codes the routes do not declare: the database refuses them as unknown.
  for (const code of ["leads.destroy", "roles.destroy"]) {
    const reply = await call(stack, "POST", rolesPath(team.clientId), {
      token: team.tokens.owner,
      body: { key: uniq("ghost"), name: "Ghost", rank: 60, scope: "own", permissions: ["roles.read", code] },
    });
    assert.ok(reply.status >= 400 && reply.status < 500, `${code}: got ${reply.status}`);
    assertProblem(reply, 422);
  }
  // Malformed codes fail validation with the element's path.
  const malformed = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.tokens.owner,
    body: { key: uniq("ghost"), name: "Ghost", rank: 60, scope: "own", permissions: ["roles.read", "ROLES"] },
  });
  assertProblem(malformed, 422, "validation_failed");
  assert.deepEqual(fieldPaths(malformed), ["body.permissions.1"]);

  const agentId = (await rolesOf(team.clientId)).agent.id;
  const patch = await call(stack, "PATCH", rolePath(team.clientId, agentId), {
    token: team.tokens.owner,
    body: { permissions: ["members.read", "leads.destroy"] },
  });
  assertProblem(patch, 422);
  assert.equal(Object.keys(await rolesOf(team.clientId)).length, before, "nothing was created");
  assert.equal((await roleById(agentId))!.is_system, true, "nothing was changed");
});

test("a bad key, rank, scope or name is a 422 naming each field", async () => {
  const team = await teamWithTokens();
  const valid = { key: uniq("valid"), name: "Valid", rank: 60, scope: "own", permissions: [] as string[] };
  const cases: Array<[Record<string, unknown>, string[]]> = [
    [{ ...valid, scope: "galaxy" }, ["body.scope"]],
    [{ ...valid, rank: 0 }, ["body.rank"]],
    [{ ...valid, rank: 1001 }, ["body.rank"]],
    [{ ...valid, rank: 12.5 }, ["body.rank"]],
    [{ ...valid, rank: "60" }, ["body.rank"]],
    [{ ...valid, key: "Bad Key" }, ["body.key"]],
    [{ ...valid, key: "9lives" }, ["body.key"]],
    [{ ...valid, key: "" }, ["body.key"]],
    [{ ...valid, key: "k".repeat(64) }, ["body.key"]],
    [{ ...valid, name: "   " }, ["body.name"]],
    [{ ...valid, name: "n".repeat(101) }, ["body.name"]],
    [{ ...valid, permissions: "roles.read" }, ["body.permissions"]],
    [{ key: valid.key }, ["body.name", "body.permissions", "body.rank", "body.scope"]],
    [{ ...valid, scope: "everything", rank: -1, key: "X" }, ["body.key", "body.rank", "body.scope"]],
  ];
  for (const [body, paths] of cases) {
    const reply = await call(stack, "POST", rolesPath(team.clientId), { token: team.tokens.owner, body });
    assertProblem(reply, 422, "validation_failed");
    assert.deepEqual(fieldPaths(reply), paths, JSON.stringify(body));
  }
  assert.equal(Object.keys(await rolesOf(team.clientId)).length, 5, "nothing was created");
});

test("unknown fields are a 422 on create and update; so is an empty update and a malformed role id", async () => {
  const team = await teamWithTokens();
  const create = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.tokens.owner,
    body: {
      key: uniq("extra"),
      name: "Extra",
      rank: 60,
      scope: "own",
      permissions: [],
      is_system: true,
      client_id: "someone-else",
    },
  });
  assertProblem(create, 422, "validation_failed");
  assert.deepEqual(fieldPaths(create), ["body.client_id", "body.is_system"]);
  assert.ok(create.body.errors.every((e: { code: string }) => e.code === "unknown_field"));

  const agent = (await rolesOf(team.clientId)).agent;
  const update = await call(stack, "PATCH", rolePath(team.clientId, agent.id), {
    token: team.tokens.owner,
    body: { name: "Field agent", key: "field-agent", is_system: false },
  });
  assertProblem(update, 422, "validation_failed");
  assert.deepEqual(fieldPaths(update), ["body.is_system", "body.key"]);

  const emptyUpdate = await call(stack, "PATCH", rolePath(team.clientId, agent.id), {
    token: team.tokens.owner,
    body: {},
  });
  assertProblem(emptyUpdate, 422, "validation_failed");

  const badRank = await call(stack, "PATCH", rolePath(team.clientId, agent.id), {
    token: team.tokens.owner,
    body: { rank: 0, scope: "planet" },
  });
  assertProblem(badRank, 422, "validation_failed");
  assert.deepEqual(fieldPaths(badRank), ["body.rank", "body.scope"]);

  const badId = await call(stack, "PATCH", rolePath(team.clientId, "not-a-uuid"), {
    token: team.tokens.owner,
    body: { name: "x" },
  });
  assertProblem(badId, 422, "validation_failed");
  assert.deepEqual(fieldPaths(badId), ["param.roleId"]);
  const badDelete = await call(stack, "DELETE", rolePath(team.clientId, "not-a-uuid"), {
    token: team.tokens.owner,
  });
  assertProblem(badDelete, 422, "validation_failed");

  assert.deepEqual(await roleById(agent.id), agent, "the agent role is untouched");
});

// -- Escalation guards ---------------------------------------------------------------------------------

test("a delegate with roles.manage cannot create a role holding a permission they lack", async () => {
  const team = await teamWithDelegate();
  const reply = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.delegate.token,
    body: { key: uniq("editor"), name: "Editor", rank: 30, scope: "own", permissions: ["clients.update"] },
  });
  assertProblem(reply, 403, "forbidden");
  const mixed = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.delegate.token,
    body: {
      key: uniq("editor"),
      name: "Editor",
      rank: 60,
      scope: "own",
      permissions: ["members.read", "clients.update"],
    },
  });
  assertProblem(mixed, 403, "forbidden");
  assert.equal(Object.keys(await rolesOf(team.clientId)).length, 6, "only the five system roles and theirs");

  const allowed = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.delegate.token,
    body: {
      key: uniq("helper"),
      name: "Helper",
      rank: 25,
      scope: "client",
      permissions: team.delegate.permissions,
    },
  });
  assert.equal(allowed.status, 201, "a role at their own rank with their own permissions is fine");
});

test("a delegate cannot create a role ranked above their own", async () => {
  const team = await teamWithDelegate();
  for (const rank of [24, 20, 10, 1]) {
    const reply = await call(stack, "POST", rolesPath(team.clientId), {
      token: team.delegate.token,
      body: { key: uniq("boss"), name: "Boss", rank, scope: "own", permissions: ["roles.read"] },
    });
    assertProblem(reply, 403, "forbidden");
  }
  assert.equal(Object.keys(await rolesOf(team.clientId)).length, 6);
});

test("a delegate cannot edit or delete roles ranked above their own, nor raise a role above themselves", async () => {
  const team = await teamWithDelegate();
  const before = await rolesOf(team.clientId);
  const unusedBoss = await insertRole(team.clientId, {
    rank: 15,
    scope: "client",
    permissions: ["roles.read"],
  });

  for (const roleId of [before.admin.id, before.owner.id, unusedBoss]) {
    const rename = await call(stack, "PATCH", rolePath(team.clientId, roleId), {
      token: team.delegate.token,
      body: { name: "Taken over" },
    });
    assertProblem(rename, 403, "forbidden");
    const demote = await call(stack, "PATCH", rolePath(team.clientId, roleId), {
      token: team.delegate.token,
      body: { rank: 900, permissions: [] },
    });
    assertProblem(demote, 403, "forbidden");
  }
  const deleteUnused = await call(stack, "DELETE", rolePath(team.clientId, unusedBoss), {
    token: team.delegate.token,
  });
  assertProblem(deleteUnused, 403, "forbidden");
  // The admin role is held by a member; the rank guard still answers first: the caller may never delete it.
  const deleteAdmin = await call(stack, "DELETE", rolePath(team.clientId, before.admin.id), {
    token: team.delegate.token,
  });
  assertProblem(deleteAdmin, 403);

  // Roles below them cannot be lifted above them or given what they lack.
  const lift = await call(stack, "PATCH", rolePath(team.clientId, before.manager.id), {
    token: team.delegate.token,
    body: { rank: 20 },
  });
  assertProblem(lift, 403, "forbidden");
  const grant = await call(stack, "PATCH", rolePath(team.clientId, before.manager.id), {
    token: team.delegate.token,
    body: { permissions: [...before.manager.permissions, "clients.update"] },
  });
  assertProblem(grant, 403, "forbidden");
  const ownRole = await call(stack, "PATCH", rolePath(team.clientId, team.delegate.roleId), {
    token: team.delegate.token,
    body: { permissions: CATALOG },
  });
  assertProblem(ownRole, 403, "forbidden");
  const raiseSelf = await call(stack, "PATCH", rolePath(team.clientId, team.delegate.roleId), {
    token: team.delegate.token,
    body: { rank: 11 },
  });
  assertProblem(raiseSelf, 403, "forbidden");

  const after = await rolesOf(team.clientId);
  for (const key of Object.keys(before)) assert.deepEqual(after[key], before[key], `${key} is unchanged`);
  assert.equal((await roleById(unusedBoss))?.rank, 15, "the unused role above them still exists");

  const allowed = await call(stack, "PATCH", rolePath(team.clientId, before.manager.id), {
    token: team.delegate.token,
    body: { name: "Team lead" },
  });
  assert.equal(allowed.status, 200, "roles below them, within their permissions, are theirs to edit");
});

test("a delegate cannot assign a member a role above theirs or with permissions they lack", async () => {
  const team = await teamWithDelegate();
  const editorRole = await insertRole(team.clientId, {
    key: uniq("editor"),
    rank: 30,
    scope: "own",
    permissions: ["clients.update", "members.read"],
  });
  const editorKey = (await roleById(editorRole))!.key;
  const path = `/api/clients/${team.clientId}/members/${team.memberships.agent}`;
  for (const role of [editorKey, "admin", "owner"]) {
    const reply = await call(stack, "PATCH", path, { token: team.delegate.token, body: { role } });
    assertProblem(reply, 403, "forbidden");
    assert.equal(await memberRoleKey(team.memberships.agent), "agent", `${role} was not assigned`);
  }
  // Nor can they hand themselves more.
  const self = await call(
    stack,
    "PATCH",
    `/api/clients/${team.clientId}/members/${team.delegate.membershipId}`,
    {
      token: team.delegate.token,
      body: { role: editorKey },
    },
  );
  assertProblem(self, 403, "forbidden");

  const allowed = await call(stack, "PATCH", path, { token: team.delegate.token, body: { role: "viewer" } });
  assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
  assert.equal(allowed.body.role.key, "viewer");
});

test("a team-scoped delegate cannot widen their own role's scope to see the whole client", async () => {
  const team = await teamWithTokens();
  const leadRoleId = await insertRole(team.clientId, {
    key: uniq("team-lead"),
    rank: 25,
    scope: "team",
    permissions: ["roles.manage", "roles.read", "members.read"],
  });
  const lead = await addMemberWithRole(team.clientId, leadRoleId, team.memberships.admin);
  const token = await signIn(lead.user, team.clientId);
  assert.deepEqual(await memberIds(team, token), [lead.membershipId]);

  const widen = await call(stack, "PATCH", rolePath(team.clientId, leadRoleId), {
    token,
    body: { scope: "client" },
  });
  assertProblem(widen, 403, "forbidden");
  assert.equal((await roleById(leadRoleId))?.scope, "team");
  assert.deepEqual(await memberIds(team, token), [lead.membershipId], "still sees only their own team");
});

test("the owner role cannot be edited or deleted, even by the owner", async () => {
  const team = await teamWithTokens();
  const owner = (await rolesOf(team.clientId)).owner;
  for (
    const body of [{ name: "Boss" }, { permissions: ["roles.read"] }, { rank: 50 }, { scope: "own" }]
  ) {
    const reply = await call(stack, "PATCH", rolePath(team.clientId, owner.id), {
      token: team.tokens.owner,
      body,
    });
    assertProblem(reply, 403, "forbidden");
  }
  const remove = await call(stack, "DELETE", rolePath(team.clientId, owner.id), { token: team.tokens.owner });
  assertProblem(remove, 403);
  assert.deepEqual(await roleById(owner.id), owner, "the owner role is untouched");

  const admin = await call(stack, "DELETE", rolePath(team.clientId, owner.id), { token: team.tokens.admin });
  assertProblem(admin, 403);
});

// -- System roles detach when edited -------------------------------------------------------------------

test("renaming a system role keeps it a system role; changing permissions, rank or scope detaches it", async () => {
  const team = await teamWithTokens();
  const roles = await rolesOf(team.clientId);

  const rename = await call(stack, "PATCH", rolePath(team.clientId, roles.agent.id), {
    token: team.tokens.owner,
    body: { name: "Field agent" },
  });
  assert.equal(rename.status, 200, JSON.stringify(rename.body));
  assert.equal(rename.body.name, "Field agent");
  assert.equal(rename.body.key, "agent");
  assert.equal(rename.body.is_system, true, "a new name still mirrors the template");
  assert.deepEqual(rename.body.permissions, roles.agent.permissions);
  assert.ok(rename.body.updated_at > roles.agent.updated_at, "updated_at moves");

  const permissions = await call(stack, "PATCH", rolePath(team.clientId, roles.agent.id), {
    token: team.tokens.owner,
    body: { permissions: ["members.read", "roles.read"] },
  });
  assert.equal(permissions.status, 200);
  assert.equal(permissions.body.is_system, false);
  assert.equal(permissions.body.name, "Field agent");
  assert.deepEqual([...permissions.body.permissions].sort(), ["members.read", "roles.read"]);

  const rank = await call(stack, "PATCH", rolePath(team.clientId, roles.viewer.id), {
    token: team.tokens.owner,
    body: { rank: 55 },
  });
  assert.equal(rank.status, 200);
  assert.equal(rank.body.is_system, false);
  assert.equal(rank.body.rank, 55);

  const scope = await call(stack, "PATCH", rolePath(team.clientId, roles.manager.id), {
    token: team.tokens.admin,
    body: { scope: "client" },
  });
  assert.equal(scope.status, 200);
  assert.equal(scope.body.is_system, false);
  assert.equal(scope.body.scope, "client");

  const cleared = await call(stack, "PATCH", rolePath(team.clientId, roles.viewer.id), {
    token: team.tokens.owner,
    body: { permissions: [] },
  });
  assert.equal(cleared.status, 200, JSON.stringify(cleared.body));
  assert.deepEqual(cleared.body.permissions, []);

  const after = await rolesOf(team.clientId);
  assert.equal(after.agent.is_system, false);
  assert.equal(after.admin.is_system, true, "untouched roles still mirror their templates");
  assert.equal(after.owner.is_system, true);
});

// -- Changes apply on the next request ------------------------------------------------------------------

test("removing members.read from the agent role refuses the agent's very next member list", async () => {
  const team = await teamWithTokens();
  const agentRole = (await rolesOf(team.clientId)).agent;
  assert.equal((await memberIds(team, team.tokens.agent)).length, 1, "an own-scoped agent sees themselves");

  const without = agentRole.permissions.filter((code) => code !== "members.read");
  const patch = await call(stack, "PATCH", rolePath(team.clientId, agentRole.id), {
    token: team.tokens.owner,
    body: { permissions: without },
  });
  assert.equal(patch.status, 200);
  const refused = await call(stack, "GET", `/api/clients/${team.clientId}/members`, {
    token: team.tokens.agent,
  });
  assertProblem(refused, 403, "permission_denied");
  const stillReads = await call(stack, "GET", rolesPath(team.clientId), { token: team.tokens.agent });
  assert.equal(stillReads.status, 200, "the permissions left still work");

  const restore = await call(stack, "PATCH", rolePath(team.clientId, agentRole.id), {
    token: team.tokens.owner,
    body: { permissions: agentRole.permissions },
  });
  assert.equal(restore.status, 200);
  assert.deepEqual(await memberIds(team, team.tokens.agent), [team.memberships.agent]);
});

test("widening the manager role's scope to the client shows the whole client next request, and back", async () => {
  const team = await teamWithTokens();
  const managerRole = (await rolesOf(team.clientId)).manager;
  const teamView = [team.memberships.manager, team.memberships.agent].sort();
  const everyone = Object.values(team.memberships).sort();
  assert.deepEqual(await memberIds(team, team.tokens.manager), teamView);

  const widen = await call(stack, "PATCH", rolePath(team.clientId, managerRole.id), {
    token: team.tokens.owner,
    body: { scope: "client" },
  });
  assert.equal(widen.status, 200);
  const wide = await memberIds(team, team.tokens.manager);
  assert.deepEqual(wide, everyone);
  assert.ok(wide.includes(team.memberships.otherAgent), "a member outside their team is visible");

  const narrow = await call(stack, "PATCH", rolePath(team.clientId, managerRole.id), {
    token: team.tokens.owner,
    body: { scope: "team" },
  });
  assert.equal(narrow.status, 200);
  assert.deepEqual(await memberIds(team, team.tokens.manager), teamView);

  const own = await call(stack, "PATCH", rolePath(team.clientId, managerRole.id), {
    token: team.tokens.owner,
    body: { scope: "own" },
  });
  assert.equal(own.status, 200);
  assert.deepEqual(await memberIds(team, team.tokens.manager), [team.memberships.manager]);
});

// -- Deleting roles ------------------------------------------------------------------------------------

test("a role a member holds cannot be deleted (409); an unused custom role can (204)", async () => {
  const team = await teamWithTokens();
  const roles = await rolesOf(team.clientId);
  for (const key of ["agent", "manager", "viewer", "admin"]) {
    const reply = await call(stack, "DELETE", rolePath(team.clientId, roles[key].id), {
      token: team.tokens.owner,
    });
    assertProblem(reply, 409, "role_in_use");
    assert.ok(await roleById(roles[key].id), `${key} still exists`);
  }

  const custom = await call(stack, "POST", rolesPath(team.clientId), {
    token: team.tokens.owner,
    body: { key: uniq("temp"), name: "Temporary", rank: 70, scope: "own", permissions: ["roles.read"] },
  });
  assert.equal(custom.status, 201);
  // Held by a member the role's own holder cannot see still counts.
  const holder = await addMemberWithRole(team.clientId, custom.body.id, team.memberships.admin);
  const held = await call(stack, "DELETE", rolePath(team.clientId, custom.body.id), {
    token: team.tokens.owner,
  });
  assertProblem(held, 409, "role_in_use");
  await db()`delete from public.memberships where id = ${holder.membershipId}`;

  const removed = await call(stack, "DELETE", rolePath(team.clientId, custom.body.id), {
    token: team.tokens.owner,
  });
  assert.equal(removed.status, 204);
  assert.equal(removed.body, null);
  assert.equal(await roleById(custom.body.id), undefined);
  const list = await call(stack, "GET", rolesPath(team.clientId), { token: team.tokens.owner });
  assert.ok(!list.body.data.some((r: RoleRow) => r.id === custom.body.id), "no longer listed");
  assert.equal(list.body.data.length, 5);

  const again = await call(stack, "DELETE", rolePath(team.clientId, custom.body.id), {
    token: team.tokens.owner,
  });
  assertProblem(again, 404, "role_not_found");

  const unusedSystem = await call(stack, "DELETE", rolePath(team.clientId, roles.viewer.id), {
    token: team.tokens.owner,
  });
  assertProblem(unusedSystem, 409, "role_in_use");
});

test("a role id of another client is a 404 on PATCH and DELETE, and stays untouched", async () => {
  const a = await teamWithTokens();
  const b = await teamWithTokens();
  const bRoles = await rolesOf(b.clientId);
  const unusedB = await insertRole(b.clientId, { rank: 80, scope: "own", permissions: [] });

  for (const roleId of [bRoles.agent.id, bRoles.viewer.id, unusedB, crypto.randomUUID()]) {
    const patch = await call(stack, "PATCH", rolePath(a.clientId, roleId), {
      token: a.tokens.owner,
      body: { name: "Hijacked" },
    });
    assertProblem(patch, 404, "role_not_found");
    const remove = await call(stack, "DELETE", rolePath(a.clientId, roleId), { token: a.tokens.owner });
    assertProblem(remove, 404, "role_not_found");
  }

  // Even when the caller also manages the other client, the URL's client decides.
  await db()`
    insert into public.memberships (client_id, user_id, role_id)
    values (${b.clientId}, ${a.users.owner.id}, ${bRoles.owner.id})`;
  for (const roleId of [bRoles.agent.id, unusedB]) {
    const patch = await call(stack, "PATCH", rolePath(a.clientId, roleId), {
      token: a.tokens.owner,
      body: { name: "Hijacked" },
    });
    assertProblem(patch, 404, "role_not_found");
    const remove = await call(stack, "DELETE", rolePath(a.clientId, roleId), { token: a.tokens.owner });
    assertProblem(remove, 404, "role_not_found");
  }

  const after = await rolesOf(b.clientId);
  for (const key of Object.keys(bRoles)) assert.deepEqual(after[key], bRoles[key]);
  assert.ok(await roleById(unusedB));
});

// -- Who may use the endpoints --------------------------------------------------------------------------

test("a member of another client gets 404 on every roles endpoint of client A", async () => {
  const a = await teamWithTokens();
  const b = await teamWithTokens();
  const agentA = (await rolesOf(a.clientId)).agent;
  const outsiders = [b.tokens.owner, await signIn(b.users.owner), b.tokens.viewer];
  for (const token of outsiders) {
    const list = await call(stack, "GET", rolesPath(a.clientId), { token });
    assertProblem(list, 404, "client_not_found");
    const create = await call(stack, "POST", rolesPath(a.clientId), {
      token,
      body: { key: uniq("spy"), name: "Spy", rank: 60, scope: "own", permissions: [] },
    });
    assertProblem(create, 404, "client_not_found");
    const patch = await call(stack, "PATCH", rolePath(a.clientId, agentA.id), {
      token,
      body: { name: "Spy" },
    });
    assertProblem(patch, 404, "client_not_found");
    const remove = await call(stack, "DELETE", rolePath(a.clientId, agentA.id), { token });
    assertProblem(remove, 404, "client_not_found");
  }
  const missing = await call(stack, "GET", rolesPath(uniq("no-such-client")), { token: b.tokens.owner });
  assertProblem(missing, 404, "client_not_found");
  assert.deepEqual(await roleById(agentA.id), agentA);
  assert.equal(Object.keys(await rolesOf(a.clientId)).length, 5);
});

test("members without roles.manage get 403 on create, update and delete", async () => {
  const team = await teamWithTokens();
  const roles = await rolesOf(team.clientId);
  const unused = await insertRole(team.clientId, { rank: 90, scope: "own", permissions: [] });
  for (const token of [team.tokens.viewer, team.tokens.agent, team.tokens.manager]) {
    const create = await call(stack, "POST", rolesPath(team.clientId), {
      token,
      body: { key: uniq("mine"), name: "Mine", rank: 95, scope: "own", permissions: [] },
    });
    assertProblem(create, 403, "permission_denied");
    for (const roleId of [roles.viewer.id, unused]) {
      const patch = await call(stack, "PATCH", rolePath(team.clientId, roleId), {
        token,
        body: { name: "Mine" },
      });
      assertProblem(patch, 403, "permission_denied");
      const remove = await call(stack, "DELETE", rolePath(team.clientId, roleId), { token });
      assertProblem(remove, 403, "permission_denied");
    }
  }
  const after = await rolesOf(team.clientId);
  for (const key of Object.keys(roles)) assert.deepEqual(after[key], roles[key]);
  assert.ok(await roleById(unused));
});
