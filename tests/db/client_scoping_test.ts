import assert from "node:assert/strict";
import { actAs, createTeam, createUser, db, test } from "../_helpers.ts";

// Two clients side by side: everything of client B must be invisible and untouchable from client A.
const a = await createTeam();
const b = await createTeam();

test("CS-01: a member reads only their own client's row", async () => {
  const ids = await actAs(a.users.agent.id, a.clientId, (tx) => tx`select id from public.clients`);
  assert.deepEqual(ids.map((r) => r.id), [a.clientId]);
});

test("CS-02: a member sees no membership, role or account of another client", async () => {
  await actAs(a.users.owner.id, a.clientId, async (tx) => {
    const memberships = await tx`select 1 from public.memberships where client_id = ${b.clientId}`;
    const roles = await tx`select 1 from public.roles where client_id = ${b.clientId}`;
    const users = await tx`select 1 from public.users where id = ${b.users.agent.id}`;
    assert.equal(memberships.length, 0, "memberships of B");
    assert.equal(roles.length, 0, "roles of B");
    assert.equal(users.length, 0, "accounts that only belong to B");
  });
});

test("CS-03: an owner cannot update another client's row (no rows touched)", async () => {
  const updated = await actAs(
    a.users.owner.id,
    a.clientId,
    (tx) => tx`update public.clients set name = 'hijacked' where id = ${b.clientId} returning id`,
  );
  assert.equal(updated.length, 0);
  const [row] = await db()`select name from public.clients where id = ${b.clientId}`;
  assert.notEqual(row.name, "hijacked");
});

test("CS-04: an owner cannot insert a membership into another client", async () => {
  const stranger = await createUser();
  await assert.rejects(
    () =>
      actAs(
        a.users.owner.id,
        a.clientId,
        (tx) =>
          tx`insert into public.memberships (client_id, user_id, role_id)
           select ${b.clientId}, ${stranger.id}, id from public.roles where client_id = ${b.clientId} and key = 'agent'`
            .then((rows) => {
              // The role of B is invisible, so the insert selects nothing; force a direct attempt too.
              if (rows.length === 0) {
                return tx`insert into public.memberships (client_id, user_id, role_id)
                        values (${b.clientId}, ${stranger.id}, gen_random_uuid())`;
              }
              return rows;
            }),
      ),
    (error: { code?: string }) => error.code === "42501",
    "row-level security refuses the write",
  );
});

test("CS-05: an owner cannot delete another client's memberships", async () => {
  const deleted = await actAs(
    a.users.owner.id,
    a.clientId,
    (tx) => tx`delete from public.memberships where client_id = ${b.clientId} returning id`,
  );
  assert.equal(deleted.length, 0);
});

test("CS-06: an agent cannot change memberships of their own client (no members.manage)", async () => {
  const updated = await actAs(
    a.users.agent.id,
    a.clientId,
    (tx) => tx`update public.memberships set reports_to = null where client_id = ${a.clientId} returning id`,
  );
  assert.equal(updated.length, 0);
});

test("CS-07: a disabled user sees nothing at all", async () => {
  const team = await createTeam();
  await db()`update public.users set disabled_at = now() where id = ${team.users.owner.id}`;
  await actAs(team.users.owner.id, team.clientId, async (tx) => {
    assert.equal((await tx`select 1 from public.clients`).length, 0, "clients");
    assert.equal((await tx`select 1 from public.memberships`).length, 0, "memberships");
    assert.equal((await tx`select 1 from public.roles`).length, 0, "roles");
  });
});

test("CS-08: anon reads and writes nothing", async () => {
  for (const statement of ["select 1 from public.clients", "update public.clients set name = 'x'"]) {
    await assert.rejects(
      () =>
        db().begin(async (tx) => {
          await tx`select set_config('role', 'anon', true)`;
          await tx.unsafe(statement);
        }),
      (e: { code?: string }) => e.code === "42501",
      statement,
    );
  }
});

test("CS-09: a platform administrator reads every client", async () => {
  const admin = await createUser({ admin: true });
  const ids = await actAs(
    admin.id,
    null,
    (tx) => tx`select id from public.clients where id in (${a.clientId}, ${b.clientId})`,
  );
  assert.equal(ids.length, 2);
});

test("CS-10: a client id is immutable, even for the database owner", async () => {
  await assert.rejects(
    () => db()`update public.clients set id = ${a.clientId + "-x"} where id = ${a.clientId}`,
    /is immutable/,
  );
});

test("CS-11: client ids follow the pattern", async () => {
  for (const bad of ["A", "ab", "Upper-case", "-lead", "trail-", "sp ace", "x".repeat(65)]) {
    await assert.rejects(
      () => db()`insert into public.clients (id, name) values (${bad}, 'x')`,
      (e: { code?: string }) => e.code === "23514",
      `"${bad}" must be refused`,
    );
  }
});

test("CS-12: an admin cannot hand out the owner role nor demote the owner (no escalation)", async () => {
  await assert.rejects(
    () =>
      actAs(
        a.users.admin.id,
        a.clientId,
        (tx) =>
          tx`update public.memberships set role_id = (select id from public.roles where client_id = ${a.clientId} and key = 'owner')
           where id = ${a.memberships.manager}`,
      ),
    /above your own/,
  );
  await assert.rejects(
    () =>
      actAs(
        a.users.admin.id,
        a.clientId,
        (tx) =>
          tx`update public.memberships set role_id = (select id from public.roles where client_id = ${a.clientId} and key = 'viewer')
           where id = ${a.memberships.owner}`,
      ),
    /above your own/,
  );
});

test("CS-13: the last owner of a client cannot be removed or demoted", async () => {
  await assert.rejects(
    () => db()`delete from public.memberships where id = ${a.memberships.owner}`,
    /must keep at least one owner/,
  );
  await assert.rejects(
    () =>
      db()`update public.memberships set role_id = (select id from public.roles where client_id = ${a.clientId} and key = 'admin')
           where id = ${a.memberships.owner}`,
    /must keep at least one owner/,
  );
});

test("CS-14: a manager from another client cannot be set as reports_to", async () => {
  await assert.rejects(
    () =>
      db()`update public.memberships set reports_to = ${b.memberships.manager} where id = ${a.memberships.agent}`,
    (e: { code?: string }) => e.code === "23503",
  );
});

test("CS-15: a non-administrator cannot make themselves a platform administrator", async () => {
  await assert.rejects(
    () =>
      actAs(
        a.users.owner.id,
        a.clientId,
        (tx) => tx`update public.users set is_platform_admin = true where id = ${a.users.owner.id}`,
      ),
    /Only platform administrators/,
  );
  const renamed = await actAs(
    a.users.owner.id,
    a.clientId,
    (tx) => tx`update public.users set full_name = 'New Name' where id = ${a.users.owner.id} returning id`,
  );
  assert.equal(renamed.length, 1, "but may rename themselves");
});
