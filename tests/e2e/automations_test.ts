/**
 * The automations API over HTTP: every member with automations.read sees the whole catalog with the
 * client's own switches applied; only automations.manage changes a switch (under row-level security), a
 * pair outside the catalog is 404, and the dispatcher honours the switch (an automation turned off makes no
 * notification).
 */
import assert from "node:assert/strict";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import { assertProblem, call, db, type Reply, startStack, teamWithTokens, test } from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

const listPath = (clientId: string) => `/api/clients/${clientId}/automations`;
const pairPath = (clientId: string, event: string, action: string) =>
  `/api/clients/${clientId}/automations/${event}/${action}`;

interface Automation {
  event: string;
  action: string;
  description: string;
  enabled: boolean;
  default_enabled: boolean;
  updated_at: string | null;
}
const find = (reply: Reply, event: string, action: string): Automation | undefined =>
  reply.body.data.find((a: Automation) => a.event === event && a.action === action);

async function override(clientId: string, event: string, action: string) {
  const [row] = await db()<{ enabled: boolean; updated_by: string | null }[]>`
    select enabled, updated_by from public.automations
    where client_id = ${clientId} and event = ${event} and action = ${action}`;
  return row;
}

test("automations.read is held by every template role, automations.manage by owner and admin only", async () => {
  assert.ok(PERMISSIONS["automations.read"] && PERMISSIONS["automations.manage"]);
  const team = await teamWithTokens();
  const rows = await db()<{ key: string; permissions: string[] }[]>`
    select key, permissions from public.roles where client_id = ${team.clientId}`;
  const holders = (code: string) => rows.filter((r) => r.permissions.includes(code)).map((r) => r.key).sort();
  assert.deepEqual(holders("automations.read"), ["admin", "agent", "manager", "owner", "viewer"]);
  assert.deepEqual(holders("automations.manage"), ["admin", "owner"]);
});

test("GET /automations lists the whole catalog with its defaults for a client that changed nothing", async () => {
  const team = await teamWithTokens();
  const reply = await call(stack, "GET", listPath(team.clientId), { token: team.tokens.viewer });
  assert.equal(reply.status, 200, JSON.stringify(reply.body));
  const catalog = await db()<
    { event: string; action: string; default_enabled: boolean; description: string }[]
  >`
    select event, action, default_enabled, description from app.automation_catalog order by event, action`;
  assert.deepEqual(
    reply.body.data,
    catalog.map((entry) => ({ ...entry, enabled: entry.default_enabled, updated_at: null })),
  );
  assert.equal(find(reply, "lead.created", "notify")?.enabled, true);
  assert.equal(find(reply, "lead.created", "whatsapp_greeting")?.enabled, false, "greetings start off");
  for (const entry of reply.body.data) {
    assert.deepEqual(Object.keys(entry).sort(), [
      "action",
      "default_enabled",
      "description",
      "enabled",
      "event",
      "updated_at",
    ]);
  }
});

test("PUT /automations/{event}/{action} switches one automation for this client only", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const on = await call(stack, "PUT", pairPath(team.clientId, "lead.created", "whatsapp_greeting"), {
    token: team.tokens.admin,
    body: { enabled: true },
  });
  assert.equal(on.status, 200, JSON.stringify(on.body));
  assert.equal(on.body.enabled, true);
  assert.equal(on.body.default_enabled, false);
  assert.ok(on.body.updated_at, "an override has a time");
  assert.deepEqual(await override(team.clientId, "lead.created", "whatsapp_greeting"), {
    enabled: true,
    updated_by: team.users.admin.id,
  });

  const off = await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
    token: team.tokens.owner,
    body: { enabled: false },
  });
  assert.equal(off.status, 200);
  assert.equal(off.body.enabled, false);
  assert.equal(off.body.default_enabled, true);

  const list = await call(stack, "GET", listPath(team.clientId), { token: team.tokens.agent });
  assert.equal(find(list, "lead.created", "whatsapp_greeting")?.enabled, true);
  assert.equal(find(list, "lead.created", "notify")?.enabled, false);
  assert.equal(find(list, "lead.created", "sheets_append")?.updated_at, null, "others keep their default");

  const otherList = await call(stack, "GET", listPath(other.clientId), { token: other.tokens.owner });
  assert.equal(
    find(otherList, "lead.created", "whatsapp_greeting")?.enabled,
    false,
    "other clients unchanged",
  );
  assert.equal(find(otherList, "lead.created", "notify")?.enabled, true);

  const back = await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
    token: team.tokens.owner,
    body: { enabled: true },
  });
  assert.equal(back.body.enabled, true, "switching back updates the same override");
  assert.equal((await override(team.clientId, "lead.created", "notify")).enabled, true);
});

