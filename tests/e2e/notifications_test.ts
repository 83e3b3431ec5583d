/**
 * The notifications API over HTTP: every signed-in user reads only their own notifications (newest first,
 * unread and per-client filters, keyset pages, an unread count), marks one or all of them read, and gets 404
 * for anyone else's; no permission is needed. The dispatcher writes a new lead's notifications for its
 * owner and the managers above them.
 */
import assert from "node:assert/strict";
import {
  addMember,
  assertProblem,
  call,
  createClient,
  createTeam,
  createUser,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

/** A notification for a user, created at a given number of seconds ago (later ones are newer). */
async function notify(
  clientId: string,
  userId: string,
  options: { secondsAgo?: number; read?: boolean; title?: string } = {},
): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.notifications (client_id, user_id, kind, title, body, data, created_at, read_at)
    values (${clientId}, ${userId}, 'lead.created', ${options.title ?? "Fixture"}, 'Body', '{"n": 1}',
      now() - make_interval(secs => ${options.secondsAgo ?? 0}), ${
    options.read ? new Date().toISOString() : null
  })
    returning id`;
  return row.id;
}

async function readAt(id: string): Promise<string | null> {
  const [row] = await db()<
    { read_at: string | null }[]
  >`select read_at from public.notifications where id = ${id}`;
  return row.read_at;
}

/** A user who belongs to one client, with a token for it. */
async function member(clientId = uniq("client")) {
  if (!(await db()`select 1 from public.clients where id = ${clientId}`).length) await createClient(clientId);
  const user = await createUser();
  await addMember(clientId, user.id, "viewer");
  return { user, clientId, token: await sessionToken(user, clientId) };
}

const ids = (reply: Reply): string[] => reply.body.data.map((n: { id: string }) => n.id);

/** Dispatches until a lead has `expected` notifications (agent, manager, admin and owner in createTeam()). */
async function dispatchUntilNotified(leadId: string, expected: number) {
  // Other files' dispatchers may take the event first; either way the notifications appear.
  let count = 0;
  for (let i = 0; i < 50 && count < expected; i++) {
    await db()`select app.dispatch_events(1000, 5)`;
    [{ count }] = await db()<{ count: number }[]>`
      select count(*)::int as count from public.notifications where lead_id = ${leadId}`;
    if (count < expected) await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.equal(count, expected, "agent, manager, admin and owner");
}

test("a new lead notifies its owner and every manager above, each seeing only their own", async () => {
  const team = await createTeam();
  const email = `${uniq("notified")}@example.com`;
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email, owner_membership_id)
    values (${team.clientId}, 'manual', 'Ada Lovelace', ${email}, ${team.memberships.agent}) returning id`;
  await dispatchUntilNotified(lead.id, 4);

  const agent = await call(stack, "GET", "/api/notifications", {
    token: await sessionToken(team.users.agent, team.clientId),
  });
  assert.equal(agent.status, 200, JSON.stringify(agent.body));
  assert.equal(agent.body.data.length, 1);
  const [mine] = agent.body.data;
  assert.equal(mine.title, "New lead assigned to you");
  assert.equal(mine.body, "Ada Lovelace");
  assert.equal(mine.kind, "lead.created");
  assert.equal(mine.lead_id, lead.id);
  assert.equal(mine.client_id, team.clientId);
  assert.equal(mine.read_at, null);
  assert.equal(agent.body.unread_count, 1);

  const manager = await call(stack, "GET", "/api/notifications", {
    token: await sessionToken(team.users.manager, team.clientId),
  });
  assert.deepEqual(manager.body.data.map((n: { title: string }) => n.title), ["New lead in your team"]);
  assert.notEqual(manager.body.data[0].id, mine.id, "each recipient has their own row");

  for (const outsider of [team.users.viewer, team.users.otherAgent]) {
    const reply = await call(stack, "GET", "/api/notifications", {
      token: await sessionToken(outsider, team.clientId),
    });
    assert.deepEqual(reply.body.data, [], "members outside the lead's chain get nothing");
  }
});

