/**
 * The attack matrix: every client-data table x every role template, a member of another client, a disabled
 * user and anon x select/insert/update/delete on rows of their own client inside and outside their part of
 * the hierarchy and rows of another client. Each attempt runs under row-level security inside a savepoint
 * that is rolled back, and is compared with the expected allow/deny table below.
 *
 * Actors: the five role templates in client A, b_owner (the owner of client B, so a member of another
 * client for every client-A row), a disabled admin of A, and anon. Targets are client-A rows inside and
 * outside the actor's team, and client-B rows.
 */
import assert from "node:assert/strict";
import type postgres from "postgres";
import { addMember, createClient, createUser, db, test, uniq } from "../_helpers.ts";

type Actor = "owner" | "admin" | "manager" | "agent" | "viewer" | "b_owner" | "disabled" | "anon";
const ACTORS: Actor[] = ["owner", "admin", "manager", "agent", "viewer", "b_owner", "disabled", "anon"];

// Client A: owner > admin > manager > {agent, team_mate}; admin > {outside_agent, viewer, disabled admin}.
const a = await createClient(uniq("matrix-a"));
const b = await createClient(uniq("matrix-b"));
const users = {
  owner: await createUser(),
  admin: await createUser(),
  manager: await createUser(),
  agent: await createUser(),
  viewer: await createUser(),
  disabled: await createUser(),
  team_mate: await createUser(),
  outside_agent: await createUser(),
  b_owner: await createUser(),
  b_agent: await createUser(),
  newcomer: await createUser(),
};
const m = {
  owner: await addMember(a, users.owner.id, "owner"),
  admin: "",
  manager: "",
  agent: "",
  viewer: "",
  disabled: "",
  team_mate: "",
  outside_agent: "",
  b_owner: await addMember(b, users.b_owner.id, "owner"),
  b_agent: "",
};
m.admin = await addMember(a, users.admin.id, "admin", m.owner);
m.manager = await addMember(a, users.manager.id, "manager", m.admin);
m.agent = await addMember(a, users.agent.id, "agent", m.manager);
m.team_mate = await addMember(a, users.team_mate.id, "agent", m.manager);
m.outside_agent = await addMember(a, users.outside_agent.id, "agent", m.admin);
m.viewer = await addMember(a, users.viewer.id, "viewer", m.admin);
m.disabled = await addMember(a, users.disabled.id, "admin", m.owner);
m.b_agent = await addMember(b, users.b_agent.id, "agent", m.b_owner);
await db()`update public.users set disabled_at = now() where id = ${users.disabled.id}`;

const roleId = async (client: string, key: string) =>
  (await db()`select id from public.roles where client_id = ${client} and key = ${key}`)[0].id as string;
await db()`insert into public.roles (client_id, key, name, rank, scope) values (${a}, 'custom', 'Custom', 60, 'own'),
                                                                         (${b}, 'custom', 'Custom', 60, 'own')`;
const roles = {
  aViewer: await roleId(a, "viewer"),
  bViewer: await roleId(b, "viewer"),
  aAgent: await roleId(a, "agent"),
  bAgent: await roleId(b, "agent"),
  aCustom: await roleId(a, "custom"),
  bCustom: await roleId(b, "custom"),
  aOwner: await roleId(a, "owner"),
};

// Leads of client A owned by the agent, a team mate (inside the manager's team) and an agent outside it, and
// one of client B; a note on the team mate's lead; a product both clients sell; an API key of each client.
const [industry] = await db()`insert into public.industries (name) values (${uniq("industry")}) returning id`;
const [category] =
  await db()`insert into public.categories (industry_id, name) values (${industry.id}, 'Homes') returning id`;
const [product] =
  await db()`insert into public.products (category_id, name) values (${category.id}, 'Flat') returning id`;
await db()`insert into public.client_products (client_id, product_id) values (${a}, ${product.id}), (${b}, ${product.id})`;
const lead = async (client: string, owner: string) =>
  (await db()`insert into public.leads (client_id, source, email, owner_membership_id)
              values (${client}, 'manual', ${uniq("lead") + "@example.com"}, ${owner}) returning id`)[0]
    .id as string;
const leads = {
  own: await lead(a, m.agent),
  team: await lead(a, m.team_mate),
  outside: await lead(a, m.outside_agent),
  other: await lead(b, m.b_agent),
};
const [note] = await db()`insert into public.lead_notes (client_id, lead_id, author_id, body)
                          values (${a}, ${leads.team}, ${users.owner.id}, 'Called, no answer') returning id`;
