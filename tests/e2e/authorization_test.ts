/**
 * The HTTP authorization matrix: every route of the api function (functions/api/catalog.ts, `apiRoutes`)
 * against the callers that must be refused, mirroring the database attack matrix
 * (tests/db/attack_matrix_test.ts) one layer up. For each route:
 *
 *   other_client       client B's owner addresses client A's ids (a client in the path, or a client-A-only
 *                      row) and gets 404, never 200 or 403, so existence does not leak;
 *   outside_hierarchy  a team-scoped caller addresses a row outside their part of the reporting hierarchy
 *                      (outside_agent's membership or account) and gets 404, or the check is marked n/a;
 *   no_permission      a member of A whose role lacks the route's x-permission gets 403 permission_denied;
 *                      a route without x-permission states the rule it follows, and that rule is tested;
 *   no_token           the request that succeeds with a token is a 401 without one;
 *   allowed            the positive control: an allowed caller gets 2xx on fresh fixtures, so a malformed
 *                      request can never pass as a denial.
 *
 * A final test requires the case keys to equal the route keys exactly, so a new route without an
 * authorization case fails CI, and prints the route x check table of observed statuses.
 *
 * Client A: owner > admin > manager > {agent, team_mate}; admin > {outside_agent, viewer, lead, noperm}.
 *   lead    holds "team_lead", a custom team-scoped role WITH members.manage: the manager template has no
 *           members.manage, so on members.manage routes the manager is stopped by the permission gate
 *           before any hierarchy check; the lead is the team-scoped caller that reaches the hierarchy gate.
 *           Both are probed on those routes: the manager gets 403 permission_denied (as for any id, so
 *           nothing leaks), the lead gets 404.
 *   noperm  holds "nothing", a custom role with no permissions at all (every template holds *.read).
 * Client B: its owner. Also a platform administrator, and "loner", a user who belongs to no client.
 */
import assert from "node:assert/strict";
import { apiRoutes } from "../../functions/api/catalog.ts";
import {
  addMember,
  call,
  createClient,
  createUser,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

const signIn = sessionToken;

// -- Fixtures ------------------------------------------------------------------------------------------

const A = await createClient(uniq("authz-a"), "Client A");
const B = await createClient(uniq("authz-b"), "Client B");
await db()`insert into public.roles (client_id, key, name, rank, scope, permissions) values
  (${A}, 'team_lead', 'Team lead', 30, 'team',
   ${["hierarchy.read", "members.manage", "members.read", "roles.read"]}::text[]),
  (${A}, 'nothing', 'Nothing', 60, 'own', '{}'::text[])`;

const users = {
  owner: await createUser({ name: "Owner" }),
  admin: await createUser({ name: "Admin" }),
  manager: await createUser({ name: "Manager" }),
  agent: await createUser({ name: "Agent" }),
  team_mate: await createUser({ name: "Team mate" }),
  outside_agent: await createUser({ name: "Outside agent" }),
  viewer: await createUser({ name: "Viewer" }),
  lead: await createUser({ name: "Team lead" }),
  noperm: await createUser({ name: "No permissions" }),
  b_owner: await createUser({ name: "B owner" }),
  platform: await createUser({ name: "Platform admin", admin: true }),
  loner: await createUser({ name: "Member of no client" }),
};
const owner = await addMember(A, users.owner.id, "owner");
const admin = await addMember(A, users.admin.id, "admin", owner);
const manager = await addMember(A, users.manager.id, "manager", admin);
const m = {
  owner,
  admin,
  manager,
  agent: await addMember(A, users.agent.id, "agent", manager),
  team_mate: await addMember(A, users.team_mate.id, "agent", manager),
  outside_agent: await addMember(A, users.outside_agent.id, "agent", admin),
  viewer: await addMember(A, users.viewer.id, "viewer", admin),
  lead: await addMember(A, users.lead.id, "team_lead", admin),
  noperm: await addMember(A, users.noperm.id, "nothing", admin),
  b_owner: await addMember(B, users.b_owner.id, "owner"),
};

const t = {
  owner: await signIn(users.owner, A),
  admin: await signIn(users.admin, A),
  manager: await signIn(users.manager, A),
  agent: await signIn(users.agent, A),
  viewer: await signIn(users.viewer, A),
  lead: await signIn(users.lead, A),
  noperm: await signIn(users.noperm, A),
  b_owner: await signIn(users.b_owner, B),
  platform: await signIn(users.platform, null),
  loner: await signIn(users.loner, null),
};

async function roleId(clientId: string, key: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    select id from public.roles where client_id = ${clientId} and key = ${key}`;
  return row.id;
}
const aAgentRole = await roleId(A, "agent");

/** A fresh member of client A (a new account) reporting to reportsTo; optionally also a member of B. */
async function newMember(reportsTo: string, options: { role?: string; alsoInB?: boolean } = {}) {
  const user = await createUser({ name: "Fresh member" });
  const membership = await addMember(A, user.id, options.role ?? "agent", reportsTo);
  if (options.alsoInB) await addMember(B, user.id, "agent", m.b_owner);
  return { user, membership };
}

/** A fresh unused role of client A. */
async function newRole(): Promise<{ id: string; name: string }> {
  const [row] = await db()<{ id: string; name: string }[]>`
    insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${A}, ${uniq("tmp")}, 'Temporary', 70, 'own', '{members.read}') returning id, name`;
  return row;
}

/** A fresh client, optionally inactive, optionally with an owner. */
async function newClient(options: { inactive?: boolean; ownerId?: string } = {}): Promise<string> {
  const id = await createClient(uniq("authz-x"));
  if (options.ownerId) await addMember(id, options.ownerId, "owner");
  if (options.inactive) await db()`update public.clients set status = 'inactive' where id = ${id}`;
  return id;
}

const newEmail = () => `${uniq("authz")}@example.com`;

async function membershipExists(id: string): Promise<boolean> {
  return (await db()`select 1 from public.memberships where id = ${id}`).length > 0;
}
async function roleKeyOf(membershipId: string): Promise<string> {
  const [row] = await db()<{ key: string }[]>`
    select r.key from public.memberships m join public.roles r on r.id = m.role_id where m.id = ${membershipId}`;
  return row.key;
}
/** The memberships in a member's part of the hierarchy, from the closure table (depth 0 is the member). */
async function teamOf(membershipId: string, minDepth = 0): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`
    select descendant_id as id from app.membership_closure
    where ancestor_id = ${membershipId} and depth >= ${minDepth}`;
  return rows.map((row) => row.id).sort();
}
async function isDisabled(userId: string): Promise<boolean> {
  const [row] = await db()<{ disabled: boolean }[]>`
    select disabled_at is not null as disabled from public.users where id = ${userId}`;
  return row.disabled;
}
async function disableDirectly(userId: string): Promise<void> {
  await db()`update public.users set disabled_at = now() where id = ${userId}`;
}
async function clientStatus(id: string): Promise<string | undefined> {
  const [row] = await db()<{ status: string }[]>`select status from public.clients where id = ${id}`;
  return row?.status;
}
async function roleName(id: string): Promise<string | undefined> {
  const [row] = await db()<{ name: string }[]>`select name from public.roles where id = ${id}`;
  return row?.name;
}
async function userExists(email: string): Promise<boolean> {
  return (await db()`select 1 from public.users where email = ${email}`).length > 0;
}
/** Client A must stay active for the other cases; a wrongly allowed status change is undone. */
async function keepAActive(): Promise<void> {
  const status = await clientStatus(A);
  await db()`update public.clients set status = 'active' where id = ${A}`;
  assert.equal(status, "active", `client A's status was changed to ${status}`);
}

