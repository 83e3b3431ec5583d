import assert from "node:assert/strict";
import { actAs, addMember, createClient, createUser, db, test } from "../_helpers.ts";

/** The closure rows of a client as "ancestor>descendant@depth", compared with a recursive walk of reports_to. */
async function closureMatchesReportsTo(clientId: string) {
  const closure = await db()<{ pair: string }[]>`
    select c.ancestor_id || '>' || c.descendant_id || '@' || c.depth as pair
    from app.membership_closure c join public.memberships m on m.id = c.descendant_id
    where m.client_id = ${clientId} order by 1`;
  const walked = await db()<{ pair: string }[]>`
    with recursive up (descendant_id, ancestor_id, depth) as (
      select id, id, 0 from public.memberships where client_id = ${clientId}
      union all
      select up.descendant_id, m.reports_to, up.depth + 1
      from up join public.memberships m on m.id = up.ancestor_id
      where m.reports_to is not null
    )
    select ancestor_id || '>' || descendant_id || '@' || depth as pair from up order by 1`;
  assert.deepEqual(
    closure.map((r) => r.pair),
    walked.map((r) => r.pair),
    "closure table equals the reports_to tree",
  );
}

/** A chain of `depth` members, each reporting to the previous; returns membership and user ids top-down. */
async function chain(clientId: string, depth: number, role = "manager") {
  const members: { membership: string; user: string }[] = [];
  for (let i = 0; i < depth; i++) {
    const user = await createUser();
    const membership = await addMember(
      clientId,
      user.id,
      i === 0 ? "owner" : role,
      members[i - 1]?.membership ?? null,
    );
    members.push({ membership, user: user.id });
  }
  return members;
}

test("H-01: a 7-level chain has every ancestor pair with its depth", async () => {
  const clientId = await createClient();
  const levels = await chain(clientId, 7);
  const [row] = await db()`
    select count(*)::int as pairs, max(depth) as deepest from app.membership_closure
    where descendant_id = ${levels[6].membership}`;
  assert.deepEqual({ ...row }, { pairs: 7, deepest: 6 });
  await closureMatchesReportsTo(clientId);
});

test("H-02: a team-scoped manager at level 3 of 7 sees exactly themselves and the 4 levels below", async () => {
  const clientId = await createClient();
  const levels = await chain(clientId, 7);
  const seen = await actAs(
    levels[2].user,
    clientId,
    (tx) => tx`select id from public.memberships where client_id = ${clientId}`,
  );
  assert.deepEqual(
    seen.map((r) => r.id).sort(),
    levels.slice(2).map((l) => l.membership).sort(),
    "self and every level below, nobody above",
  );
});

test("H-03: moving a manager moves their whole subtree in one statement", async () => {
  const clientId = await createClient();
  const top = await chain(clientId, 2); // owner > manager A
  const otherBranch = await addMember(clientId, (await createUser()).id, "manager", top[0].membership);
  // A subtree of depth 4 under manager A.
  let parent = top[1].membership;
  const below: string[] = [];
  for (let i = 0; i < 4; i++) {
    parent = await addMember(clientId, (await createUser()).id, "agent", parent);
    below.push(parent);
  }
  await db()`update public.memberships set reports_to = ${otherBranch} where id = ${below[0]}`;
  await closureMatchesReportsTo(clientId);
  const ancestors = await db()`
    select ancestor_id from app.membership_closure where descendant_id = ${
    below[3]
  } and depth > 0 order by depth`;
  assert.deepEqual(ancestors.map((r) => r.ancestor_id), [
    below[2],
    below[1],
    below[0],
    otherBranch,
    top[0].membership,
  ]);
});

test("H-04: a member cannot report to someone in their own subtree (cycle) nor to themselves", async () => {
  const clientId = await createClient();
  const levels = await chain(clientId, 6);
  await assert.rejects(
    () =>
      db()`update public.memberships set reports_to = ${levels[5].membership} where id = ${
        levels[1].membership
      }`,
    /cannot report to someone in their own team/,
  );
  await assert.rejects(
    () =>
      db()`update public.memberships set reports_to = ${levels[3].membership} where id = ${
        levels[3].membership
      }`,
    (e: { code?: string }) => e.code === "23514",
  );
  await closureMatchesReportsTo(clientId);
});