for (const client of [a, b]) {
  await db()`insert into app.api_keys (client_id, name, prefix, key_hash)
             values (${client}, 'Website', ${uniq("p")}, ${crypto.getRandomValues(new Uint8Array(32))})`;
}

type Sql = postgres.TransactionSql;
interface Check {
  table: string;
  op: "select" | "insert" | "update" | "delete";
  target: string;
  run: (tx: Sql, actor: Actor) => Promise<number>;
  allowed: Actor[];
}

const CLIENT_SCOPE: Actor[] = ["owner", "admin"];
// Client B's rows are "another client's" for every client-A actor, and b_owner's own.
const B_OWNER: Actor[] = ["b_owner"];
const A_MEMBERS: Actor[] = ["owner", "admin", "manager", "agent", "viewer"];
const count = (rows: { count: number }) => rows.count;
const selfOf = (actor: Actor) => (m as Record<string, string>)[actor] ?? m.agent;
const userOf = (actor: Actor) => (users as Record<string, { id: string }>)[actor]?.id ?? users.agent.id;

const CHECKS: Check[] = [
  // clients
  {
    table: "clients",
    op: "select",
    target: "own client",
    allowed: A_MEMBERS,
    run: (tx) => tx`select 1 from public.clients where id = ${a}`.then(count),
  },
  {
    table: "clients",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.clients where id = ${b}`.then(count),
  },
  {
    table: "clients",
    op: "update",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`update public.clients set name = name where id = ${a}`.then(count),
  },
  {
    table: "clients",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`update public.clients set name = name where id = ${b}`.then(count),
  },
  {
    table: "clients",
    op: "insert",
    target: "new client",
    allowed: [],
    run: (tx) => tx`insert into public.clients (id, name) values (${uniq("evil")}, 'x')`.then(count),
  },
  {
    table: "clients",
    op: "delete",
    target: "own client",
    allowed: [],
    run: (tx) => tx`delete from public.clients where id = ${a}`.then(count),
  },
  // memberships
  {
    table: "memberships",
    op: "select",
    target: "self",
    allowed: A_MEMBERS,
    run: (tx, actor) =>
      tx`select 1 from public.memberships where id = ${selfOf(actor)} and client_id = ${a}`.then(count),
  },
  {
    table: "memberships",
    op: "select",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`select 1 from public.memberships where id = ${m.team_mate}`.then(count),
  },
  {
    table: "memberships",
    op: "select",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`select 1 from public.memberships where id = ${m.outside_agent}`.then(count),
  },
  {
    table: "memberships",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.memberships where id = ${m.b_agent}`.then(count),
  },
  {
    table: "memberships",
    op: "insert",
    target: "in team",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`insert into public.memberships (client_id, user_id, role_id, reports_to) values (${a}, ${users.newcomer.id}, ${roles.aAgent}, ${m.manager})`
        .then(count),
  },
  {
    table: "memberships",
    op: "insert",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) =>
      tx`insert into public.memberships (client_id, user_id, role_id, reports_to) values (${b}, ${users.newcomer.id}, ${roles.bAgent}, ${m.b_owner})`
        .then(count),
  },
  {
    table: "memberships",
    op: "update",
    target: "in team",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`update public.memberships set reports_to = reports_to where id = ${m.team_mate}`.then(count),
  },
  {
    table: "memberships",
    op: "update",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`update public.memberships set reports_to = reports_to where id = ${m.outside_agent}`.then(count),
  },
  {
    table: "memberships",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) =>
      tx`update public.memberships set reports_to = reports_to where id = ${m.b_agent}`.then(count),
  },
  {
    table: "memberships",
    op: "update",
    target: "promote to owner",
    allowed: ["owner"],
    run: (tx) =>
      tx`update public.memberships set role_id = ${roles.aOwner} where id = ${m.team_mate}`.then(count),
  },
  {
    table: "memberships",
    op: "delete",
    target: "in team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`delete from public.memberships where id = ${m.team_mate}`.then(count),
  },
  {
    table: "memberships",
    op: "delete",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`delete from public.memberships where id = ${m.outside_agent}`.then(count),
  },
  {
    table: "memberships",
    op: "delete",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`delete from public.memberships where id = ${m.b_agent}`.then(count),
  },
  // roles
  {
    table: "roles",
    op: "select",
    target: "own client",
    allowed: A_MEMBERS,
    run: (tx) => tx`select 1 from public.roles where id = ${roles.aViewer}`.then(count),
  },
  {
    table: "roles",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.roles where id = ${roles.bViewer}`.then(count),
  },
  {
    table: "roles",
    op: "insert",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`insert into public.roles (client_id, key, name, rank, scope) values (${a}, 'intruder', 'x', 70, 'own')`
        .then(count),
  },
  {
    table: "roles",
    op: "insert",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) =>
      tx`insert into public.roles (client_id, key, name, rank, scope) values (${b}, 'intruder', 'x', 70, 'own')`
        .then(count),
  },
  {
    table: "roles",
    op: "insert",
    target: "above own rank",
    allowed: ["owner"],
    run: (tx) =>
      tx`insert into public.roles (client_id, key, name, rank, scope) values (${a}, 'boss', 'x', 15, 'client')`
        .then(count),
  },
  {
    table: "roles",
    op: "update",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`update public.roles set name = 'Renamed' where id = ${roles.aCustom}`.then(count),
  },
  {
    table: "roles",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`update public.roles set name = 'Renamed' where id = ${roles.bCustom}`.then(count),
  },
  {
    table: "roles",
    op: "update",
    target: "owner role",
    allowed: [],
    run: (tx) =>
      tx`update public.roles set name = 'Renamed' where client_id = ${a} and key = 'owner'`.then(count),
  },
  {
    table: "roles",
    op: "delete",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`delete from public.roles where id = ${roles.aCustom}`.then(count),
  },
  {
    table: "roles",
    op: "delete",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`delete from public.roles where id = ${roles.bCustom}`.then(count),
  },
  // users
  {
    table: "users",
    op: "select",
    target: "self",
    allowed: [...A_MEMBERS, "b_owner"],
    run: (tx, actor) => tx`select 1 from public.users where id = ${userOf(actor)}`.then(count),
  },
  {
    table: "users",
    op: "select",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`select 1 from public.users where id = ${users.team_mate.id}`.then(count),
  },
  {
    table: "users",
    op: "select",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`select 1 from public.users where id = ${users.outside_agent.id}`.then(count),
  },
  {
    table: "users",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.users where id = ${users.b_agent.id}`.then(count),
  },
  {
    table: "users",
    op: "update",
    target: "self",
    allowed: [...A_MEMBERS, "b_owner"],
    run: (tx, actor) =>
      tx`update public.users set full_name = full_name where id = ${userOf(actor)}`.then(count),
  },
  {
    table: "users",
    op: "update",
    target: "in team",
    allowed: [],
    run: (tx) => tx`update public.users set full_name = 'x' where id = ${users.team_mate.id}`.then(count),
  },
  {
    table: "users",
    op: "update",
    target: "self to platform admin",
    allowed: [],
    run: (tx, actor) =>
      tx`update public.users set is_platform_admin = true where id = ${userOf(actor)}`.then(count),
  },
  {
    table: "users",
    op: "insert",
    target: "new account",
    allowed: [],
    run: (tx) =>
      tx`insert into public.users (email, full_name) values (${uniq("x") + "@example.com"}, 'x')`.then(count),
  },
  {
    table: "users",
    op: "delete",
    target: "in team",
    allowed: [],
    run: (tx) => tx`delete from public.users where id = ${users.team_mate.id}`.then(count),
  },
  // leads
  {
    table: "leads",
    op: "select",
    target: "own",
    allowed: [...CLIENT_SCOPE, "manager", "agent"],
    run: (tx) => tx`select 1 from public.leads where id = ${leads.own}`.then(count),
  },
  {
    table: "leads",
    op: "select",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`select 1 from public.leads where id = ${leads.team}`.then(count),
  },
  {
    table: "leads",
    op: "select",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`select 1 from public.leads where id = ${leads.outside}`.then(count),
  },
  {
    table: "leads",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.leads where id = ${leads.other}`.then(count),
  },
  {
    table: "leads",
    op: "insert",
    target: "own client",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) =>
      tx`insert into public.leads (client_id, source, email) values (${a}, 'manual', ${
        uniq("new") + "@example.com"
      })`.then(count),
  },
  {
    table: "leads",
    op: "insert",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) =>
      tx`insert into public.leads (client_id, source, email) values (${b}, 'manual', ${
        uniq("new") + "@example.com"
      })`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "own",
    allowed: [...CLIENT_SCOPE, "manager", "agent"],
    run: (tx) => tx`update public.leads set status = 'contacted' where id = ${leads.own}`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`update public.leads set status = 'contacted' where id = ${leads.team}`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`update public.leads set status = 'contacted' where id = ${leads.outside}`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`update public.leads set status = 'contacted' where id = ${leads.other}`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "reassign in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) =>
      tx`update public.leads set owner_membership_id = ${m.agent} where id = ${leads.team}`.then(count),
  },
  {
    table: "leads",
    op: "update",
    target: "reassign out of team",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`update public.leads set owner_membership_id = ${m.outside_agent} where id = ${leads.team}`.then(
        count,
      ),
  },
  {
    table: "leads",
    op: "update",
    target: "own to another",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) =>
      tx`update public.leads set owner_membership_id = ${m.team_mate} where id = ${leads.own}`.then(count),
  },
  {
    table: "leads",
    op: "delete",
    target: "own client",
    allowed: [],
    run: (tx) => tx`delete from public.leads where id = ${leads.own}`.then(count),
  },
  // lead notes and timeline
  {
    table: "lead_notes",
    op: "select",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`select 1 from public.lead_notes where id = ${note.id}`.then(count),
  },
  {
    table: "lead_notes",
    op: "insert",
    target: "own",
    allowed: [...CLIENT_SCOPE, "manager", "agent"],
    run: (tx, actor) =>
      tx`insert into public.lead_notes (client_id, lead_id, author_id, body) values (${a}, ${leads.own}, ${
        userOf(actor)
      }, 'x')`.then(count),
  },
  {
    table: "lead_notes",
    op: "insert",
    target: "outside team",
    allowed: CLIENT_SCOPE,
    run: (tx, actor) =>
      tx`insert into public.lead_notes (client_id, lead_id, author_id, body) values (${a}, ${leads.outside}, ${
        userOf(actor)
      }, 'x')`.then(count),
  },
  {
    table: "lead_notes",
    op: "insert",
    target: "as someone else",
    allowed: [],
    run: (tx) =>
      tx`insert into public.lead_notes (client_id, lead_id, author_id, body) values (${a}, ${leads.own}, ${users.team_mate.id}, 'x')`
        .then(count),
  },
  {
    table: "lead_notes",
    op: "insert",
    target: "other client",
    allowed: B_OWNER,
    run: (tx, actor) =>
      tx`insert into public.lead_notes (client_id, lead_id, author_id, body) values (${b}, ${leads.other}, ${
        userOf(actor)
      }, 'x')`.then(count),
  },
  {
    table: "lead_activities",
    op: "select",
    target: "in team",
    allowed: [...CLIENT_SCOPE, "manager"],
    run: (tx) => tx`select 1 from public.lead_activities where lead_id = ${leads.team}`.then(count),
  },
  {
    table: "lead_activities",
    op: "insert",
    target: "own",
    allowed: [],
    run: (tx) =>
      tx`insert into public.lead_activities (client_id, lead_id, kind) values (${a}, ${leads.own}, 'forged')`
        .then(count),
  },
  // products
  {
    table: "products",
    op: "select",
    target: "catalog",
    allowed: [...A_MEMBERS, "b_owner"],
    run: (tx) => tx`select 1 from public.products where id = ${product.id}`.then(count),
  },
  {
    table: "products",
    op: "insert",
    target: "catalog",
    allowed: [],
    run: (tx) =>
      tx`insert into public.products (category_id, name) values (${category.id}, ${uniq("p")})`.then(count),
  },
  {
    table: "products",
    op: "update",
    target: "catalog",
    allowed: [],
    run: (tx) => tx`update public.products set name = name where id = ${product.id}`.then(count),
  },
  {
    table: "client_products",
    op: "select",
    target: "own client",
    allowed: A_MEMBERS,
    run: (tx) => tx`select 1 from public.client_products where client_id = ${a}`.then(count),
  },
  {
    table: "client_products",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select 1 from public.client_products where client_id = ${b}`.then(count),
  },
  {
    table: "client_products",
    op: "delete",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`delete from public.client_products where client_id = ${a}`.then(count),
  },
  // api keys (private table; managed only through the functions, which check api_keys.manage)
  {
    table: "api_keys",
    op: "select",
    target: "own client table",
    allowed: [],
    run: (tx) => tx`select 1 from app.api_keys where client_id = ${a}`.then(count),
  },
  {
    table: "api_keys",
    op: "select",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`select * from public.list_api_keys(${a})`.then(count),
  },
  {
    table: "api_keys",
    op: "select",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`select * from public.list_api_keys(${b})`.then(count),
  },
  {
    table: "api_keys",
    op: "insert",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) =>
      tx`select public.create_api_key(${a}, 'x', 'live', ${uniq("k")}, ${
        crypto.getRandomValues(new Uint8Array(32))
      }, '{ingest:single}', '{}', 60, 'website', null)`.then(count),
  },
  {
    table: "api_keys",
    op: "insert",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) =>
      tx`select public.create_api_key(${b}, 'x', 'live', ${uniq("k")}, ${
        crypto.getRandomValues(new Uint8Array(32))
      }, '{ingest:single}', '{}', 60, 'website', null)`.then(count),
  },
  // pipeline and assignment rules
  {
    table: "lead_statuses",
    op: "select",
    target: "own client",
    allowed: A_MEMBERS,
    run: (tx) => tx`select 1 from public.lead_statuses where client_id = ${a}`.then(count),
  },
  {
    table: "lead_statuses",
    op: "update",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`update public.lead_statuses set name = name where client_id = ${a}`.then(count),
  },
  {
    table: "lead_statuses",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`update public.lead_statuses set name = name where client_id = ${b}`.then(count),
  },
  {
    table: "assignment_rules",
    op: "select",
    target: "own client",
    allowed: A_MEMBERS,
    run: (tx) => tx`select 1 from public.assignment_rules where client_id = ${a}`.then(count),
  },
  {
    table: "assignment_rules",
    op: "update",
    target: "own client",
    allowed: CLIENT_SCOPE,
    run: (tx) => tx`update public.assignment_rules set enabled = enabled where client_id = ${a}`.then(count),
  },
  {
    table: "assignment_rules",
    op: "update",
    target: "other client",
    allowed: B_OWNER,
    run: (tx) => tx`update public.assignment_rules set enabled = enabled where client_id = ${b}`.then(count),
  },
];
const ROLLBACK = new Error("rollback");
/** Errors that mean "refused": RLS or privilege (42501) and our escalation guards (42501). */
const REFUSALS = new Set(["42501"]);

