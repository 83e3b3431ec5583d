/**
 * Notifications without foreign keys (sql/0038_notifications.sql): deleting a lead, a user or a client
 * deletes their notifications, and so does removing a member from a client (sql/0039); neither the
 * dispatcher nor app.notify_admins_once() leaves a notification behind about a row deleted while they run.
 * A lead's notifications stay only with members whose role lets them see the lead (sql/0040): the dispatcher
 * tells no one else, and reassignment, moves and role changes take them from those who lose sight of it.
 * The races run on databases of their own, so no other test file's worker dispatches the events they hold.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { Sql } from "../../functions/_shared/db.ts";
import {
  addMember,
  addReportingLine,
  createClient,
  createUser,
  db,
  test,
  uniq,
  withPrivateDatabase,
} from "../_helpers.ts";

async function insertNotification(clientId: string, userId: string, leadId: string | null) {
  const [row] = await db()<{ id: string }[]>`
    insert into public.notifications (client_id, user_id, kind, title, lead_id)
    values (${clientId}, ${userId}, 'lead.created', 'New lead', ${leadId}) returning id`;
  return row.id;
}

async function insertLead(sql: Sql, clientId: string, ownerMembership: string | null): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email, owner_membership_id)
    values (${clientId}, 'api', 'Nell Notified', ${`${uniq("nell")}@example.com`}, ${ownerMembership})
    returning id`;
  return row.id;
}

async function remaining(ids: string[]): Promise<string[]> {
  const rows = await db()<{ id: string }[]>`select id from public.notifications where id = any (${ids})`;
  return rows.map((row) => row.id).sort();
}

test("deleting a lead, a user or a client deletes their notifications and no others", async () => {
  const [clientA, clientB] = [await createClient(), await createClient()];
  const [ann, bob] = [await createUser(), await createUser()];
  const annA = await addMember(clientA, ann.id, "owner");
  await addMember(clientB, ann.id, "owner");
  await addMember(clientA, bob.id, "agent", annA);
  const [lead1, lead2] = [await insertLead(db(), clientA, annA), await insertLead(db(), clientA, annA)];
  const ofLead1 = [
    await insertNotification(clientA, ann.id, lead1),
    await insertNotification(clientA, bob.id, lead1),
  ];
  const ofLead2 = await insertNotification(clientA, ann.id, lead2);
  const bobsOther = await insertNotification(clientA, bob.id, null);
  const annInB = await insertNotification(clientB, ann.id, null);
  const annInA = await insertNotification(clientA, ann.id, null);

  await db()`delete from public.leads where id = ${lead1}`;
  assert.deepEqual(await remaining(ofLead1), [], "NREF-01: a deleted lead's notifications go with it");
  assert.deepEqual(await remaining([ofLead2]), [ofLead2], "NREF-02: another lead's stay");

  await db()`delete from public.users where id = ${bob.id}`;
  assert.deepEqual(await remaining([bobsOther]), [], "NREF-03: a deleted user's notifications go with them");

  await db()`delete from public.clients where id = ${clientA}`;
  assert.deepEqual(
    await remaining([ofLead2, annInA, annInB]),
    [annInB],
    "NREF-04: a deleted client's notifications go, those without a lead too; the user's in another client stay",
  );
});

test("removing a member from a client deletes their notifications of that client and no others", async () => {
  const [clientA, clientB] = [await createClient(), await createClient()];
  const [ann, bob] = [await createUser(), await createUser()];
  const annA = await addMember(clientA, ann.id, "owner");
  await addMember(clientB, bob.id, "owner");
  const bobA = await addMember(clientA, bob.id, "agent", annA);
  const lead = await insertLead(db(), clientA, bobA);
  const bobsInA = [
    await insertNotification(clientA, bob.id, lead),
    await insertNotification(clientA, bob.id, null),
  ];
  const bobsInB = await insertNotification(clientB, bob.id, null);
  const annsInA = await insertNotification(clientA, ann.id, lead);

  await db()`delete from public.memberships where id = ${bobA}`;
  assert.deepEqual(
    await remaining(bobsInA),
    [],
    "NREF-10: a removed member's notifications of the client go",
  );
  assert.deepEqual(
    (await remaining([bobsInB, annsInA])).sort(),
    [bobsInB, annsInA].sort(),
    "NREF-11: theirs of another client and the other members' stay",
  );
});

/**
 * A client with owner (client scope) → head (manager) → { lead manager (manager) → agent, other agent }, and
 * one notification per member given, all about one lead of `leadOwner`'s.
 */