test("H-05: two concurrent opposite moves cannot build a cycle", async () => {
  for (let round = 0; round < 5; round++) {
    const clientId = await createClient();
    const root = await chain(clientId, 1);
    const x = await addMember(clientId, (await createUser()).id, "manager", root[0].membership);
    const y = await addMember(clientId, (await createUser()).id, "manager", root[0].membership);
    // x under y and y under x at the same time: exactly one may win.
    const results = await Promise.allSettled([
      db().begin(async (tx) => {
        await tx`update public.memberships set reports_to = ${y} where id = ${x}`;
        await new Promise((r) => setTimeout(r, 20));
      }),
      db().begin(async (tx) => {
        await tx`update public.memberships set reports_to = ${x} where id = ${y}`;
        await new Promise((r) => setTimeout(r, 20));
      }),
    ]);
    assert.equal(results.filter((r) => r.status === "fulfilled").length, 1, `round ${round}: one move wins`);
    await closureMatchesReportsTo(clientId);
  }
});

test("H-06: many concurrent moves keep the closure table exact", async () => {
  const clientId = await createClient();
  const root = await chain(clientId, 1);
  const ids: string[] = [];
  for (let i = 0; i < 12; i++) {
    ids.push(await addMember(clientId, (await createUser()).id, "agent", root[0].membership));
  }
  const moves = Array.from({ length: 40 }, (_, i) => {
    const member = ids[i % ids.length];
    const manager = ids[(i * 7 + 3) % ids.length];
    return db()`update public.memberships set reports_to = ${manager} where id = ${member}`.catch((e) =>
      e.code
    );
  });
  const outcomes = await Promise.all(moves);
  assert.ok(outcomes.every((o) => o === "23514" || Array.isArray(o)), "only cycle refusals fail");
  await closureMatchesReportsTo(clientId);
});

test("H-07: removing a manager re-attaches their reports to the manager above", async () => {
  const clientId = await createClient();
  const levels = await chain(clientId, 5);
  await db()`delete from public.memberships where id = ${levels[2].membership}`;
  const [row] = await db()`select reports_to from public.memberships where id = ${levels[3].membership}`;
  assert.equal(row.reports_to, levels[1].membership);
  await closureMatchesReportsTo(clientId);
});

test("H-09: deleting a client takes its whole hierarchy, leads and notifications, and nothing of another", async () => {
  const clients = [await createClient(), await createClient()];
  const hierarchies = [];
  for (const clientId of clients) {
    const levels = await chain(clientId, 4);
    const [lead] = await db()<{ id: string }[]>`
      insert into public.leads (client_id, source, full_name, email, owner_membership_id)
      values (${clientId}, 'api', 'Hal Hierarchy', ${`hal-${clientId}@example.com`}, ${levels[3].membership})
      returning id`;
    await db()`
      insert into public.notifications (client_id, user_id, kind, title, lead_id)
      values (${clientId}, ${levels[0].user}, 'lead.created', 'New lead in your team', ${lead.id})`;
    hierarchies.push(levels);
  }
  const counts = (clientId: string) =>
    db()<{ members: number; leads: number; notifications: number }[]>`
      select (select count(*)::int from public.memberships where client_id = ${clientId}) as members,
             (select count(*)::int from public.leads where client_id = ${clientId}) as leads,
             (select count(*)::int from public.notifications where client_id = ${clientId}) as notifications`
      .then(([row]) => row);

  // Each member's removal used to re-point its reports, rows the same cascade was deleting: an error.
  await db()`delete from public.clients where id = ${clients[0]}`;
  assert.deepEqual(await counts(clients[0]), { members: 0, leads: 0, notifications: 0 });
  assert.deepEqual(
    await counts(clients[1]),
    { members: 4, leads: 1, notifications: 1 },
    "the other client keeps all",
  );
  const [{ closure }] = await db()<{ closure: number }[]>`
    select count(*)::int as closure from app.membership_closure
    where descendant_id = any (${hierarchies[0].map((level) => level.membership)})`;
  assert.equal(closure, 0, "the deleted client's closure rows are gone");
  await closureMatchesReportsTo(clients[1]);
});

test("H-08: a hierarchy change applies to the manager's very next statement", async () => {
  const clientId = await createClient();
  const levels = await chain(clientId, 3); // owner > manager > manager2
  const agent = await addMember(clientId, (await createUser()).id, "agent", levels[0].membership);
  const visible = () =>
    actAs(levels[1].user, clientId, (tx) => tx`select 1 from public.memberships where id = ${agent}`).then((
      r,
    ) => r.length);
  assert.equal(await visible(), 0, "outside the team before the move");
  await db()`update public.memberships set reports_to = ${levels[2].membership} where id = ${agent}`;
  assert.equal(await visible(), 1, "inside the team right after the move");
});