async function attempt(actor: Actor, check: Check): Promise<{ allowed: boolean; error?: string }> {
  let rows = 0;
  try {
    await db().begin(async (tx) => {
      if (actor === "anon") {
        await tx`select set_config('role', 'anon', true)`;
      } else {
        const id = actor === "b_owner" ? users.b_owner.id : userOf(actor);
        const claims = {
          sub: id,
          role: "authenticated",
          session_id: crypto.randomUUID(),
          client_id: actor === "b_owner" ? b : a,
        };
        await tx`select set_config('role', 'authenticated', true), set_config('request.jwt.claims', ${
          JSON.stringify(claims)
        }, true)`;
      }
      rows = await check.run(tx, actor);
      throw ROLLBACK;
    });
  } catch (error) {
    if (error === ROLLBACK) return { allowed: rows > 0 };
    const code = (error as { code?: string }).code ?? "none";
    return { allowed: false, error: `${code} ${(error as Error).message}` };
  }
  throw new Error("unreachable");
}

test("the attack matrix matches the expected allow/deny table with zero unexpected allows", async () => {
  const lines: string[] = [];
  let allows = 0, denies = 0;
  const unexpectedAllows: string[] = [];
  const unexpectedDenies: string[] = [];
  const oddErrors: string[] = [];
  lines.push(["table.op target".padEnd(44), ...ACTORS.map((x) => x.slice(0, 8).padStart(9))].join(""));
  for (const check of CHECKS) {
    const cells: string[] = [];
    for (const actor of ACTORS) {
      const outcome = await attempt(actor, check);
      const expected = check.allowed.includes(actor);
      const name = `${actor}: ${check.op} ${check.table} (${check.target})`;
      if (outcome.allowed) allows++;
      else denies++;
      if (outcome.allowed && !expected) unexpectedAllows.push(name);
      if (!outcome.allowed && expected) unexpectedDenies.push(`${name} ${outcome.error ?? "0 rows"}`);
      if (outcome.error && !REFUSALS.has(outcome.error.split(" ")[0])) {
        oddErrors.push(`${name}: ${outcome.error}`);
      }
      cells.push(
        (outcome.allowed ? "allow" : "deny").padStart(9) + (outcome.allowed !== expected ? "!" : ""),
      );
    }
    lines.push([`${check.table}.${check.op} ${check.target}`.padEnd(44), ...cells].join(""));
  }
  console.log(lines.join("\n"));
  console.log(
    `attack matrix: ${CHECKS.length} checks x ${ACTORS.length} actors = ${allows + denies} attempts, ` +
      `${allows} allowed, ${denies} denied, ${unexpectedAllows.length} unexpected allows, ` +
      `${unexpectedDenies.length} unexpected denies`,
  );
  assert.deepEqual(unexpectedAllows, [], "unexpected allows (security holes)");
  assert.deepEqual(unexpectedDenies, [], "unexpected denies");
  assert.deepEqual(oddErrors, [], "refusals must come from RLS or the guards, not from broken checks");
});