async function branchingTeam() {
  const clientId = await createClient();
  const user = async () => (await createUser()).id;
  const users = { owner: await user(), head: await user(), manager: await user(), agent: await user() };
  const otherAgentUser = await user();
  const owner = await addMember(clientId, users.owner, "owner");
  const head = await addMember(clientId, users.head, "manager", owner);
  const manager = await addMember(clientId, users.manager, "manager", head);
  const agent = await addMember(clientId, users.agent, "agent", manager);
  const otherAgent = await addMember(clientId, otherAgentUser, "agent", head);
  const notifiedLead = async (leadOwner: string, recipients: (keyof typeof users)[]) => {
    const leadId = await insertLead(db(), clientId, leadOwner);
    const notifications = {} as Record<keyof typeof users, string>;
    for (const who of recipients) notifications[who] = await insertNotification(clientId, users[who], leadId);
    return { leadId, notifications };
  };
  return { clientId, users, memberships: { owner, head, manager, agent, otherAgent }, notifiedLead };
}

test("a reassigned lead's notifications stay only with the members who still see it", async () => {
  const team = await branchingTeam();
  const { leadId, notifications: n } = await team.notifiedLead(team.memberships.agent, [
    "agent",
    "manager",
    "head",
    "owner",
  ]);
  const notice = await insertNotification(team.clientId, team.users.agent, null);

  await db()`update public.leads set owner_membership_id = ${team.memberships.otherAgent} where id = ${leadId}`;
  assert.deepEqual(await remaining([n.agent, n.manager]), [], "NREF-14: the former owner's and manager's go");
  assert.deepEqual(
    await remaining([n.head, n.owner, notice]),
    [n.head, n.owner, notice].sort(),
    "NREF-15: a manager above both owners, the client-scoped owner and a notice without a lead stay",
  );
  const [{ viewers }] = await db()<{ viewers: string[] }[]>`
    select array_agg(viewer_id order by viewer_id) as viewers from app.lead_viewers where lead_id = ${leadId}`;
  assert.deepEqual(
    viewers,
    [team.memberships.owner, team.memberships.head, team.memberships.otherAgent].sort(),
    "the visibility index follows the new owner",
  );

  await db()`update public.leads set owner_membership_id = null where id = ${leadId}`;
  assert.deepEqual(
    await remaining([n.head, n.owner]),
    [n.owner],
    "NREF-16: unassigned, the lead is the client scope's alone",
  );
});

test("a move in the hierarchy, a new role or a narrower role take the notifications of leads out of sight", async () => {
  const team = await branchingTeam();
  const m = team.memberships;
  const agentsLead = await team.notifiedLead(m.agent, ["manager", "head", "owner"]);
  const managersLead = await team.notifiedLead(m.manager, ["manager", "head"]);
  const notice = await insertNotification(team.clientId, team.users.head, null);

  await db()`update public.memberships set reports_to = ${m.owner} where id = ${m.manager}`;
  assert.deepEqual(
    await remaining([agentsLead.notifications.head, managersLead.notifications.head]),
    [],
    "NREF-17: the head the moved team left loses its leads' notifications",
  );
  assert.deepEqual(
    await remaining([agentsLead.notifications.manager, agentsLead.notifications.owner, notice]),
    [agentsLead.notifications.manager, agentsLead.notifications.owner, notice].sort(),
    "NREF-18: the moved manager and the owner above both places keep theirs",
  );

  await db()`
    update public.memberships set role_id = (
      select id from public.roles where client_id = ${team.clientId} and key = 'agent'
    ) where id = ${m.manager}`;
  assert.deepEqual(
    await remaining([agentsLead.notifications.manager, managersLead.notifications.manager]),
    [managersLead.notifications.manager],
    "NREF-19: as an agent, the former manager keeps only their own lead's",
  );

  const headsLead = await team.notifiedLead(m.head, ["head"]);
  await db()`
    update public.roles set permissions = array_remove(permissions, 'leads.read')
    where client_id = ${team.clientId} and key = 'manager'`;
  assert.deepEqual(
    await remaining([headsLead.notifications.head, notice]),
    [notice],
    "NREF-20: a role that stops reading leads takes its members' lead notifications, not their notices",
  );
  assert.deepEqual(
    await remaining([agentsLead.notifications.owner]),
    [agentsLead.notifications.owner],
    "other roles' members keep theirs",
  );
});

