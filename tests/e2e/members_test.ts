/**
 * The user service over HTTP: memberships (listing, adding people by email with invitations, changing
 * roles and managers, removing), the role-escalation and last-owner guards, and global accounts
 * (reading, disabling and enabling).
 */
import assert from "node:assert/strict";
import {
  actAs,
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
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

/** Logs a fixture user in (every fixture has PASSWORD) and returns the access token. */
async function signIn(user: { email: string }, clientId: string | null = null): Promise<string> {
  return (await login(stack, user.email, PASSWORD, clientId ?? undefined)).access_token;
}

const newEmail = () => `${uniq("invitee")}@example.com`;

async function userByEmail(email: string) {
  const [row] = await db()<{ id: string; disabled: boolean }[]>`
    select id, disabled_at is not null as disabled from public.users where email = ${email.toLowerCase()}`;
  return row;
}

async function membership(id: string) {
  const [row] = await db()<{ role: string; reports_to: string | null }[]>`
    select r.key as role, m.reports_to from public.memberships m join public.roles r on r.id = m.role_id
    where m.id = ${id}`;
  return row;
}

async function isDisabled(userId: string): Promise<boolean> {
  const [row] = await db()<{ disabled: boolean }[]>`
    select disabled_at is not null as disabled from public.users where id = ${userId}`;
  return row.disabled;
}

const platformAdmin = await createUser({ admin: true, name: "Platform admin" });
const adminToken = await signIn(platformAdmin);

// -- Listing -------------------------------------------------------------------------------------------

test("members.read lists a client's members oldest first, page by page with next_cursor", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const seen: string[] = [];
  let cursor: string | null = null;
  let pages = 0;
  do {
    const path: string = `/api/clients/${team.clientId}/members?limit=2${cursor ? `&cursor=${cursor}` : ""}`;
    const reply = await call(stack, "GET", path, { token });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.ok(reply.body.data.length <= 2, "a page holds at most limit rows");
    for (const m of reply.body.data) {
      assert.equal(m.client_id, team.clientId);
      assert.ok(m.user.id && m.user.email && m.role.key, "each member carries its user and role");
      seen.push(m.id);
    }
    cursor = reply.body.next_cursor;
    pages++;
    assert.ok(pages < 10, "pagination terminates");
  } while (cursor !== null);
  const m = team.memberships;
  assert.equal(pages, 3, "six members in pages of two");
  assert.deepEqual(
    seen,
    [m.owner, m.admin, m.manager, m.agent, m.otherAgent, m.viewer],
    "every member once, oldest first",
  );
});

test("a tampered member-list cursor is a 422 naming query.cursor, never a 500", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  // Well-formed cursors (two strings) whose values are not a timestamp and a uuid.
  const tampered = [["not-a-date", crypto.randomUUID()], ["2024-01-01T00:00:00Z", "not-a-uuid"]];
  for (const position of tampered) {
    const cursor = btoa(JSON.stringify(position)).replaceAll("=", "");
    const reply = await call(stack, "GET", `/api/clients/${team.clientId}/members?cursor=${cursor}`, {
      token,
    });
    assert.equal(reply.status, 422, `cursor ${JSON.stringify(position)}: ${JSON.stringify(reply.body)}`);
    assert.equal(reply.body.errors?.[0]?.path, "query.cursor", `cursor ${JSON.stringify(position)}`);
  }
});

test("an agent may list the members of their client (agents hold members.read)", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.agent, team.clientId);
  const reply = await call(stack, "GET", `/api/clients/${team.clientId}/members`, { token });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const ids = reply.body.data.map((m: { id: string }) => m.id);
  assert.ok(ids.includes(team.memberships.agent), "the agent sees at least their own membership");
  assert.ok(
    reply.body.data.every((m: { client_id: string }) => m.client_id === team.clientId),
    "only this client",
  );
  assert.equal(reply.body.next_cursor, null);
});

test("a member of another client gets 404 client_not_found for this client's member list", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const token = await signIn(b.users.owner, b.clientId);
  const reply = await call(stack, "GET", `/api/clients/${a.clientId}/members`, { token });
  assert.equal(reply.status, 404, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "client_not_found");
});

