/**
 * The assignment service over HTTP: assignment rules (who may manage them, their validation, and that a
 * product's rule really routes that product's leads to its pool only), member availability (the member
 * themself, members.manage inside the hierarchy and rank) and replacing the lead pipeline. Leads are
 * created with database inserts, so the routing triggers decide their owners exactly as for any source.
 */
import assert from "node:assert/strict";
import {
  addMember,
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

/** A team (owner > admin > {manager > agent, otherAgent, viewer}) with a token per person. */
async function teamWithTokens() {
  const team = await createTeam();
  const tokens = {
    owner: await sessionToken(team.users.owner, team.clientId),
    admin: await sessionToken(team.users.admin, team.clientId),
    manager: await sessionToken(team.users.manager, team.clientId),
    agent: await sessionToken(team.users.agent, team.clientId),
    otherAgent: await sessionToken(team.users.otherAgent, team.clientId),
    viewer: await sessionToken(team.users.viewer, team.clientId),
  };
  return { ...team, tokens };
}

/** Another client with its owner signed in. */
async function otherClient() {
  const team = await createTeam();
  return { ...team, token: await sessionToken(team.users.owner, team.clientId) };
}

/** A catalog product enabled for the given clients. */
async function product(...clientIds: string[]): Promise<string> {
  const [industry] = await db()`insert into public.industries (name) values (${
    uniq("industry")
  }) returning id`;
  const [category] = await db()`
    insert into public.categories (industry_id, name) values (${industry.id}, 'Homes') returning id`;
  const [row] = await db()`
    insert into public.products (category_id, name) values (${category.id}, ${uniq("product")}) returning id`;
  for (const clientId of clientIds) {
    await db()`insert into public.client_products (client_id, product_id) values (${clientId}, ${row.id})`;
  }
  return row.id;
}

/** Inserts a lead with the database's rights and returns its owner (the routing triggers choose it). */
async function leadOwner(clientId: string, productId: string | null = null): Promise<string | null> {
  const [row] = await db()<{ owner_membership_id: string | null }[]>`
    insert into public.leads (client_id, source, email, product_id)
    values (${clientId}, 'api', ${uniq("lead") + "@example.com"}, ${productId}::uuid)
    returning owner_membership_id`;
  return row.owner_membership_id;
}

async function owners(clientId: string, count: number, productId: string | null = null): Promise<string[]> {
  const result: (string | null)[] = [];
  for (let i = 0; i < count; i++) result.push(await leadOwner(clientId, productId));
  return result.map(String);
}

const rulesPath = (clientId: string) => `/api/clients/${clientId}/assignment-rules`;
const rulePath = (clientId: string, ruleId: string) => `/api/clients/${clientId}/assignment-rules/${ruleId}`;
const availabilityPath = (clientId: string, membershipId: string) =>
  `/api/clients/${clientId}/members/${membershipId}/availability`;
const statusesPath = (clientId: string) => `/api/clients/${clientId}/lead-statuses`;

function assertProblem(reply: Reply, status: number, code?: string) {
  assert.equal(
    reply.status,
    status,
    `expected ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`,
  );
  assert.equal(reply.headers.get("content-type"), "application/problem+json");
  if (code) assert.equal(reply.body.code, code);
}

function fieldErrors(reply: Reply): string[] {
  return (reply.body.errors ?? []).map((e: { path: string; code: string }) => `${e.path}:${e.code}`).sort();
}

async function defaultRuleId(clientId: string): Promise<string> {
  const [row] = await db()`
    select id from public.assignment_rules where client_id = ${clientId} and product_id is null`;
  return row.id;
}

async function available(membershipId: string): Promise<boolean> {
  const [row] = await db()`select available from public.memberships where id = ${membershipId}`;
  return row.available;
}

async function pipeline(clientId: string) {
  return [
    ...await db()`
    select key, name, position, is_closed from public.lead_statuses where client_id = ${clientId}
    order by position`,
  ].map((row) => ({ ...row }));
}

// -- Assignment rules --------------------------------------------------------------------------------------

test("GET assignment-rules: the owner sees the default rule; agents 403, another client's owner 404", async () => {
  const team = await teamWithTokens();
  const reply = await call(stack, "GET", rulesPath(team.clientId), { token: team.tokens.owner });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  assert.equal(reply.body.data.length, 1);
  const [rule] = reply.body.data;
  assert.deepEqual(
    { ...rule, id: undefined, created_at: undefined, updated_at: undefined },
    {
      id: undefined,
      client_id: team.clientId,
      product_id: null,
      role_keys: ["agent"],
      membership_ids: [],
      enabled: true,
      created_at: undefined,
      updated_at: undefined,
    },
    "every client starts with round robin among its agents; the turn sequence is not exposed",
  );

  assertProblem(
    await call(stack, "GET", rulesPath(team.clientId), { token: team.tokens.agent }),
    403,
    "permission_denied",
  );
  assertProblem(
    await call(stack, "GET", rulesPath(team.clientId), { token: team.tokens.manager }),
    403,
    "permission_denied",
  );
  const other = await otherClient();
  assertProblem(
    await call(stack, "GET", rulesPath(team.clientId), { token: other.token }),
    404,
    "client_not_found",
  );
  assertProblem(await call(stack, "GET", rulesPath(team.clientId)), 401, "missing_token");
});

test("POST assignment-rules: a product's rule routes that product's leads only to its pool", async () => {
  const team = await teamWithTokens();
  const flat = await product(team.clientId);
  const villa = await product(team.clientId);
  const created = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { product_id: flat, membership_ids: [team.memberships.viewer, team.memberships.manager] },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.body.product_id, flat);
  assert.deepEqual(created.body.role_keys, []);
  assert.deepEqual(
    [...created.body.membership_ids].sort(),
    [team.memberships.viewer, team.memberships.manager].sort(),
  );
  assert.equal(created.body.enabled, true, "enabled by default");

  const flatOwners = await owners(team.clientId, 6, flat);
  assert.deepEqual(
    [...new Set(flatOwners)].sort(),
    [team.memberships.viewer, team.memberships.manager].sort(),
    "the product's leads go to its pool, whatever their roles",
  );
  assert.equal(flatOwners.filter((o) => o === team.memberships.viewer).length, 3, "in turns");

  const agents = [team.memberships.agent, team.memberships.otherAgent].sort();
  assert.deepEqual(
    [...new Set(await owners(team.clientId, 4, villa))].sort(),
    agents,
    "other products: default",
  );
  assert.deepEqual([...new Set(await owners(team.clientId, 4))].sort(), agents, "no product: default");

  const listed = await call(stack, "GET", rulesPath(team.clientId), { token: team.tokens.owner });
  assert.deepEqual(listed.body.data.map((r: { product_id: string | null }) => r.product_id), [null, flat]);

  const again = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { product_id: flat, role_keys: ["agent"] },
  });
  assertProblem(again, 409, "rule_exists");
  const secondDefault = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.admin,
    body: { role_keys: ["agent"] },
  });
  assertProblem(secondDefault, 409, "rule_exists");
});