test("a role narrowed from the team scope to the own scope keeps its members only their own leads' notifications", async () => {
  const team = await branchingTeam();
  const agentsLead = await team.notifiedLead(team.memberships.agent, ["head", "owner"]);
  const headsLead = await team.notifiedLead(team.memberships.head, ["head"]);
  await db()`update public.roles set scope = 'own' where client_id = ${team.clientId} and key = 'manager'`;
  assert.deepEqual(
    await remaining([
      agentsLead.notifications.head,
      headsLead.notifications.head,
      agentsLead.notifications.owner,
    ]),
    [headsLead.notifications.head, agentsLead.notifications.owner].sort(),
    "NREF-26: the team's lead goes from the head; their own lead's and the owner's stay",
  );
});

/**
 * Runs `holder` in a transaction left open until `waiter`, on another connection, waits for a lock (or ends
 * without one); then runs `andThen` in the same transaction, commits it and waits for `waiter`.
 */
async function whileHolding(
  sql: Sql,
  url: string,
  holder: (tx: postgres.TransactionSql) => Promise<unknown>,
  waiter: (other: Sql) => Promise<unknown>,
  andThen?: (tx: postgres.TransactionSql) => Promise<unknown>,
) {
  const [first, second] = [1, 2].map(() => postgres(url, { max: 1, onnotice: () => {} }));
  try {
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    let holding!: () => void;
    const held = new Promise<void>((resolve) => holding = resolve);
    const transaction = first.begin(async (tx) => {
      await holder(tx);
      holding();
      await released;
      await andThen?.(tx);
    });
    await held;
    let finished = false;
    const waiting = waiter(second).finally(() => finished = true);
    for (let i = 0; i < 200 && !finished; i++) {
      const [{ blocked }] = await sql<{ blocked: boolean }[]>`
        select exists (select 1 from pg_stat_activity
          where datname = current_database() and wait_event_type = 'Lock') as blocked`;
      if (blocked) break;
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
    release();
    await transaction;
    await waiting;
  } finally {
    await Promise.all([first.end(), second.end()]);
  }
}

/**
 * A client whose agent reports to an admin below its owner, and a lead of the agent's whose event waits in the
 * outbox.
 */
async function leadAwaitingDispatch(sql: Sql) {
  const clientId = uniq("client");
  await sql`insert into public.clients (id, name) values (${clientId}, 'Races')`;
  const [owner, admin, agent] = await addReportingLine(sql, clientId, ["owner", "admin", "agent"]);
  const members = { owner, admin, agent };
  const leadId = await insertLead(sql, clientId, members.agent.membership);
  return { clientId, leadId, members };
}

async function notificationsOf(sql: Sql, column: "lead_id" | "user_id", id: string): Promise<number> {
  const [{ count }] = await sql.unsafe<{ count: number }[]>(
    `select count(*)::int as count from public.notifications where ${column} = $1`,
    [id],
  );
  return count;
}

const dispatch = (sql: Sql | postgres.TransactionSql) => sql`select app.dispatch_events(100, 5)`;

async function titlesOf(sql: Sql, userId: string): Promise<string[]> {
  const rows = await sql<{ title: string }[]>`
    select title from public.notifications where user_id = ${userId} order by title`;
  return rows.map((row) => row.title);
}

test("the dispatcher writes nothing about a lead whose deletion commits while it waits", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { leadId } = await leadAwaitingDispatch(sql);
    await whileHolding(sql, url, (tx) => tx`delete from public.leads where id = ${leadId}`, dispatch);
    assert.equal(
      await notificationsOf(sql, "lead_id", leadId),
      0,
      "NREF-05: no notification of a deleted lead",
    );
    const [{ left }] = await sql<{ left: number }[]>`select count(*)::int as left from app.outbox`;
    assert.equal(left, 0, "NREF-06: the event is consumed all the same");
  });
});

test("a lead deleted while its dispatch is uncommitted waits, and its notifications go with it", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { leadId } = await leadAwaitingDispatch(sql);
    await whileHolding(sql, url, dispatch, (other) => other`delete from public.leads where id = ${leadId}`);
    assert.equal(await notificationsOf(sql, "lead_id", leadId), 0, "NREF-07: nothing is left about the lead");
  });
});