test("a lead reassigned out of a member's sight takes its notifications from them; those who still see it keep theirs", async () => {
  const team = await createTeam();
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, email, owner_membership_id)
    values (${team.clientId}, 'manual', 'Grace Hopper', ${`${uniq("moved")}@example.com`},
      ${team.memberships.agent}) returning id`;
  await dispatchUntilNotified(lead.id, 4);
  const titlesOf = async (user: { id: string; email: string }) => {
    const reply = await call(stack, "GET", "/api/notifications", {
      token: await sessionToken(user, team.clientId),
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    return reply.body.data.filter((n: { lead_id: string }) => n.lead_id === lead.id).map((
      n: { title: string },
    ) => n.title);
  };
  assert.deepEqual(await titlesOf(team.users.manager), ["New lead in your team"]);
  const [managersOwn] = await db()<{ id: string }[]>`
    select id from public.notifications where lead_id = ${lead.id} and user_id = ${team.users.manager.id}`;

  const moved = await call(stack, "POST", `/api/clients/${team.clientId}/leads/${lead.id}/assign`, {
    token: await sessionToken(team.users.admin, team.clientId),
    body: { membership_id: team.memberships.otherAgent },
  });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  assert.deepEqual(await titlesOf(team.users.agent), [], "the former owner no longer reads it");
  assert.deepEqual(await titlesOf(team.users.manager), [], "nor their manager, who no longer sees the lead");
  // The move's own event may already have been dispatched by another test file's dispatcher, adding "Lead
  // assigned in your team" for those above the new owner; what matters here is that the first one stays.
  for (const [name, user] of [["admin", team.users.admin], ["owner", team.users.owner]] as const) {
    const titles = await titlesOf(user);
    assert.ok(titles.includes("New lead in your team"), `the ${name} still sees the lead: ${titles}`);
    assert.deepEqual(titles.filter((title: string) => title !== "Lead assigned in your team"), [
      "New lead in your team",
    ]);
  }
  assertProblem(
    await call(stack, "POST", `/api/notifications/${managersOwn.id}/read`, {
      token: await sessionToken(team.users.manager, team.clientId),
    }),
    404,
    "notification_not_found",
  );
});

test("a member removed from a client no longer reads its notifications; theirs of another client stay", async () => {
  const team = await createTeam();
  const other = await createClient(uniq("client"));
  await addMember(other, team.users.manager.id, "viewer");
  const inTeam = await notify(team.clientId, team.users.manager.id);
  const inOther = await notify(other, team.users.manager.id);
  const token = await sessionToken(team.users.manager, null);
  assert.deepEqual(
    ids(await call(stack, "GET", "/api/notifications", { token })).sort(),
    [inTeam, inOther].sort(),
  );

  const removed = await call(
    stack,
    "DELETE",
    `/api/clients/${team.clientId}/members/${team.memberships.manager}`,
    {
      token: await sessionToken(team.users.owner, team.clientId),
    },
  );
  assert.equal(removed.status, 204, JSON.stringify(removed.body));
  const after = await call(stack, "GET", "/api/notifications", { token });
  assert.equal(after.status, 200, JSON.stringify(after.body));
  assert.deepEqual(ids(after), [inOther]);
  assert.equal(after.body.unread_count, 1);
  assertProblem(
    await call(stack, "POST", `/api/notifications/${inTeam}/read`, { token }),
    404,
    "notification_not_found",
  );
});

test("GET /notifications lists newest first in keyset pages, with unread and client filters", async () => {
  const first = await member();
  const secondClient = await createClient(uniq("client"));
  await addMember(secondClient, first.user.id, "agent");
  const oldest = await notify(first.clientId, first.user.id, { secondsAgo: 30, read: true });
  const middle = await notify(secondClient, first.user.id, { secondsAgo: 20 });
  const newest = await notify(first.clientId, first.user.id, { secondsAgo: 10 });
  const someoneElse = await member(first.clientId);
  await notify(first.clientId, someoneElse.user.id);

  const page1 = await call(stack, "GET", "/api/notifications?limit=2", { token: first.token });
  assert.equal(page1.status, 200, JSON.stringify(page1.body));
  assert.deepEqual(ids(page1), [newest, middle]);
  assert.equal(page1.body.unread_count, 2);
  const page2 = await call(stack, "GET", `/api/notifications?limit=2&cursor=${page1.body.next_cursor}`, {
    token: first.token,
  });
  assert.deepEqual(ids(page2), [oldest]);
  assert.equal(page2.body.next_cursor, null);

  const unread = await call(stack, "GET", "/api/notifications?unread=true", { token: first.token });
  assert.deepEqual(ids(unread), [newest, middle]);
  const all = await call(stack, "GET", "/api/notifications?unread=false", { token: first.token });
  assert.deepEqual(ids(all), [newest, middle, oldest], "unread=false lists everything");

  const ofClient = await call(stack, "GET", `/api/notifications?client_id=${secondClient}`, {
    token: first.token,
  });
  assert.deepEqual(ids(ofClient), [middle]);
  assert.equal(ofClient.body.unread_count, 1, "the count follows the client filter");
  const unreadOfFirst = await call(
    stack,
    "GET",
    `/api/notifications?client_id=${first.clientId}&unread=true`,
    {
      token: first.token,
    },
  );
  assert.deepEqual(ids(unreadOfFirst), [newest]);
});

test("GET /notifications needs no permission: a member whose role holds none, or with no client, reads theirs", async () => {
  const clientId = await createClient(uniq("client"));
  await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${clientId}, 'nothing', 'Nothing', 60, 'own', '{}')`;
  const user = await createUser();
  await addMember(clientId, user.id, "nothing");
  const id = await notify(clientId, user.id);
  for (const token of [await sessionToken(user, clientId), await sessionToken(user, null)]) {
    const reply = await call(stack, "GET", "/api/notifications", { token });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
    assert.deepEqual(ids(reply), [id]);
  }
  assertProblem(await call(stack, "GET", "/api/notifications"), 401, "missing_token");
});