test("POST assignment-rules validates the product, roles and members against the client (422)", async () => {
  const team = await teamWithTokens();
  const other = await otherClient();
  const notEnabled = await product(other.clientId);
  const reply = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: {
      product_id: notEnabled,
      role_keys: ["agent", "wizard"],
      membership_ids: [team.memberships.agent, other.memberships.agent],
    },
  });
  assertProblem(reply, 422, "validation_failed");
  assert.deepEqual(fieldErrors(reply), [
    "body.membership_ids.1:unknown_member",
    "body.product_id:product_not_enabled",
    "body.role_keys.1:unknown_role",
  ]);

  const empty = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { product_id: await product(team.clientId) },
  });
  assertProblem(empty, 422);
  assert.deepEqual(fieldErrors(empty), ["body.role_keys:empty_pool"], "someone must take turns");

  const malformed = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { product_id: "flat", role_keys: ["Agent"], enabled: "yes", colour: "red" },
  });
  assertProblem(malformed, 422);
  assert.deepEqual(
    fieldErrors(malformed).map((e) => e.split(":")[0]),
    ["body.colour", "body.enabled", "body.product_id", "body.role_keys.0"],
  );

  const rules = await db()`select 1 from public.assignment_rules where client_id = ${team.clientId}`;
  assert.equal(rules.length, 1, "nothing was created");

  const denied = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.agent,
    body: { role_keys: ["agent"] },
  });
  assertProblem(denied, 403, "permission_denied");
  const hidden = await call(stack, "POST", rulesPath(team.clientId), {
    token: other.token,
    body: { role_keys: ["agent"] },
  });
  assertProblem(hidden, 404, "client_not_found");
});