test("a user deleted while a dispatch or an admin notice is uncommitted loses those notifications too", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { members } = await leadAwaitingDispatch(sql);
    await whileHolding(
      sql,
      url,
      dispatch,
      (other) => other`delete from public.users where id = ${members.agent.user}`,
    );
    assert.equal(await notificationsOf(sql, "user_id", members.agent.user), 0, "NREF-08: the dispatch's");
  });
  await withPrivateDatabase(async (sql, url) => {
    const { clientId, members } = await leadAwaitingDispatch(sql);
    await whileHolding(
      sql,
      url,
      (tx) =>
        tx`select app.notify_admins_once(${clientId}, 'integration.broken', 'sheets', 'Sheets stopped', '', '{}',
          interval '1 day')`,
      (other) => other`delete from public.users where id = ${members.admin.user}`,
    );
    assert.equal(await notificationsOf(sql, "user_id", members.admin.user), 0, "NREF-09: the admin notice's");
  });
});

test("a member removed while a dispatch is uncommitted, or before it, keeps no notification of the client", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { members } = await leadAwaitingDispatch(sql);
    await whileHolding(
      sql,
      url,
      dispatch,
      (other) => other`delete from public.memberships where id = ${members.admin.membership}`,
    );
    assert.equal(await notificationsOf(sql, "user_id", members.admin.user), 0, "NREF-12: removed after");
    assert.equal(
      await notificationsOf(sql, "user_id", members.agent.user),
      1,
      "the owner of the lead is told",
    );
  });
  await withPrivateDatabase(async (sql, url) => {
    const { members } = await leadAwaitingDispatch(sql);
    await whileHolding(
      sql,
      url,
      (tx) => tx`delete from public.memberships where id = ${members.admin.membership}`,
      dispatch,
    );
    assert.equal(await notificationsOf(sql, "user_id", members.admin.user), 0, "NREF-13: removed before");
    assert.equal(
      await notificationsOf(sql, "user_id", members.agent.user),
      1,
      "the owner of the lead is told",
    );
  });
});

test("the dispatcher tells no member above the owner whose role reads only their own leads", async () => {
  await withPrivateDatabase(async (sql) => {
    const clientId = uniq("client");
    await sql`insert into public.clients (id, name) values (${clientId}, 'Own scope')`;
    const [owner, boss, agent] = await addReportingLine(sql, clientId, ["owner", "agent", "agent"]);
    const leadId = await insertLead(sql, clientId, agent.membership);
    await dispatch(sql);
    const told = await sql<{ user_id: string }[]>`
      select user_id from public.notifications where lead_id = ${leadId} order by user_id`;
    assert.deepEqual(
      told.map((row) => row.user_id),
      [owner.user, agent.user].sort(),
      "NREF-21: the owner and the client's owner, not an agent above them",
    );
    assert.equal(await notificationsOf(sql, "user_id", boss.user), 0);
  });
});

test("a lead reassigned before, during or after its uncommitted dispatch leaves its former owner nothing", async () => {
  const reassign = (sql: Sql | postgres.TransactionSql, leadId: string, to: string) =>
    sql`update public.leads set owner_membership_id = ${to} where id = ${leadId}`;
  await withPrivateDatabase(async (sql, url) => {
    const { clientId, leadId, members } = await leadAwaitingDispatch(sql);
    const [newAgent] = await addReportingLine(sql, clientId, ["agent"]);
    await whileHolding(sql, url, (tx) => reassign(tx, leadId, newAgent.membership), dispatch);
    assert.equal(await notificationsOf(sql, "user_id", members.agent.user), 0, "NREF-22: reassigned during");
    await dispatch(sql);
    assert.deepEqual(
      await titlesOf(sql, newAgent.user),
      ["Lead assigned to you"],
      "the new owner is told once",
    );
  });
  await withPrivateDatabase(async (sql) => {
    const { clientId, leadId, members } = await leadAwaitingDispatch(sql);
    const [newAgent] = await addReportingLine(sql, clientId, ["agent"]);
    await reassign(sql, leadId, newAgent.membership);
    await dispatch(sql);
    assert.equal(await notificationsOf(sql, "user_id", members.agent.user), 0, "NREF-23: reassigned before");
    assert.deepEqual(
      await titlesOf(sql, newAgent.user),
      ["Lead assigned to you"],
      "NREF-29: the new owner is told of the assignment, not of a creation assigned to someone else",
    );
  });
  await withPrivateDatabase(async (sql, url) => {
    const { clientId, leadId, members } = await leadAwaitingDispatch(sql);
    const [newAgent] = await addReportingLine(sql, clientId, ["agent"]);
    await whileHolding(sql, url, dispatch, (other) => reassign(other, leadId, newAgent.membership));
    assert.equal(await notificationsOf(sql, "user_id", members.agent.user), 0, "NREF-24: reassigned after");
    assert.equal(
      await notificationsOf(sql, "user_id", members.admin.user),
      1,
      "the client-scoped admin, who still sees the lead, keeps theirs",
    );
  });
});

