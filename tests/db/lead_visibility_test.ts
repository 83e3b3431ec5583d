/**
 * The lead visibility helpers of sql/0017_lead_list_speed.sql and sql/0034_inlined_membership_lookup.sql as
 * the leads policies use them, and listLeads() in one statement: each scope sees its part and only with the
 * permission, a change of role, hierarchy, membership or account applies to the very next statement (even
 * inside one open transaction), and both paths of the list (visibility index, plain query) return exactly
 * what row-level security returns.
 *
 * Fixtures are written as the superuser with db(); members act under row-level security with actAs().
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { listLeads } from "../../functions/api/leads/leads.queries.ts";
import { actAs, createTeam, createUser, db, test, uniq } from "../_helpers.ts";

/** Inserts n leads owned by a membership (null: unassigned), a second apart, newest first; returns their ids. */
async function leadsOf(clientId: string, owner: string | null, n: number): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, email, owner_membership_id, created_at)
    select ${clientId}, 'api', ${uniq("lv")} || '-' || g || '@example.com', ${owner}::uuid,
           now() - make_interval(secs => g)
    from generate_series(1, ${n}) g
    returning id`;
  const ids = rows.map((row) => row.id);
  // The assignment rules give an ownerless new lead to someone; unassign it afterwards.
  if (owner === null) {
    await db()`update public.leads set owner_membership_id = null where id = any (${ids}::uuid[])`;
  }
  return ids;
}

/** A team (createTeam) with leads for the manager and both agents, and one unassigned lead. */
async function teamWithLeads() {
  const team = await createTeam();
  const m = team.memberships;
  const leads = {
    manager: await leadsOf(team.clientId, m.manager, 2),
    agent: await leadsOf(team.clientId, m.agent, 3),
    otherAgent: await leadsOf(team.clientId, m.otherAgent, 4),
    unassigned: await leadsOf(team.clientId, null, 1),
  };
  return { ...team, leads };
}

const sorted = (ids: string[]) => [...ids].sort();

async function visibleIds(tx: postgres.TransactionSql, clientId: string): Promise<string[]> {
  const rows = await tx<{ id: string }[]>`select id from public.leads where client_id = ${clientId}`;
  return sorted(rows.map((row) => row.id));
}

test("LV-01: full_scope_client_ids_with and team_member_ids_with give each scope its part, with the permission only", async () => {
  const { clientId, users, memberships: m } = await createTeam();
  const helpers = (userId: string, code: string) =>
    actAs(userId, clientId, async (tx) => {
      const [row] = await tx<{ clients: string[]; members: string[] }[]>`
        select app.full_scope_client_ids_with(${code}) as clients, app.team_member_ids_with(${code}) as members`;
      return { clients: row.clients, members: sorted(row.members) };
    });
  assert.deepEqual(
    await helpers(users.admin.id, "leads.read"),
    { clients: [clientId], members: [] },
    "LV-01a: the client scope covers the whole client",
  );
  assert.deepEqual(
    await helpers(users.manager.id, "leads.read"),
    { clients: [], members: sorted([m.manager, m.agent]) },
    "LV-01b: the team scope covers the manager and the members below, not the rest",
  );
  assert.deepEqual(
    await helpers(users.agent.id, "leads.read"),
    { clients: [], members: [m.agent] },
    "LV-01c: the own scope covers the member alone",
  );
  assert.deepEqual(
    await helpers(users.agent.id, "leads.assign"),
    { clients: [], members: [] },
    "LV-01d: a permission the role lacks gives nothing, whatever the scope",
  );
  const stranger = await createUser();
  assert.deepEqual(
    await helpers(stranger.id, "leads.read"),
    { clients: [], members: [] },
    "LV-01e: a non-member gets nothing",
  );
});

test("LV-02: role, hierarchy, membership and account changes apply to the next statement of an open transaction", async () => {
  const { clientId, users, memberships: m, leads } = await teamWithLeads();
  const [blind] = await db()<{ id: string }[]>`
    insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${clientId}, 'blind', 'Blind', 35, 'team', '{members.read}') returning id`;
  const [manager] = await db()<{ role_id: string }[]>`
    select role_id from public.memberships where id = ${m.manager}`;
  await actAs(users.manager.id, clientId, async (tx) => {
    assert.deepEqual(
      await visibleIds(tx, clientId),
      sorted([...leads.manager, ...leads.agent]),
      "LV-02a: the manager sees their own and their agent's leads",
    );
    await db()`update public.memberships set reports_to = ${m.admin} where id = ${m.agent}`;
    assert.deepEqual(
      await visibleIds(tx, clientId),
      sorted(leads.manager),
      "LV-02b: an agent moved out of the team is out of sight on the next statement",
    );
    await db()`update public.memberships set reports_to = ${m.manager} where id = ${m.agent}`;
    assert.deepEqual(
      await visibleIds(tx, clientId),
      sorted([...leads.manager, ...leads.agent]),
      "LV-02c: moved back, their leads are visible again",
    );
    await db()`update public.memberships set role_id = ${blind.id} where id = ${m.manager}`;
    assert.deepEqual(
      await visibleIds(tx, clientId),
      [],
      "LV-02d: a role without leads.read sees nothing at once",
    );
    await db()`update public.roles set permissions = '{members.read,leads.read}' where id = ${blind.id}`;
    assert.deepEqual(
      await visibleIds(tx, clientId),
      sorted([...leads.manager, ...leads.agent]),
      "LV-02e: the permission granted to the role applies at once",
    );
    await db()`update public.roles set scope = 'own' where id = ${blind.id}`;
    assert.deepEqual(
      await visibleIds(tx, clientId),
      sorted(leads.manager),
      "LV-02f: a narrower scope applies at once",
    );
    await db()`update public.memberships set role_id = ${manager.role_id} where id = ${m.manager}`;
    await db()`update public.users set disabled_at = now() where id = ${users.manager.id}`;
    assert.deepEqual(await visibleIds(tx, clientId), [], "LV-02g: a disabled user sees nothing at once");
    await db()`update public.users set disabled_at = null where id = ${users.manager.id}`;
    await db()`update public.clients set status = 'inactive' where id = ${clientId}`;
    assert.deepEqual(await visibleIds(tx, clientId), [], "LV-02h: an inactive client shows nothing at once");
    await db()`update public.clients set status = 'active' where id = ${clientId}`;
  });
  const [admin] = await db()<
    { id: string }[]
  >`select user_id as id from public.memberships where id = ${m.admin}`;
  await actAs(admin.id, clientId, async (tx) => {
    assert.equal((await visibleIds(tx, clientId)).length, 10, "LV-02i: the admin sees every lead");
    await db()`delete from public.memberships where id = ${m.admin}`;
    assert.deepEqual(await visibleIds(tx, clientId), [], "LV-02j: a removed member sees nothing at once");
  });
});

test("LV-03: listLeads pages, by index and plain, hold exactly what row-level security shows", async () => {
  const { clientId, users, memberships: m, leads } = await teamWithLeads();
  const platformAdmin = await createUser({ admin: true });
  const stranger = await createUser();
  const all = [...leads.manager, ...leads.agent, ...leads.otherAgent, ...leads.unassigned];
  const cases: Array<[string, string, string[]]> = [
    ["manager (team, index)", users.manager.id, [...leads.manager, ...leads.agent]],
    ["agent (own, index)", users.agent.id, leads.agent],
    ["admin (client, plain)", users.admin.id, all],
    ["platform administrator (plain)", platformAdmin.id, all],
    ["non-member (plain)", stranger.id, []],
  ];
  const newestFirst = async (ids: string[]) =>
    ids.length === 0 ? [] : (await db()<{ id: string }[]>`
      select id from public.leads where id = any (${ids}::uuid[]) order by created_at desc, id desc`)
      .map((row) => row.id);
  for (const [label, userId, expected] of cases) {
    const seen: string[] = [];
    let before: [string, string] | undefined;
    for (let page = 0; page < 20; page++) {
      const result = await actAs(
        userId,
        clientId,
        (tx) => listLeads(tx, clientId, { duplicates: "include" }, { limit: 3, before }),
      );
      seen.push(...result.rows.map((row) => row.id));
      assert.ok(result.rows.length <= 3, `LV-03: ${label}, page ${page}: at most the limit`);
      if (!result.more) break;
      const last = result.rows.at(-1)!;
      before = [last.created_at, last.id];
    }
    assert.deepEqual(
      seen,
      await newestFirst(expected),
      `LV-03: ${label}: every visible lead once, newest first`,
    );
  }
  await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
             values (${clientId}, 'blind', 'Blind', 35, 'team', '{members.read}')`;
  await db()`update public.memberships set role_id = (select id from public.roles where client_id = ${clientId}
             and key = 'blind') where id = ${m.manager}`;
  const blind = await actAs(
    users.manager.id,
    clientId,
    (tx) => listLeads(tx, clientId, { duplicates: "include" }, { limit: 3 }),
  );
  assert.deepEqual(blind, { rows: [], more: false }, "LV-03: without leads.read the list is empty");
});