test("PATCH assignment-rules: disabling a product's rule hands its leads to the default rule", async () => {
  const team = await teamWithTokens();
  const flat = await product(team.clientId);
  const created = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { product_id: flat, membership_ids: [team.memberships.viewer] },
  });
  const ruleId = created.body.id;
  assert.equal(await leadOwner(team.clientId, flat), team.memberships.viewer);

  const disabled = await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
    token: team.tokens.owner,
    body: { enabled: false },
  });
  assert.equal(disabled.status, 200, JSON.stringify(disabled.body));
  assert.equal(disabled.body.enabled, false);
  assert.deepEqual(disabled.body.membership_ids, [team.memberships.viewer], "other fields unchanged");
  assert.ok(
    [team.memberships.agent, team.memberships.otherAgent].includes((await leadOwner(team.clientId, flat))!),
    "the default rule's agents take the product's leads",
  );

  const changed = await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
    token: team.tokens.owner,
    body: { enabled: true, membership_ids: [], role_keys: ["manager"] },
  });
  assert.equal(changed.status, 200, JSON.stringify(changed.body));
  assert.equal(await leadOwner(team.clientId, flat), team.memberships.manager, "now the managers' turn");

  const bad = await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
    token: team.tokens.owner,
    body: { role_keys: ["nobody"] },
  });
  assertProblem(bad, 422);
  assert.deepEqual(fieldErrors(bad), ["body.role_keys.0:unknown_role"]);
  assertProblem(
    await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
      token: team.tokens.owner,
      body: { role_keys: [] },
    }),
    422,
  );
  assertProblem(
    await call(stack, "PATCH", rulePath(team.clientId, ruleId), { token: team.tokens.owner, body: {} }),
    422,
  );
  const toDefault = await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
    token: team.tokens.owner,
    body: { product_id: null },
  });
  assertProblem(toDefault, 409, "rule_exists");

  const other = await otherClient();
  const foreignRule = await defaultRuleId(other.clientId);
  assertProblem(
    await call(stack, "PATCH", rulePath(team.clientId, foreignRule), {
      token: team.tokens.owner,
      body: { enabled: false },
    }),
    404,
    "rule_not_found",
  );
  assertProblem(
    await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
      token: other.token,
      body: { enabled: false },
    }),
    404,
    "client_not_found",
  );
  assertProblem(
    await call(stack, "PATCH", rulePath(team.clientId, ruleId), {
      token: team.tokens.agent,
      body: { enabled: false },
    }),
    403,
    "permission_denied",
  );
  const [row] = await db()`select enabled from public.assignment_rules where id = ${foreignRule}`;
  assert.equal(row.enabled, true, "the other client's rule is untouched");
});

test("DELETE assignment-rules removes a rule (204, then 404); without a default rule leads stay unassigned", async () => {
  const team = await teamWithTokens();
  const ruleId = await defaultRuleId(team.clientId);
  assertProblem(
    await call(stack, "DELETE", rulePath(team.clientId, ruleId), { token: team.tokens.agent }),
    403,
    "permission_denied",
  );
  const other = await otherClient();
  assertProblem(
    await call(stack, "DELETE", rulePath(team.clientId, ruleId), { token: other.token }),
    404,
    "client_not_found",
  );
  const deleted = await call(stack, "DELETE", rulePath(team.clientId, ruleId), { token: team.tokens.owner });
  assert.equal(deleted.status, 204);
  assertProblem(
    await call(stack, "DELETE", rulePath(team.clientId, ruleId), { token: team.tokens.owner }),
    404,
    "rule_not_found",
  );
  assert.equal(await leadOwner(team.clientId), null);

  const recreated = await call(stack, "POST", rulesPath(team.clientId), {
    token: team.tokens.owner,
    body: { role_keys: ["agent"], membership_ids: [team.memberships.viewer] },
  });
  assert.equal(recreated.status, 201, JSON.stringify(recreated.body));
  const got = new Set(await owners(team.clientId, 3));
  assert.deepEqual(
    [...got].sort(),
    [team.memberships.agent, team.memberships.otherAgent, team.memberships.viewer].sort(),
    "a new default rule: its roles and its listed members take turns",
  );
});

// -- Availability ------------------------------------------------------------------------------------------