// -- Adding --------------------------------------------------------------------------------------------

test("adding a new email creates an account with a one-time invitation that sets a password and logs in", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const email = newEmail();
  const added = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email, full_name: "New Agent", role: "agent", reports_to: team.memberships.manager },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  const { member, invitation } = added.body;
  assert.equal(member.client_id, team.clientId);
  assert.equal(member.user.email, email);
  assert.equal(member.user.full_name, "New Agent");
  assert.equal(member.user.disabled, false);
  assert.equal(member.role.key, "agent");
  assert.equal(member.reports_to, team.memberships.manager);
  assert.match(invitation.token, /^lap_inv_[\w-]{40,}$/, "a random one-time token");
  const expires = Date.parse(invitation.expires_at);
  assert.ok(expires > Date.now() + 6 * 86400_000, "the invitation lasts about a week");

  const accepted = await call(stack, "POST", "/auth/invitations/accept", {
    body: { token: invitation.token, password: PASSWORD },
  });
  assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
  assert.ok(accepted.body.access_token && accepted.body.refresh_token, "accepting logs the person in");
  assert.equal(accepted.body.client_id, team.clientId, "the session starts in the inviting client");
  const me = await call(stack, "GET", "/auth/me", { token: accepted.body.access_token });
  assert.equal(me.status, 200);
  assert.equal(me.body.user.id, member.user.id);

  const session = await login(stack, email, PASSWORD);
  assert.ok(session.access_token, "the chosen password logs in");

  const again = await call(stack, "POST", "/auth/invitations/accept", {
    body: { token: invitation.token, password: "another-password-123" },
  });
  assert.equal(again.status, 401, JSON.stringify(again.body));
  assert.equal(again.body.code, "invitation_invalid", "an invitation works once");
});

test("adding an existing user (email in another case) to a second client reuses their account without an invitation", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const person = a.users.agent;
  const token = await signIn(b.users.owner, b.clientId);

  const added = await call(stack, "POST", `/api/clients/${b.clientId}/members`, {
    token,
    body: { email: person.email.toUpperCase(), full_name: "Ignored Name", role: "viewer" },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  assert.equal(added.body.invitation, null, "an existing account gets no invitation");
  assert.equal(added.body.member.user.id, person.id, "one global account");
  assert.equal(added.body.member.user.email, person.email, "the stored email stays lower-case");
  assert.equal(added.body.member.role.key, "viewer");
  const [{ count }] =
    await db()`select count(*)::int as count from public.users where lower(email) = ${person.email}`;
  assert.equal(count, 1, "no second account was created");

  const me = await call(stack, "GET", "/auth/me", { token: await signIn(person, a.clientId) });
  assert.deepEqual(
    me.body.memberships.map((m: { client_id: string }) => m.client_id).sort(),
    [a.clientId, b.clientId].sort(),
    "the person now belongs to both clients",
  );

  const twice = await call(stack, "POST", `/api/clients/${b.clientId}/members`, {
    token,
    body: { email: person.email, full_name: "Again", role: "agent" },
  });
  assert.equal(twice.status, 409, JSON.stringify(twice.body));
  assert.equal(twice.body.code, "already_a_member");
});

test("an unknown role key is a 422 naming body.role and creates no account", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const email = newEmail();
  const reply = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email, full_name: "Nobody", role: "emperor" },
  });
  assert.equal(reply.status, 422, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "validation_failed");
  assert.deepEqual(reply.body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    ["body.role", "unknown_role"],
  ]);
  assert.equal(await userByEmail(email), undefined);
});

test("reports_to must be a membership of the same client (422 invalid_reference from the composite key)", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const token = await signIn(a.users.owner, a.clientId);
  const email = newEmail();
  const added = await call(stack, "POST", `/api/clients/${a.clientId}/members`, {
    token,
    body: { email, full_name: "Cross", role: "agent", reports_to: b.memberships.manager },
  });
  assert.equal(added.status, 422, JSON.stringify(added.body));
  assert.equal(added.body.code, "invalid_reference");
  assert.equal(await userByEmail(email), undefined, "the account creation was rolled back");

  const moved = await call(stack, "PATCH", `/api/clients/${a.clientId}/members/${a.memberships.agent}`, {
    token,
    body: { reports_to: b.memberships.manager },
  });
  assert.equal(moved.status, 422, JSON.stringify(moved.body));
  assert.equal(moved.body.code, "invalid_reference");
  assert.equal((await membership(a.memberships.agent)).reports_to, a.memberships.manager, "unchanged");
});