test("a member moved while a dispatch is uncommitted waits, and the manager the move takes the lead from keeps nothing", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const clientId = uniq("client");
    await sql`insert into public.clients (id, name) values (${clientId}, 'Moves')`;
    const [owner, manager, agent] = await addReportingLine(sql, clientId, ["owner", "manager", "agent"]);
    const leadId = await insertLead(sql, clientId, agent.membership);
    await whileHolding(
      sql,
      url,
      dispatch,
      (other) =>
        other`update public.memberships set reports_to = ${owner.membership} where id = ${agent.membership}`,
    );
    assert.equal(await notificationsOf(sql, "user_id", manager.user), 0, "NREF-25: moved after");
    assert.equal(await notificationsOf(sql, "lead_id", leadId), 2, "the agent and the owner keep theirs");
  });
});

const toViewer = (sql: Sql | postgres.TransactionSql, clientId: string, membership: string) =>
  sql`update public.memberships set role_id = (
        select id from public.roles where client_id = ${clientId} and key = 'viewer'
      ) where id = ${membership}`;

test("a member's role narrowed while a dispatch is uncommitted waits, and leaves them nothing of the lead", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { clientId, members } = await leadAwaitingDispatch(sql);
    await whileHolding(sql, url, dispatch, (other) => toViewer(other, clientId, members.admin.membership));
    assert.equal(await notificationsOf(sql, "user_id", members.admin.user), 0, "NREF-27: narrowed after");
    assert.equal(
      await notificationsOf(sql, "user_id", members.agent.user),
      1,
      "the lead's owner keeps theirs",
    );
  });
});

test("a dispatch while a member's role is being narrowed does not tell them", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const { clientId, members } = await leadAwaitingDispatch(sql);
    await whileHolding(sql, url, (tx) => toViewer(tx, clientId, members.admin.membership), dispatch);
    assert.equal(await notificationsOf(sql, "user_id", members.admin.user), 0, "NREF-28: narrowed before");
    assert.equal(await notificationsOf(sql, "user_id", members.agent.user), 1, "the lead's owner is told");
  });
});

test("a manager's role changed while moves of their team are uncommitted waits for the moves instead of deadlocking", async () => {
  await withPrivateDatabase(async (sql, url) => {
    const clientId = uniq("client");
    await sql`insert into public.clients (id, name) values (${clientId}, 'Moves and roles')`;
    const [owner, manager, first] = await addReportingLine(sql, clientId, ["owner", "manager", "agent"]);
    const [{ id: second }] = await sql<{ id: string }[]>`
      with u as (
        insert into public.users (email, full_name) values (${`${
      uniq("agent")
    }@example.com`}, 'agent') returning id
      )
      insert into public.memberships (client_id, user_id, role_id, reports_to)
      select ${clientId}, u.id, r.id, ${manager.membership} from u
      join public.roles r on r.client_id = ${clientId} and r.key = 'agent'
      returning id`;
    const moveToOwner = (tx: postgres.TransactionSql, membership: string) =>
      tx`update public.memberships set reports_to = ${owner.membership} where id = ${membership}`;
    // The second agent's move deletes the manager's closure row of them; the role change, which locks the
    // manager's rows in order (the first agent's before the second's), comes next; then the first agent moves.
    // Before sql/0044 the role change held the first agent's row while waiting for the second's: a deadlock.
    await whileHolding(
      sql,
      url,
      (tx) => moveToOwner(tx, second),
      (other) => toViewer(other, clientId, manager.membership),
      (tx) => moveToOwner(tx, first.membership),
    );
    const rows = await sql<{ id: string; reports_to: string; role: string }[]>`
      select m.id, m.reports_to, r.key as role from public.memberships m join public.roles r on r.id = m.role_id
      where m.id in (${manager.membership}, ${first.membership}, ${second}) order by m.id`;
    assert.deepEqual(
      [...rows],
      [
        { id: manager.membership, reports_to: owner.membership, role: "viewer" },
        { id: first.membership, reports_to: owner.membership, role: "agent" },
        { id: second, reports_to: owner.membership, role: "agent" },
      ].sort((a, b) => a.id < b.id ? -1 : 1),
      "NREF-30: both moves and the role change committed",
    );
  });
});