test("LV-04: the helpers read the caller's memberships inline, API roles cannot call that lookup, and a member who is a platform administrator lists every lead", async () => {
  const { clientId, users, leads } = await teamWithLeads();
  const calls = await db().begin(async (tx) => {
    await tx`set local track_functions = 'all'`;
    await tx`select set_config('role', 'authenticated', true),
                    set_config('request.jwt.claims', ${
      JSON.stringify({ sub: users.manager.id, role: "authenticated", client_id: clientId })
    }, true)`;
    await tx`select app.visible_lead_page(${clientId}, 10), app.team_member_ids_with('leads.read'),
                    app.full_scope_client_ids_with('leads.read')`;
    await tx`reset role`;
    // Called once directly, as the owner (API roles may not call it; sql/0043), to show it is counted.
    await tx`select count(*) from app._my_memberships()`;
    const rows = await tx<{ name: string; calls: number }[]>`
      select f as name, coalesce(pg_stat_get_xact_function_calls(f::regproc::oid), 0)::int as calls
      from unnest(array['app.visible_lead_page', 'app.team_member_ids_with', 'app.full_scope_client_ids_with',
                        'app._my_memberships', 'app._active_memberships_of']) f`;
    return Object.fromEntries(rows.map((row) => [row.name, row.calls]));
  });
  // Counted helpers show the tracking works; a lookup that is not inlined would count a call per helper
  // (a `set search_path`, security definer or a subquery argument each stop the inlining).
  assert.deepEqual(calls, {
    "app.visible_lead_page": 1,
    "app.team_member_ids_with": 1,
    "app.full_scope_client_ids_with": 1,
    "app._my_memberships": 1,
    "app._active_memberships_of": 0,
  });

  await assert.rejects(
    actAs(users.agent.id, clientId, (tx) => tx`select * from app._active_memberships_of(${users.admin.id})`),
    (error: { code?: string }) => error.code === "42501",
    "LV-04: API roles cannot call the membership lookup",
  );

  const listAsManager = () =>
    actAs(users.manager.id, clientId, async (tx) => {
      const { rows } = await listLeads(tx, clientId, { duplicates: "include" }, { limit: 50 });
      return sorted(rows.map((row) => row.id));
    });
  assert.deepEqual(await listAsManager(), sorted([...leads.manager, ...leads.agent]));
  await db()`update public.users set is_platform_admin = true where id = ${users.manager.id}`;
  assert.deepEqual(
    await listAsManager(),
    sorted([...leads.manager, ...leads.agent, ...leads.otherAgent, ...leads.unassigned]),
    "LV-04: a platform administrator sees every lead, member or not",
  );
});