test("an agent, who lacks members.manage, cannot add members (403 permission_denied)", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.agent, team.clientId);
  const email = newEmail();
  const reply = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email, full_name: "Friend", role: "viewer" },
  });
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "permission_denied");
  assert.equal(await userByEmail(email), undefined);
});

test("the owner of another client cannot add members here and gets 404 client_not_found", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const token = await signIn(b.users.owner, b.clientId);
  const email = newEmail();
  const reply = await call(stack, "POST", `/api/clients/${a.clientId}/members`, {
    token,
    body: { email, full_name: "Spy", role: "admin" },
  });
  assert.equal(reply.status, 404, JSON.stringify(reply.body));
  assert.equal(reply.body.code, "client_not_found");
  assert.equal(await userByEmail(email), undefined);
});

// -- Role escalation -----------------------------------------------------------------------------------

test("an admin cannot add a member as owner (403) and no account is left behind", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.admin, team.clientId);
  const email = newEmail();
  const reply = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email, full_name: "Co-owner", role: "owner" },
  });
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal(await userByEmail(email), undefined, "the transaction was rolled back");

  const peer = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email: newEmail(), full_name: "Peer", role: "admin" },
  });
  assert.equal(peer.status, 201, "an admin may add at their own rank");
});

test("an admin cannot promote a member to owner (403)", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.admin, team.clientId);
  const reply = await call(
    stack,
    "PATCH",
    `/api/clients/${team.clientId}/members/${team.memberships.agent}`,
    {
      token,
      body: { role: "owner" },
    },
  );
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal((await membership(team.memberships.agent)).role, "agent", "the role is unchanged");

  const promoted = await call(
    stack,
    "PATCH",
    `/api/clients/${team.clientId}/members/${team.memberships.agent}`,
    { token, body: { role: "manager" } },
  );
  assert.equal(promoted.status, 200, "promotion up to a rank below the admin's own is allowed");
  assert.equal(promoted.body.role.key, "manager");
});

test("an admin cannot change or remove the owner (403)", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.admin, team.clientId);
  const path = `/api/clients/${team.clientId}/members/${team.memberships.owner}`;

  const demote = await call(stack, "PATCH", path, { token, body: { role: "viewer" } });
  assert.equal(demote.status, 403, `demotion: ${JSON.stringify(demote.body)}`);
  const reassign = await call(stack, "PATCH", path, { token, body: { reports_to: team.memberships.admin } });
  assert.equal(reassign.status, 403, `manager change: ${JSON.stringify(reassign.body)}`);
  const remove = await call(stack, "DELETE", path, { token });
  assert.equal(remove.status, 403, `removal: ${JSON.stringify(remove.body)}`);

  assert.deepEqual(
    await membership(team.memberships.owner),
    { role: "owner", reports_to: null },
    "untouched",
  );
});

test("through SQL (as supabase-js would), an admin cannot hand the owner's membership to another account", async () => {
  const team = await createTeam();
  const accomplice = await createUser({ name: "Accomplice" });
  const moved = await actAs(
    team.users.admin.id,
    team.clientId,
    (tx) =>
      tx`update public.memberships set user_id = ${accomplice.id}
       where id = ${team.memberships.owner} returning id`,
  ).then((rows) => rows.length, (error) => error);
  const [row] = await db()<{ user_id: string }[]>`
    select user_id from public.memberships where id = ${team.memberships.owner}`;
  assert.equal(
    row.user_id,
    team.users.owner.id,
    `the owner membership must stay with the owner; the update gave ${JSON.stringify(moved)}`,
  );
});

// -- Last owner ----------------------------------------------------------------------------------------