test("GET /notifications answers 422 for a bad unread flag, client id, limit or cursor", async () => {
  const { token } = await member();
  for (
    const [query, path] of [
      ["?unread=maybe", "query.unread"],
      ["?client_id=NOT%20A%20CLIENT", "query.client_id"],
      ["?limit=500", "query.limit"],
      ["?cursor=%%%", "query.cursor"],
      [`?cursor=${btoa(JSON.stringify(["yesterday", "x"]))}`, "query.cursor"],
    ]
  ) {
    const reply = await call(stack, "GET", `/api/notifications${query}`, { token });
    assertProblem(reply, 422, "validation_failed");
    assert.ok(
      reply.body.errors.some((e: { path: string }) => e.path === path),
      `${query}: ${JSON.stringify(reply.body)}`,
    );
  }
});

test("POST /notifications/{id}/read marks the caller's notification read once; anyone else's is 404", async () => {
  const me = await member();
  const colleague = await member(me.clientId);
  const mine = await notify(me.clientId, me.user.id);
  const theirs = await notify(me.clientId, colleague.user.id);

  const reply = await call(stack, "POST", `/api/notifications/${mine}/read`, { token: me.token });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.id, mine);
  assert.ok(reply.body.read_at);
  assert.equal(await readAt(mine), reply.body.read_at);
  const again = await call(stack, "POST", `/api/notifications/${mine}/read`, { token: me.token });
  assert.equal(again.status, 200);
  assert.equal(again.body.read_at, reply.body.read_at, "marking twice keeps the first time");

  assertProblem(
    await call(stack, "POST", `/api/notifications/${theirs}/read`, { token: me.token }),
    404,
    "notification_not_found",
  );
  assert.equal(await readAt(theirs), null, "someone else's notification is untouched");
  assertProblem(
    await call(stack, "POST", `/api/notifications/${crypto.randomUUID()}/read`, { token: me.token }),
    404,
    "notification_not_found",
  );
  const malformed = await call(stack, "POST", "/api/notifications/not-a-uuid/read", { token: me.token });
  assertProblem(malformed, 422, "validation_failed");
  assert.equal(malformed.body.errors[0].path, "param.notificationId");
});

test("POST /notifications/read-all marks the caller's unread ones (of one client with client_id) and counts them", async () => {
  const me = await member();
  const otherClient = await createClient(uniq("client"));
  await addMember(otherClient, me.user.id, "viewer");
  const colleague = await member(me.clientId);
  const a = await notify(me.clientId, me.user.id);
  const b = await notify(me.clientId, me.user.id);
  const already = await notify(me.clientId, me.user.id, { read: true });
  const elsewhere = await notify(otherClient, me.user.id);
  const theirs = await notify(me.clientId, colleague.user.id);
  const alreadyAt = await readAt(already);

  const scoped = await call(stack, "POST", `/api/notifications/read-all?client_id=${me.clientId}`, {
    token: me.token,
  });
  assert.equal(scoped.status, 200, JSON.stringify(scoped.body));
  assert.deepEqual(scoped.body, { count: 2 });
  assert.ok(await readAt(a) && await readAt(b));
  assert.equal(await readAt(already), alreadyAt, "read ones keep their time");
  assert.equal(await readAt(elsewhere), null, "the other client's stay unread");
  assert.equal(await readAt(theirs), null, "a colleague's stay unread");

  const rest = await call(stack, "POST", "/api/notifications/read-all", { token: me.token });
  assert.deepEqual(rest.body, { count: 1 });
  assert.ok(await readAt(elsewhere));
  assert.deepEqual((await call(stack, "POST", "/api/notifications/read-all", { token: me.token })).body, {
    count: 0,
  });
  assert.equal(await readAt(theirs), null);
  const listed = await call(stack, "GET", "/api/notifications", { token: me.token });
  assert.equal(listed.body.unread_count, 0);

  const bad = await call(stack, "POST", "/api/notifications/read-all?client_id=%20", { token: me.token });
  assertProblem(bad, 422, "validation_failed");
});