test("PUT availability: members switch themselves without members.manage, and then take no leads", async () => {
  const team = await teamWithTokens();
  const off = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
    token: team.tokens.agent,
    body: { available: false },
  });
  assert.equal(off.status, 200, JSON.stringify(off.body));
  assert.deepEqual(off.body, { id: team.memberships.agent, client_id: team.clientId, available: false });
  assert.equal(await available(team.memberships.agent), false);
  assert.deepEqual(
    [...new Set(await owners(team.clientId, 4))],
    [team.memberships.otherAgent],
    "an unavailable agent is skipped",
  );

  const colleague = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.otherAgent), {
    token: team.tokens.agent,
    body: { available: false },
  });
  assertProblem(colleague, 403, "permission_denied");
  assert.equal(await available(team.memberships.otherAgent), true, "a colleague is untouched");

  const managerSelf = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.manager), {
    token: team.tokens.manager,
    body: { available: false },
  });
  assert.equal(managerSelf.status, 200, "a manager (no members.manage) switches themself too");

  const back = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
    token: team.tokens.owner,
    body: { available: true },
  });
  assert.equal(back.status, 200, "the owner (members.manage) switches an agent");
  assert.equal(await available(team.memberships.agent), true);

  const invalid = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
    token: team.tokens.agent,
    body: { available: "no" },
  });
  assertProblem(invalid, 422);
  assert.deepEqual(fieldErrors(invalid).map((e) => e.split(":")[0]), ["body.available"]);
  assertProblem(
    await call(stack, "PUT", availabilityPath(team.clientId, "not-a-uuid"), {
      token: team.tokens.owner,
      body: { available: true },
    }),
    422,
  );
});

test("PUT availability of others: members.manage inside the caller's hierarchy and rank only", async () => {
  const team = await teamWithTokens();
  const other = await otherClient();
  // A team-scoped lead with members.manage, over the manager's team only.
  await db()`insert into public.roles (client_id, key, name, rank, scope, permissions)
             values (${team.clientId}, 'team_lead', 'Team lead', 30, 'team', '{members.manage,members.read}')`;
  const leadUser = await createUser({ name: "Team lead" });
  const lead = await addMember(team.clientId, leadUser.id, "team_lead", team.memberships.admin);
  await db()`update public.memberships set reports_to = ${lead} where id = ${team.memberships.manager}`;
  const leadToken = await sessionToken(leadUser, team.clientId);

  const inside = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
    token: leadToken,
    body: { available: false },
  });
  assert.equal(inside.status, 200, JSON.stringify(inside.body));
  const outside = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.otherAgent), {
    token: leadToken,
    body: { available: false },
  });
  assertProblem(outside, 404, "member_not_found");
  assert.equal(await available(team.memberships.otherAgent), true, "outside the hierarchy: untouched");

  const aboveRank = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.owner), {
    token: team.tokens.admin,
    body: { available: false },
  });
  assertProblem(aboveRank, 403, "forbidden");
  assert.equal(await available(team.memberships.owner), true, "an admin cannot switch the owner");

  const foreign = await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
    token: other.token,
    body: { available: true },
  });
  assertProblem(foreign, 404, "client_not_found");
  const crossClient = await call(stack, "PUT", availabilityPath(team.clientId, other.memberships.agent), {
    token: team.tokens.owner,
    body: { available: false },
  });
  assertProblem(crossClient, 404, "member_not_found");
  assert.equal(await available(other.memberships.agent), true, "another client's member is untouched");
  const ownSeatElsewhere = await call(
    stack,
    "PUT",
    availabilityPath(other.clientId, other.memberships.owner),
    {
      token: team.tokens.owner,
      body: { available: false },
    },
  );
  assertProblem(ownSeatElsewhere, 404, "client_not_found");
  assertProblem(
    await call(stack, "PUT", availabilityPath(team.clientId, team.memberships.agent), {
      body: { available: true },
    }),
    401,
  );
});

// -- The pipeline ------------------------------------------------------------------------------------------

test("PUT lead-statuses replaces the pipeline: created, renamed, reordered, removed", async () => {
  const team = await teamWithTokens();
  const replaced = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [
      { key: "won", name: "Closed won", position: 90, is_closed: true },
      { key: "new", name: "Fresh", position: 10 },
      { key: "meeting_booked", name: "Meeting booked", position: 20 },
      { key: "contacted", name: "Contacted", position: 15 },
    ],
  });
  assert.equal(replaced.status, 200, JSON.stringify(replaced.body));
  const expected = [
    { key: "new", name: "Fresh", position: 10, is_closed: false },
    { key: "contacted", name: "Contacted", position: 15, is_closed: false },
    { key: "meeting_booked", name: "Meeting booked", position: 20, is_closed: false },
    { key: "won", name: "Closed won", position: 90, is_closed: true },
  ];
  assert.deepEqual(replaced.body.data, expected, "in position order; is_closed defaults to false");
  assert.deepEqual(await pipeline(team.clientId), expected, "qualified and lost were removed");

  const email = uniq("l") + "@example.com";
  const [row] = await db()`
    insert into public.leads (client_id, source, email) values (${team.clientId}, 'api', ${email})
    returning status`;
  assert.equal(row.status, "new", "new leads still start at new");
});