test("the only owner can be neither removed nor demoted: 422 constraint_violation, never a 500", async () => {
  const team = await createTeam();
  const path = `/api/clients/${team.clientId}/members/${team.memberships.owner}`;

  // A platform administrator outranks everyone, so only the last-owner rule can refuse.
  const demote = await call(stack, "PATCH", path, { token: adminToken, body: { role: "admin" } });
  assert.equal(demote.status, 422, JSON.stringify(demote.body));
  assert.equal(demote.body.code, "constraint_violation");
  assert.match(demote.body.detail, /must keep at least one owner/);
  const remove = await call(stack, "DELETE", path, { token: adminToken });
  assert.equal(remove.status, 422, JSON.stringify(remove.body));
  assert.equal(remove.body.code, "constraint_violation");

  const ownerToken = await signIn(team.users.owner, team.clientId);
  const leave = await call(stack, "DELETE", path, { token: ownerToken });
  assert.equal(leave.status, 422, `the owner removing themselves: ${JSON.stringify(leave.body)}`);
  assert.equal(leave.body.code, "constraint_violation");
  assert.equal((await membership(team.memberships.owner)).role, "owner", "still the owner");

  // With a second owner the first may step down.
  const second = await call(
    stack,
    "PATCH",
    `/api/clients/${team.clientId}/members/${team.memberships.admin}`,
    {
      token: ownerToken,
      body: { role: "owner" },
    },
  );
  assert.equal(second.status, 200, JSON.stringify(second.body));
  const stepDown = await call(stack, "PATCH", path, { token: adminToken, body: { role: "admin" } });
  assert.equal(stepDown.status, 200, JSON.stringify(stepDown.body));
  assert.equal(stepDown.body.role.key, "admin");
});

// -- Removing ------------------------------------------------------------------------------------------

test("removing a member (204) refuses their token on the next request with 403 membership_revoked and moves their reports to their manager", async () => {
  const team = await createTeam();
  const manager = await signIn(team.users.manager, team.clientId);
  const owner = await signIn(team.users.owner, team.clientId);
  assert.equal((await call(stack, "GET", `/api/clients/${team.clientId}`, { token: manager })).status, 200);

  const path = `/api/clients/${team.clientId}/members/${team.memberships.manager}`;
  const removed = await call(stack, "DELETE", path, { token: owner });
  assert.equal(removed.status, 204, JSON.stringify(removed.body));
  assert.equal(removed.body, null, "204 has no body");

  const refused = await call(stack, "GET", `/api/clients/${team.clientId}`, { token: manager });
  assert.equal(refused.status, 403, JSON.stringify(refused.body));
  assert.equal(refused.body.code, "membership_revoked");

  assert.equal(
    (await membership(team.memberships.agent)).reports_to,
    team.memberships.admin,
    "the manager's agent now reports to the manager's own manager",
  );
  const list = await call(stack, "GET", `/api/clients/${team.clientId}/members`, { token: owner });
  assert.ok(
    !list.body.data.some((m: { id: string }) => m.id === team.memberships.manager),
    "no longer listed",
  );

  const again = await call(stack, "DELETE", path, { token: owner });
  assert.equal(again.status, 404, "removing twice is a 404");
  assert.equal(again.body.code, "member_not_found");
});

// -- Accounts ------------------------------------------------------------------------------------------

test("a platform administrator disables a user: token 401 user_disabled, login 403 user_disabled, enable restores login", async () => {
  const team = await createTeam();
  const person = team.users.viewer;
  const token = await signIn(person, team.clientId);
  assert.equal((await call(stack, "GET", `/api/users/${person.id}`, { token })).status, 200);

  const disabled = await call(stack, "POST", `/api/users/${person.id}/disable`, { token: adminToken });
  assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
  assert.equal(disabled.body.id, person.id);
  assert.equal(disabled.body.disabled, true);

  const refused = await call(stack, "GET", `/api/clients/${team.clientId}`, { token });
  assert.equal(refused.status, 401, JSON.stringify(refused.body));
  assert.equal(refused.body.code, "user_disabled");
  const loginRefused = await call(stack, "POST", "/auth/login", {
    body: { email: person.email, password: PASSWORD },
  });
  assert.equal(loginRefused.status, 403, JSON.stringify(loginRefused.body));
  assert.equal(loginRefused.body.code, "user_disabled");

  const enabled = await call(stack, "POST", `/api/users/${person.id}/enable`, { token: adminToken });
  assert.equal(enabled.status, 200, JSON.stringify(enabled.body));
  assert.equal(enabled.body.disabled, false);
  const session = await login(stack, person.email);
  assert.ok(session.access_token, "login works again");
  const stale = await call(stack, "GET", `/api/clients/${team.clientId}`, { token });
  assert.equal(stale.status, 401, "disabling ended the old session for good");
  assert.equal(stale.body.code, "session_revoked");
});