const ids = (reply: Reply): string[] => reply.body.data.map((row: { id: string }) => row.id);
const codes = (reply: Reply): string[] => reply.body.data.map((row: { code: string }) => row.code);

// -- The matrix ----------------------------------------------------------------------------------------

type Check = "other_client" | "outside_hierarchy" | "no_permission" | "no_token" | "allowed";
const CHECKS: Check[] = ["other_client", "outside_hierarchy", "no_permission", "no_token", "allowed"];

/** One concrete request and the answer it must get. */
interface Probe {
  /** Who does what, for failure messages. */
  label: string;
  token?: string;
  /** The path under /api, with every parameter filled. */
  path: string;
  body?: unknown;
  status: number;
  /** The problem+json code expected with an error status. */
  code?: string;
  /** Checks on the response body, run when the status is the expected one. */
  verify?: (reply: Reply) => void | Promise<void>;
  /** Checks that the request changed nothing it must not have changed; always run. */
  intact?: () => Promise<void>;
}

/** Probes built on demand (so each gets fresh fixtures), or the reason the check does not apply. */
type Step = string | (() => Probe[] | Promise<Probe[]>);

interface Case {
  /** For a route without x-permission: the rule that decides who may call it. */
  rule?: string;
  other_client: Step;
  outside_hierarchy: Step;
  no_permission: Step;
  /** The positive control(s); no_token sends the first one's request without the token. */
  allowed: () => Probe | Probe[] | Promise<Probe | Probe[]>;
}