test("PUT lead-statuses refuses to drop a status leads have (409) and changes nothing", async () => {
  const team = await teamWithTokens();
  const before = await pipeline(team.clientId);
  await db()`
    insert into public.leads (client_id, source, email, status)
    values (${team.clientId}, 'api', ${uniq("l") + "@example.com"}, 'qualified'),
           (${team.clientId}, 'api', ${uniq("l") + "@example.com"}, 'lost')`;
  const reply = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [{ key: "new", name: "New", position: 1 }, {
      key: "won",
      name: "Won",
      position: 2,
      is_closed: true,
    }],
  });
  assertProblem(reply, 409, "status_in_use");
  assert.match(reply.body.detail, /"lost"/);
  assert.match(reply.body.detail, /"qualified"/);
  assert.deepEqual(await pipeline(team.clientId), before, "the whole replacement was rolled back");

  // Moving the leads first makes it possible.
  await db()`update public.leads set status = 'won' where client_id = ${team.clientId}`;
  const after = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [{ key: "new", name: "New", position: 1 }, {
      key: "won",
      name: "Won",
      position: 2,
      is_closed: true,
    }],
  });
  assert.equal(after.status, 200, JSON.stringify(after.body));
  assert.deepEqual(after.body.data.map((s: { key: string }) => s.key), ["new", "won"]);
});

test("PUT lead-statuses validates the pipeline (422) and needs pipeline.manage", async () => {
  const team = await teamWithTokens();
  const before = await pipeline(team.clientId);
  const withoutNew = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [{ key: "open", name: "Open", position: 1 }],
  });
  assertProblem(withoutNew, 422, "validation_failed");
  assert.deepEqual(fieldErrors(withoutNew), ["body:custom"]);
  assert.match(withoutNew.body.errors[0].message, /"new"/);
  const malformed = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [
      { key: "new", name: "New", position: 1 },
      { key: "Bad Key", name: "", position: 1.5, colour: "red" },
    ],
  });
  assertProblem(malformed, 422);
  assert.deepEqual(
    fieldErrors(malformed).map((e) => e.split(":")[0]),
    ["body.1.colour", "body.1.key", "body.1.name", "body.1.position"],
  );
  const twice = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [{ key: "new", name: "New", position: 1 }, { key: "new", name: "Again", position: 2 }],
  });
  assertProblem(twice, 422);
  assert.deepEqual(fieldErrors(twice).map((e) => e.split(":")[0]), ["body.1.key"], "a key listed twice");
  const samePosition = await call(stack, "PUT", statusesPath(team.clientId), {
    token: team.tokens.owner,
    body: [{ key: "new", name: "New", position: 1 }, { key: "won", name: "Won", position: 1 }],
  });
  assertProblem(samePosition, 422);
  assert.deepEqual(fieldErrors(samePosition).map((e) => e.split(":")[0]), ["body.1.position"]);
  assertProblem(
    await call(stack, "PUT", statusesPath(team.clientId), { token: team.tokens.owner, body: [] }),
    422,
  );
  assertProblem(
    await call(stack, "PUT", statusesPath(team.clientId), {
      token: team.tokens.owner,
      body: { statuses: [{ key: "new", name: "New", position: 1 }] },
    }),
    422,
  );

  const body = [{ key: "new", name: "New", position: 1 }];
  assertProblem(
    await call(stack, "PUT", statusesPath(team.clientId), { token: team.tokens.manager, body }),
    403,
    "permission_denied",
  );
  assertProblem(
    await call(stack, "PUT", statusesPath(team.clientId), { token: team.tokens.agent, body }),
    403,
    "permission_denied",
  );
  const other = await otherClient();
  assertProblem(
    await call(stack, "PUT", statusesPath(team.clientId), { token: other.token, body }),
    404,
    "client_not_found",
  );
  assert.deepEqual(await pipeline(team.clientId), before, "nothing changed");

  const loner = await createClient(uniq("pipeline"));
  assertProblem(
    await call(stack, "PUT", statusesPath(loner), { token: team.tokens.owner, body }),
    404,
    "client_not_found",
  );
});