test("PUT /automations answers 404 for a pair outside the catalog and 422 for malformed input", async () => {
  const team = await teamWithTokens();
  for (
    const [event, action] of [
      ["lead.created", "fax"],
      ["lead.exploded", "notify"],
      ["lead.status_changed", "notify"],
    ]
  ) {
    assertProblem(
      await call(stack, "PUT", pairPath(team.clientId, event, action), {
        token: team.tokens.owner,
        body: { enabled: true },
      }),
      404,
      "automation_not_found",
    );
  }
  const invalid: Array<[string, string, unknown, string]> = [
    ["lead.created", "notify", { enabled: "yes" }, "body.enabled"],
    ["lead.created", "notify", {}, "body.enabled"],
    ["lead.created", "notify", { enabled: true, extra: 1 }, "body.extra"],
    ["LEAD", "notify", { enabled: true }, "param.event"],
    ["lead.created", "No-Such", { enabled: true }, "param.action"],
  ];
  for (const [event, action, body, path] of invalid) {
    const reply = await call(stack, "PUT", pairPath(team.clientId, event, action), {
      token: team.tokens.owner,
      body,
    });
    assertProblem(reply, 422, "validation_failed");
    assert.ok(
      reply.body.errors.some((e: { path: string }) => e.path === path),
      `${path}: ${JSON.stringify(reply.body)}`,
    );
  }
  const text = await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
    token: team.tokens.owner,
    body: "enabled=true",
    headers: { "content-type": "text/plain" },
  });
  assertProblem(text, 415, "unsupported_media_type");
  assert.equal(await override(team.clientId, "lead.created", "notify"), undefined, "nothing was written");
});

test("PUT /automations needs automations.manage; another client's owner gets 404", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  for (const role of ["manager", "agent", "viewer"] as const) {
    assertProblem(
      await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
        token: team.tokens[role],
        body: { enabled: false },
      }),
      403,
      "permission_denied",
    );
  }
  assertProblem(
    await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
      token: other.tokens.owner,
      body: { enabled: false },
    }),
    404,
    "client_not_found",
  );
  assertProblem(
    await call(stack, "GET", listPath(team.clientId), { token: other.tokens.owner }),
    404,
    "client_not_found",
  );
  assert.equal(await override(team.clientId, "lead.created", "notify"), undefined, "nothing was written");
});

test("the dispatcher follows the switch: with lead.created notify off, a new lead notifies nobody", async () => {
  const team = await teamWithTokens();
  const switchNotify = async (enabled: boolean) => {
    const reply = await call(stack, "PUT", pairPath(team.clientId, "lead.created", "notify"), {
      token: team.tokens.owner,
      body: { enabled },
    });
    assert.equal(reply.status, 200, JSON.stringify(reply.body));
  };
  const newLead = async () => {
    const [lead] = await db()<{ id: string }[]>`
      insert into public.leads (client_id, source, full_name, email, owner_membership_id)
      values (${team.clientId}, 'manual', 'Quiet lead', ${`quiet-${crypto.randomUUID()}@example.com`},
        ${team.memberships.agent})
      returning id`;
    // Another file's dispatcher may hold the event for a moment; dispatch until the outbox has let it go.
    for (let i = 0; i < 50; i++) {
      await db()`select app.dispatch_events(1000, 5)`;
      const [pending] = await db()<{ n: number }[]>`
        select count(*)::int as n from app.outbox where client_id = ${team.clientId}`;
      if (pending.n === 0) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    const rows = await db()`select 1 from public.notifications where lead_id = ${lead.id}`;
    return rows.length;
  };
  await switchNotify(false);
  assert.equal(await newLead(), 0, "no notification for a switched-off automation");
  await switchNotify(true);
  assert.equal(await newLead(), 4, "switched back on: the agent and the three managers above are notified");
});