const cases: Record<string, Case> = {
  // -- Clients -----------------------------------------------------------------------------------------
  "POST /clients": {
    rule: "platform administrators only (public.create_client refuses everyone else)",
    other_client: () => [{
      label: "B's owner creates a client with client A's id: 403, not 409 client_id_taken",
      token: t.b_owner,
      path: "/clients",
      body: { id: A, name: "Hijack" },
      status: 403,
      intact: async () => assert.equal(await clientStatus(A), "active"),
    }],
    outside_hierarchy: "creates a tenant; no row of a reporting hierarchy is addressed",
    no_permission: () => {
      const id = uniq("authz-new");
      return [{
        label: "client A's owner (not a platform administrator) creates a client",
        token: t.owner,
        path: "/clients",
        body: { id, name: "Not allowed" },
        status: 403,
        intact: async () => assert.equal(await clientStatus(id), undefined, "the client was not created"),
      }];
    },
    allowed: () => ({
      label: "the platform administrator creates a client",
      token: t.platform,
      path: "/clients",
      body: { id: uniq("authz-new"), name: "Created" },
      status: 201,
      verify: (reply) => assert.equal(reply.body.status, "active"),
    }),
  },

  "GET /clients": {
    rule: "any signed-in user; the list holds only the clients they belong to (all for platform admins)",
    other_client: () => [{
      label: "B's owner lists clients: 200 without client A",
      token: t.b_owner,
      path: "/clients?limit=200",
      status: 200,
      verify: (reply) => {
        assert.ok(!ids(reply).includes(A), "client A leaks into B's owner's list");
        assert.ok(ids(reply).includes(B), "B's owner sees B");
      },
    }],
    outside_hierarchy: "clients are not part of the reporting hierarchy; membership alone decides",
    no_permission: () => [{
      label: "a member of A with no permissions lists exactly [A]",
      token: t.noperm,
      path: "/clients?limit=200",
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [A]),
    }],
    allowed: () => ({
      label: "A's viewer lists clients",
      token: t.viewer,
      path: "/clients",
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [A]),
    }),
  },

  "GET /clients/{clientId}": {
    rule: "any member of the client, whatever their role (no permission); anyone else gets 404",
    other_client: () => [{
      label: "B's owner reads client A",
      token: t.b_owner,
      path: `/clients/${A}`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client is not a row of the reporting hierarchy; every member sees their client",
    no_permission: () => [{
      label: "a member of A with no permissions still reads A (membership is the rule)",
      token: t.noperm,
      path: `/clients/${A}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, A),
    }],
    allowed: () => ({
      label: "A's viewer reads A",
      token: t.viewer,
      path: `/clients/${A}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, A),
    }),
  },

  "PATCH /clients/{clientId}": {
    other_client: () => [{
      label: "B's owner renames client A",
      token: t.b_owner,
      path: `/clients/${A}`,
      body: { name: "Hijacked" },
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client is not a row of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's viewer renames A",
        token: t.viewer,
        path: `/clients/${A}`,
        body: { name: "Hijacked" },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's manager renames A",
        token: t.manager,
        path: `/clients/${A}`,
        body: { name: "Hijacked" },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin renames A",
      token: t.admin,
      path: `/clients/${A}`,
      body: { name: "Client A" },
      status: 200,
      verify: (reply) => assert.equal(reply.body.name, "Client A"),
    }),
  },

  "POST /clients/{clientId}/deactivate": {
    rule: "platform administrators only, even the client's own owner is refused",
    other_client: () => [{
      label: "B's owner deactivates client A",
      token: t.b_owner,
      path: `/clients/${A}/deactivate`,
      status: 404,
      code: "client_not_found",
      intact: keepAActive,
    }, {
      label: "(reference) B's owner deactivates a client that does not exist",
      token: t.b_owner,
      path: `/clients/${uniq("missing")}/deactivate`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "a client-level action; no row of a reporting hierarchy is addressed",
    no_permission: () => [{
      label: "A's owner deactivates A",
      token: t.owner,
      path: `/clients/${A}/deactivate`,
      status: 403,
      code: "permission_denied",
      intact: keepAActive,
    }],
    allowed: async () => {
      const id = await newClient();
      return {
        label: "the platform administrator deactivates a fresh client",
        token: t.platform,
        path: `/clients/${id}/deactivate`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "inactive");
          assert.equal(await clientStatus(id), "inactive");
        },
      };
    },
  },

  "POST /clients/{clientId}/activate": {
    rule: "platform administrators only, even the client's own owner is refused",
    other_client: async () => {
      const id = await newClient({ inactive: true, ownerId: users.owner.id });
      return [{
        label: "B's owner reactivates an inactive client of A's owner",
        token: t.b_owner,
        path: `/clients/${id}/activate`,
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await clientStatus(id), "inactive"),
      }, {
        label: "(reference) B's owner reactivates a client that does not exist",
        token: t.b_owner,
        path: `/clients/${uniq("missing")}/activate`,
        status: 404,
        code: "client_not_found",
      }];
    },
    outside_hierarchy: "a client-level action; no row of a reporting hierarchy is addressed",
    no_permission: async () => {
      const id = await newClient({ inactive: true, ownerId: users.owner.id });
      return [{
        // A deactivated client is invisible to its own members, so even its owner gets the 404.
        label: "the owner of a deactivated client reactivates it",
        token: await signIn(users.owner, null),
        path: `/clients/${id}/activate`,
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await clientStatus(id), "inactive"),
      }];
    },
    allowed: async () => {
      const id = await newClient({ inactive: true });
      return {
        label: "the platform administrator reactivates a fresh inactive client",
        token: t.platform,
        path: `/clients/${id}/activate`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.status, "active");
          assert.equal(await clientStatus(id), "active");
        },
      };
    },
  },

  // -- Members and users -------------------------------------------------------------------------------
  "GET /clients/{clientId}/members": {
    other_client: () => [{
      label: "B's owner lists A's members",
      token: t.b_owner,
      path: `/clients/${A}/members`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: () => [{
      label: "A's manager lists members: 200, their team only (outside_agent filtered out)",
      token: t.manager,
      path: `/clients/${A}/members?limit=200`,
      status: 200,
      verify: async (reply) => {
        assert.ok(!ids(reply).includes(m.outside_agent), "outside_agent leaks into the manager's list");
        assert.deepEqual(ids(reply).sort(), await teamOf(m.manager), "exactly the manager and their team");
      },
    }],
    no_permission: () => [{
      label: "A's member without permissions lists members",
      token: t.noperm,
      path: `/clients/${A}/members`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's admin lists every member",
      token: t.admin,
      path: `/clients/${A}/members?limit=200`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(m.outside_agent) && ids(reply).includes(m.agent)),
    }),
  },

  "POST /clients/{clientId}/members": {
    other_client: () => {
      const email = newEmail();
      return [
        {
          label: "B's owner adds someone to client A",
          token: t.b_owner,
          path: `/clients/${A}/members`,
          body: { email, full_name: "Intruder", role: "agent", reports_to: m.manager },
          status: 404,
          code: "client_not_found",
          intact: async () => assert.ok(!await userExists(email), "no account was created"),
        },
        {
          label: "B's owner adds someone to B reporting to A's manager: same 422 as for an unknown id",
          token: t.b_owner,
          path: `/clients/${B}/members`,
          body: { email: newEmail(), full_name: "Intruder", role: "agent", reports_to: m.manager },
          status: 422,
          code: "invalid_reference",
        },
        {
          label: "(reference) the same with a random reports_to",
          token: t.b_owner,
          path: `/clients/${B}/members`,
          body: { email: newEmail(), full_name: "Intruder", role: "agent", reports_to: crypto.randomUUID() },
          status: 422,
          code: "invalid_reference",
        },
      ];
    },
    outside_hierarchy: () => {
      const email = newEmail();
      return [
        {
          label:
            "A's team lead places someone under outside_agent: refused exactly as for an unknown id (403)",
          token: t.lead,
          path: `/clients/${A}/members`,
          body: { email, full_name: "Misplaced", role: "agent", reports_to: m.outside_agent },
          status: 403,
          code: "forbidden",
          intact: async () => assert.ok(!await userExists(email), "no account was created"),
        },
        {
          label: "(reference) the same with a random reports_to",
          token: t.lead,
          path: `/clients/${A}/members`,
          body: { email: newEmail(), full_name: "Misplaced", role: "agent", reports_to: crypto.randomUUID() },
          status: 403,
          code: "forbidden",
        },
      ];
    },
    no_permission: () => [
      {
        label: "A's manager (no members.manage) adds someone to their own team",
        token: t.manager,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New", role: "agent", reports_to: m.manager },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer adds someone",
        token: t.viewer,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New", role: "viewer", reports_to: m.viewer },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => [
      {
        label: "A's owner adds a new person below the team lead",
        token: t.owner,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New agent", role: "agent", reports_to: m.lead },
        status: 201,
        verify: (reply) => assert.equal(reply.body.member.reports_to, m.lead),
      },
      {
        label: "A's team lead (team scope, members.manage) adds a new person to their own team",
        token: t.lead,
        path: `/clients/${A}/members`,
        body: { email: newEmail(), full_name: "New agent", role: "agent", reports_to: m.lead },
        status: 201,
        verify: (reply) => assert.equal(reply.body.member.reports_to, m.lead),
      },
    ],
  },

  "PATCH /clients/{clientId}/members/{membershipId}": {
    other_client: () => [
      {
        label: "B's owner changes outside_agent's role through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "client_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
      {
        label: "B's owner changes A's outside_agent through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "member_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager (no members.manage: the permission gate answers first, as for any id)",
        token: t.manager,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
      {
        label: "A's team lead (team scope, members.manage) changes outside_agent's role",
        token: t.lead,
        path: `/clients/${A}/members/${m.outside_agent}`,
        body: { role: "viewer" },
        status: 404,
        code: "member_not_found",
        intact: async () => assert.equal(await roleKeyOf(m.outside_agent), "agent"),
      },
    ],
    no_permission: () => [
      {
        label: "A's manager (no members.manage) changes their own agent's role",
        token: t.manager,
        path: `/clients/${A}/members/${m.agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.agent), "agent"),
      },
      {
        label: "A's agent changes their own role",
        token: t.agent,
        path: `/clients/${A}/members/${m.agent}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.agent), "agent"),
      },
      {
        label: "A's viewer changes team_mate's role",
        token: t.viewer,
        path: `/clients/${A}/members/${m.team_mate}`,
        body: { role: "viewer" },
        status: 403,
        code: "permission_denied",
        intact: async () => assert.equal(await roleKeyOf(m.team_mate), "agent"),
      },
    ],
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead changes the role of a member of their team",
        token: t.lead,
        path: `/clients/${A}/members/${fresh.membership}`,
        body: { role: "viewer" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.role.key, "viewer"),
      };
    },
  },

  "DELETE /clients/{clientId}/members/{membershipId}": {
    other_client: async () => {
      const victim = await newMember(m.admin);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "B's owner removes an outside agent through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner removes an A member through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/members/${victim.membership}`,
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "A's manager (no members.manage: the permission gate answers first, as for any id)",
          token: t.manager,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's team lead removes an agent placed like outside_agent (fresh, reporting to admin)",
          token: t.lead,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 404,
          code: "member_not_found",
          intact,
        },
      ];
    },
    no_permission: async () => {
      const victim = await newMember(m.manager);
      const intact = async () =>
        assert.ok(await membershipExists(victim.membership), "the member was removed");
      return [
        {
          label: "A's manager (no members.manage) removes an agent of their team",
          token: t.manager,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer removes a member",
          token: t.viewer,
          path: `/clients/${A}/members/${victim.membership}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead removes a member of their team",
        token: t.lead,
        path: `/clients/${A}/members/${fresh.membership}`,
        status: 204,
        verify: async () => assert.ok(!await membershipExists(fresh.membership)),
      };
    },
  },

  "GET /users/{userId}": {
    rule: "no permission: visible accounts only (self, users whose membership the caller sees, all for " +
      "platform admins); an invisible account is 404",
    other_client: () => [{
      label: "B's owner reads A's outside_agent",
      token: t.b_owner,
      path: `/users/${users.outside_agent.id}`,
      status: 404,
      code: "user_not_found",
    }],
    outside_hierarchy: () => [{
      label: "A's manager reads outside_agent",
      token: t.manager,
      path: `/users/${users.outside_agent.id}`,
      status: 404,
      code: "user_not_found",
    }],
    no_permission: () => [
      {
        label: "A's viewer (own scope) reads the agent",
        token: t.viewer,
        path: `/users/${users.agent.id}`,
        status: 404,
        code: "user_not_found",
      },
      {
        label: "A's viewer reads themselves",
        token: t.viewer,
        path: `/users/${users.viewer.id}`,
        status: 200,
        verify: (reply) => assert.equal(reply.body.id, users.viewer.id),
      },
    ],
    allowed: () => ({
      label: "A's manager reads their agent",
      token: t.manager,
      path: `/users/${users.agent.id}`,
      status: 200,
      verify: (reply) => assert.equal(reply.body.id, users.agent.id),
    }),
  },

  "POST /users/{userId}/disable": {
    rule: "platform admins, or a caller with members.manage in every client of the user, ranked at least " +
      "as high there and seeing the user's membership (public.set_user_disabled); invisible account: 404",
    other_client: async () => {
      const victim = await newMember(m.admin);
      return [{
        label: "B's owner disables an A-only account",
        token: t.b_owner,
        path: `/users/${victim.user.id}/disable`,
        status: 404,
        code: "user_not_found",
        intact: async () => assert.equal(await isDisabled(victim.user.id), false),
      }];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      return [
        {
          label: "A's manager disables outside_agent",
          token: t.manager,
          path: `/users/${users.outside_agent.id}/disable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(users.outside_agent.id), false),
        },
        {
          label: "A's team lead (members.manage) disables an agent outside their team",
          token: t.lead,
          path: `/users/${victim.user.id}/disable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(victim.user.id), false),
        },
      ];
    },
    no_permission: async () => {
      const inTeam = await newMember(m.manager);
      const twoClients = await newMember(m.admin, { alsoInB: true });
      return [
        {
          label: "A's manager (sees them, no members.manage) disables an agent of their team",
          token: t.manager,
          path: `/users/${inTeam.user.id}/disable`,
          status: 403,
          intact: async () => assert.equal(await isDisabled(inTeam.user.id), false),
        },
        {
          label: "A's admin disables someone who is also a member of client B",
          token: t.admin,
          path: `/users/${twoClients.user.id}/disable`,
          status: 403,
          intact: async () => assert.equal(await isDisabled(twoClients.user.id), false),
        },
      ];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      return {
        label: "A's team lead disables a member of their team",
        token: t.lead,
        path: `/users/${fresh.user.id}/disable`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.disabled, true);
          assert.equal(await isDisabled(fresh.user.id), true);
        },
      };
    },
  },

  "POST /users/{userId}/enable": {
    rule: "the same as disable: platform admins, or members.manage in every client of the user with " +
      "rank and scope over them; invisible account: 404",
    other_client: async () => {
      const victim = await newMember(m.admin);
      await disableDirectly(victim.user.id);
      return [{
        label: "B's owner re-enables a disabled A-only account",
        token: t.b_owner,
        path: `/users/${victim.user.id}/enable`,
        status: 404,
        code: "user_not_found",
        intact: async () => assert.equal(await isDisabled(victim.user.id), true),
      }];
    },
    outside_hierarchy: async () => {
      const victim = await newMember(m.admin);
      await disableDirectly(victim.user.id);
      return [
        {
          label: "A's manager enables outside_agent",
          token: t.manager,
          path: `/users/${users.outside_agent.id}/enable`,
          status: 404,
          code: "user_not_found",
        },
        {
          label: "A's team lead (members.manage) re-enables a disabled agent outside their team",
          token: t.lead,
          path: `/users/${victim.user.id}/enable`,
          status: 404,
          code: "user_not_found",
          intact: async () => assert.equal(await isDisabled(victim.user.id), true),
        },
      ];
    },
    no_permission: async () => {
      const inTeam = await newMember(m.manager);
      await disableDirectly(inTeam.user.id);
      return [{
        label: "A's manager (no members.manage) re-enables a disabled agent of their team",
        token: t.manager,
        path: `/users/${inTeam.user.id}/enable`,
        status: 403,
        intact: async () => assert.equal(await isDisabled(inTeam.user.id), true),
      }];
    },
    allowed: async () => {
      const fresh = await newMember(m.lead);
      await disableDirectly(fresh.user.id);
      return {
        label: "A's team lead re-enables a disabled member of their team",
        token: t.lead,
        path: `/users/${fresh.user.id}/enable`,
        status: 200,
        verify: async (reply) => {
          assert.equal(reply.body.disabled, false);
          assert.equal(await isDisabled(fresh.user.id), false);
        },
      };
    },
  },

  // -- Hierarchy ---------------------------------------------------------------------------------------
  "GET /clients/{clientId}/members/{membershipId}/managers": {
    other_client: () => [
      {
        label: "B's owner reads the agent's managers through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.agent}/managers`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the agent's managers through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.agent}/managers`,
        status: 404,
        code: "member_not_found",
      },
    ],
    outside_hierarchy: () => [{
      label: "A's manager reads outside_agent's managers",
      token: t.manager,
      path: `/clients/${A}/members/${m.outside_agent}/managers`,
      status: 404,
      code: "member_not_found",
    }],
    no_permission: () => [{
      label: "A's member without permissions reads their own managers",
      token: t.noperm,
      path: `/clients/${A}/members/${m.noperm}/managers`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's manager reads their agent's managers (only the part they can see)",
      token: t.manager,
      path: `/clients/${A}/members/${m.agent}/managers`,
      status: 200,
      verify: (reply) => assert.deepEqual(ids(reply), [m.manager]),
    }),
  },

  "GET /clients/{clientId}/members/{membershipId}/subtree": {
    other_client: () => [
      {
        label: "B's owner reads the manager's team through client A's path",
        token: t.b_owner,
        path: `/clients/${A}/members/${m.manager}/subtree`,
        status: 404,
        code: "client_not_found",
      },
      {
        label: "B's owner reads the manager's team through client B's path",
        token: t.b_owner,
        path: `/clients/${B}/members/${m.manager}/subtree`,
        status: 404,
        code: "member_not_found",
      },
    ],
    outside_hierarchy: () => [
      {
        label: "A's manager reads outside_agent's subtree",
        token: t.manager,
        path: `/clients/${A}/members/${m.outside_agent}/subtree`,
        status: 404,
        code: "member_not_found",
      },
      {
        label: "A's manager reads their own admin's subtree (above them, holds outside_agent)",
        token: t.manager,
        path: `/clients/${A}/members/${m.admin}/subtree`,
        status: 404,
        code: "member_not_found",
      },
    ],
    no_permission: () => [{
      label: "A's member without permissions reads their own subtree",
      token: t.noperm,
      path: `/clients/${A}/members/${m.noperm}/subtree`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's manager reads their own team",
      token: t.manager,
      path: `/clients/${A}/members/${m.manager}/subtree`,
      status: 200,
      verify: async (reply) => {
        assert.ok(ids(reply).includes(m.agent) && ids(reply).includes(m.team_mate));
        assert.deepEqual(ids(reply).sort(), await teamOf(m.manager, 1), "exactly everyone below");
      },
    }),
  },

  // -- Permissions and roles ---------------------------------------------------------------------------
  "GET /permissions": {
    rule: "any signed-in user, even one who belongs to no client (the catalog holds no client data)",
    other_client: "the global permission catalog; it holds no client's rows or ids",
    outside_hierarchy: "the global permission catalog; no row of a reporting hierarchy",
    no_permission: () => [
      {
        label: "a user who belongs to no client reads the catalog",
        token: t.loner,
        path: "/permissions",
        status: 200,
        verify: (reply) => assert.ok(codes(reply).includes("members.manage")),
      },
      {
        label: "A's member without permissions reads the catalog",
        token: t.noperm,
        path: "/permissions",
        status: 200,
        verify: (reply) => assert.ok(codes(reply).includes("members.manage")),
      },
    ],
    allowed: () => ({
      label: "A's viewer reads the catalog",
      token: t.viewer,
      path: "/permissions",
      status: 200,
      verify: (reply) => assert.ok(codes(reply).includes("roles.manage")),
    }),
  },

  "GET /clients/{clientId}/roles": {
    other_client: () => [{
      label: "B's owner lists A's roles",
      token: t.b_owner,
      path: `/clients/${A}/roles`,
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: () => [{
      label: "A's member without permissions lists roles",
      token: t.noperm,
      path: `/clients/${A}/roles`,
      status: 403,
      code: "permission_denied",
    }],
    allowed: () => ({
      label: "A's viewer lists A's roles",
      token: t.viewer,
      path: `/clients/${A}/roles`,
      status: 200,
      verify: (reply) => assert.ok(ids(reply).includes(aAgentRole)),
    }),
  },

  "POST /clients/{clientId}/roles": {
    other_client: () => [{
      label: "B's owner creates a role in A",
      token: t.b_owner,
      path: `/clients/${A}/roles`,
      body: { key: uniq("evil"), name: "Evil", rank: 70, scope: "own", permissions: [] },
      status: 404,
      code: "client_not_found",
    }],
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: () => [
      {
        label: "A's manager (no roles.manage) creates a role",
        token: t.manager,
        path: `/clients/${A}/roles`,
        body: { key: uniq("role"), name: "Nope", rank: 70, scope: "own", permissions: [] },
        status: 403,
        code: "permission_denied",
      },
      {
        label: "A's viewer creates a role",
        token: t.viewer,
        path: `/clients/${A}/roles`,
        body: { key: uniq("role"), name: "Nope", rank: 70, scope: "own", permissions: [] },
        status: 403,
        code: "permission_denied",
      },
    ],
    allowed: () => ({
      label: "A's admin creates a role",
      token: t.admin,
      path: `/clients/${A}/roles`,
      body: { key: uniq("role"), name: "Helper", rank: 70, scope: "own", permissions: ["members.read"] },
      status: 201,
      verify: (reply) => assert.equal(reply.body.client_id, A),
    }),
  },

  "PATCH /clients/{clientId}/roles/{roleId}": {
    other_client: async () => {
      const role = await newRole();
      const intact = async () => assert.equal(await roleName(role.id), role.name);
      return [
        {
          label: "B's owner renames an A role through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Hijacked" },
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner renames an A role through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/roles/${role.id}`,
          body: { name: "Hijacked" },
          status: 404,
          code: "role_not_found",
          intact,
        },
      ];
    },
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: async () => {
      const role = await newRole();
      const intact = async () => assert.equal(await roleName(role.id), role.name);
      return [
        {
          label: "A's manager (no roles.manage) renames a role",
          token: t.manager,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Renamed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer renames a role",
          token: t.viewer,
          path: `/clients/${A}/roles/${role.id}`,
          body: { name: "Renamed" },
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const role = await newRole();
      return {
        label: "A's admin renames a role",
        token: t.admin,
        path: `/clients/${A}/roles/${role.id}`,
        body: { name: "Renamed" },
        status: 200,
        verify: (reply) => assert.equal(reply.body.name, "Renamed"),
      };
    },
  },

  "DELETE /clients/{clientId}/roles/{roleId}": {
    other_client: async () => {
      const role = await newRole();
      const intact = async () => assert.ok(await roleName(role.id), "the role was deleted");
      return [
        {
          label: "B's owner deletes an A role through client A's path",
          token: t.b_owner,
          path: `/clients/${A}/roles/${role.id}`,
          status: 404,
          code: "client_not_found",
          intact,
        },
        {
          label: "B's owner deletes an unused A role through client B's path",
          token: t.b_owner,
          path: `/clients/${B}/roles/${role.id}`,
          status: 404,
          code: "role_not_found",
          intact,
        },
        {
          label: "B's owner deletes A's agent role (in use) through B's path: 404, not 409 role_in_use",
          token: t.b_owner,
          path: `/clients/${B}/roles/${aAgentRole}`,
          status: 404,
          code: "role_not_found",
        },
      ];
    },
    outside_hierarchy: "roles are client-wide definitions, not rows of the reporting hierarchy",
    no_permission: async () => {
      const role = await newRole();
      const intact = async () => assert.ok(await roleName(role.id), "the role was deleted");
      return [
        {
          label: "A's manager (no roles.manage) deletes a role",
          token: t.manager,
          path: `/clients/${A}/roles/${role.id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
        {
          label: "A's viewer deletes a role",
          token: t.viewer,
          path: `/clients/${A}/roles/${role.id}`,
          status: 403,
          code: "permission_denied",
          intact,
        },
      ];
    },
    allowed: async () => {
      const role = await newRole();
      return {
        label: "A's admin deletes an unused role",
        token: t.admin,
        path: `/clients/${A}/roles/${role.id}`,
        status: 204,
        verify: async () => assert.equal(await roleName(role.id), undefined),
      };
    },
  },
};

// -- Running it ----------------------------------------------------------------------------------------

interface RouteDef {
  method: string;
  path: string;
  "x-permission"?: string;
}
const routes = new Map<string, RouteDef>(
  (apiRoutes as unknown as RouteDef[]).map((route) => [`${route.method.toUpperCase()} ${route.path}`, route]),
);

/** Observed cells of the table: route -> check -> "404/404", "n/a", with "!" after an unexpected status. */
const observed = new Map<string, Partial<Record<Check, string>>>();
const failures: string[] = [];
let requests = 0;

function pathPattern(template: string): RegExp {
  return new RegExp(`^${template.replace(/\{[^}]+\}/g, "[^/?]+")}(\\?.*)?$`);
}

async function runProbe(key: string, route: RouteDef, check: Check, probe: Probe): Promise<string[]> {
  const problems: string[] = [];
  // A probe must hit the route it is filed under, or it would test some other route's authorization.
  assert.match(probe.path, pathPattern(route.path), `${key} ${check}: "${probe.path}" is not this route`);
  requests++;
  const reply = await call(stack, route.method.toUpperCase(), `/api${probe.path}`, {
    token: probe.token,
    body: probe.body,
  });
  const where = `${key} [${check}] ${probe.label}`;
  if (reply.status !== probe.status) {
    problems.push(`${where}: expected ${probe.status}, got ${reply.status} ${JSON.stringify(reply.body)}`);
  } else if (probe.code && reply.body?.code !== probe.code) {
    problems.push(`${where}: expected code ${probe.code}, got ${JSON.stringify(reply.body)}`);
  } else if (probe.verify) {
    try {
      await probe.verify(reply);
    } catch (error) {
      problems.push(`${where}: ${(error as Error).message}`);
    }
  }
  if (probe.intact) {
    try {
      await probe.intact();
    } catch (error) {
      problems.push(`${where}: side effect: ${(error as Error).message}`);
    }
  }
  return [String(reply.status) + (problems.length ? "!" : ""), ...problems];
}

for (const [key, entry] of Object.entries(cases)) {
  test(`authorization: ${key}`, async () => {
    const route = routes.get(key);
    assert.ok(route, `${key} is not a route of apiRoutes`);
    const permission = route["x-permission"];
    if (permission) {
      assert.equal(entry.rule, undefined, `${key} requires ${permission}; the rule is the permission`);
    } else {
      assert.ok(entry.rule, `${key} has no x-permission, so its case must state the rule it follows`);
    }
    const cells: Partial<Record<Check, string>> = {};
    observed.set(key, cells);
    const problems: string[] = [];
    for (const check of CHECKS) {
      let probes: Probe[];
      if (check === "no_token") {
        const [request] = [await entry.allowed()].flat();
        probes = [{
          label: "the positive control's request without a token",
          path: request.path,
          body: request.body,
          status: 401,
          code: "missing_token",
        }];
      } else if (check === "allowed") {
        probes = [await entry.allowed()].flat();
      } else {
        const step = entry[check];
        if (typeof step === "string") {
          assert.ok(step.length > 0, `${key} ${check}: a not-applicable check needs a reason`);
          cells[check] = "n/a";
          continue;
        }
        probes = await step();
        assert.ok(probes.length > 0, `${key} ${check}: no probes`);
      }
      if (check === "no_permission" && permission) {
        assert.ok(
          probes.some((p) => p.status === 403 && p.code === "permission_denied"),
          `${key} requires ${permission}: no_permission must expect 403 permission_denied`,
        );
      }
      if (check === "allowed") {
        assert.ok(probes.every((p) => p.status >= 200 && p.status < 300), `${key}: controls must expect 2xx`);
      }
      const statuses: string[] = [];
      for (const probe of probes) {
        const [status, ...found] = await runProbe(key, route, check, probe);
        statuses.push(status);
        problems.push(...found);
      }
      cells[check] = statuses.join("/");
    }
    failures.push(...problems);
    assert.deepEqual(problems, [], `${key}: unexpected answers`);
  });
}

test("every api route has an authorization case, and the table of observed statuses", () => {
  const keys = [...new Set([...Object.keys(cases), ...routes.keys()])];
  const lines = [["route".padEnd(58), ...CHECKS.map((c) => c.padStart(18))].join("")];
  for (const key of keys) {
    const cells = observed.get(key);
    const cell = (c: Check) =>
      !routes.has(key) ? "NO ROUTE" : !(key in cases) ? "NO CASE" : cells?.[c] ?? "ERR";
    lines.push([key.padEnd(58), ...CHECKS.map((c) => cell(c).padStart(18))].join(""));
  }
  console.log(lines.join("\n"));
  console.log(
    `authorization matrix: ${observed.size} routes, ${requests} requests, ` +
      `${failures.length} unexpected answers ("!" marks them)`,
  );
  assert.deepEqual(
    Object.keys(cases).sort(),
    [...routes.keys()].sort(),
    "the authorization cases must cover exactly the routes of apiRoutes",
  );
});