test("a client owner may disable a user who belongs only to their client", async () => {
  const team = await createTeam();
  const token = await signIn(team.users.owner, team.clientId);
  const reply = await call(stack, "POST", `/api/users/${team.users.agent.id}/disable`, { token });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.disabled, true);
  assert.equal(await isDisabled(team.users.agent.id), true);
});

test("a client owner cannot disable a user who also belongs to another client (403)", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const shared = a.users.agent;
  await addMember(b.clientId, shared.id, "agent");
  const token = await signIn(a.users.owner, a.clientId);
  const reply = await call(stack, "POST", `/api/users/${shared.id}/disable`, { token });
  assert.equal(reply.status, 403, JSON.stringify(reply.body));
  assert.equal(await isDisabled(shared.id), false, "the account stays enabled");
});

test("a client owner cannot disable a platform administrator who joined their client (403)", async () => {
  const team = await createTeam();
  const staff = await createUser({ admin: true, name: "Agency staff" });
  const token = await signIn(team.users.owner, team.clientId);
  // Any owner can add an existing account by email, so a platform admin may well belong to this one client.
  const added = await call(stack, "POST", `/api/clients/${team.clientId}/members`, {
    token,
    body: { email: staff.email, full_name: "Agency staff", role: "agent" },
  });
  assert.equal(added.status, 201, JSON.stringify(added.body));
  try {
    const reply = await call(stack, "POST", `/api/users/${staff.id}/disable`, { token });
    assert.equal(
      reply.status,
      403,
      `client staff must not lock out agency staff: ${JSON.stringify(reply.body)}`,
    );
    assert.equal(await isDisabled(staff.id), false, "the platform administrator stays enabled");
  } finally {
    await db()`update public.users set disabled_at = null where id = ${staff.id}`;
  }
});

test("disabling a user the caller cannot see is a 404 user_not_found", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const token = await signIn(b.users.owner, b.clientId);
  for (const id of [a.users.agent.id, crypto.randomUUID()]) {
    const reply = await call(stack, "POST", `/api/users/${id}/disable`, { token });
    assert.equal(reply.status, 404, JSON.stringify(reply.body));
    assert.equal(reply.body.code, "user_not_found");
  }
  assert.equal(await isDisabled(a.users.agent.id), false);
});

test("GET /api/users/{id} shows a user to an admin of a client they share and is a 404 to another client's members", async () => {
  const a = await createTeam();
  const b = await createTeam();
  const person = a.users.manager;

  const shared = await call(stack, "GET", `/api/users/${person.id}`, {
    token: await signIn(a.users.admin, a.clientId),
  });
  assert.equal(shared.status, 200, JSON.stringify(shared.body));
  assert.deepEqual(
    Object.keys(shared.body).sort(),
    ["created_at", "disabled", "email", "full_name", "id", "is_platform_admin"],
    "the User shape, without secrets",
  );
  assert.equal(shared.body.id, person.id);
  assert.equal(shared.body.email, person.email);

  const other = await call(stack, "GET", `/api/users/${person.id}`, {
    token: await signIn(b.users.owner, b.clientId),
  });
  assert.equal(other.status, 404, JSON.stringify(other.body));
  assert.equal(other.body.code, "user_not_found");
});

test("a client created without members is still addressable by a platform administrator", async () => {
  const id = await createClient(uniq("empty"));
  const reply = await call(stack, "GET", `/api/clients/${id}/members`, { token: adminToken });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.deepEqual(reply.body, { data: [], next_cursor: null });
});
