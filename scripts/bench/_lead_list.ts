/**
 * Section C: "the 50 newest leads I can see" in a large client (10,000 members in a 7-level hierarchy,
 * 1,000,000 leads), under row-level security as the API runs it, against the same question asked of the
 * raw database as superuser.
 */
import { type Claims, createDb, type Sql, type Tx } from "../../functions/_shared/db.ts";
import { listLeads } from "../../functions/api/leads/leads.queries.ts";
import { percentile } from "./_load.ts";

export const LIST_CLIENT = "bench-hierarchy";

/** Members per level, top down: 1 owner, 3 admins, four levels of managers, then the agents. */
const LEVELS: Array<{ size: number; role: string }> = [
  { size: 1, role: "owner" },
  { size: 3, role: "admin" },
  { size: 6, role: "manager" },
  { size: 12, role: "manager" },
  { size: 48, role: "manager" },
  { size: 480, role: "manager" },
  { size: 9450, role: "agent" },
];

export interface ListSettings {
  url: string;
  leads: number;
  chunk: number;
  iterations: number;
  secondsPerCase: number;
}

interface Persona {
  label: string;
  level: number;
  user_id: string;
  membership_id: string;
  /** Members in the persona's subtree, itself included. */
  team_members: number;
  /** Leads the persona sees. */
  visible_leads: number;
}

export interface Stats {
  iterations: number;
  p50: number;
  p95: number;
  p99: number;
  mean: number;
}

export interface ListCase {
  id: string;
  description: string;
  persona: string;
  rls: boolean;
  sql: string;
  rows: number;
  /** The statement alone (listLeads() runs one), timed inside the transaction. */
  statement_ms: Stats;
  /** BEGIN, (set_config for RLS cases,) the statement, COMMIT: one request's database work. */
  transaction_ms: Stats;
}

export interface ListRatio {
  name: string;
  numerator: string;
  denominator: string;
  statement_p50: number;
  statement_p95: number;
  transaction_p50: number;
  transaction_p95: number;
  /** Whether the RLS case meets the targets (ratio <= 2x on the statement p50, p95 < 2 ms). */
  target?: { ratio_max: number; p95_max_ms: number; ratio_met: boolean; p95_met: boolean };
}

export interface ListReport {
  members: number;
  levels: number[];
  leads: number;
  generation: {
    hierarchy_s: number;
    leads_s: number;
    leads_per_second: number;
    vacuum_analyze_s: number;
    total_s: number;
    lead_viewers_rows: number;
    closure_rows: number;
    leads_size: string;
    lead_viewers_size: string;
    /** Row-level BEFORE INSERT triggers switched off while the leads were generated. */
    triggers_bypassed: string[];
  };
  personas: Persona[];
  cases: ListCase[];
  ratios: ListRatio[];
  same_rows: { manager: boolean; admin: boolean; team_lead: boolean };
  notes: string[];
}

function log(message: string) {
  console.error(`[bench] ${message}`);
}

const seconds = (from: number) => Math.round((performance.now() - from) / 10) / 100;
const round = (value: number, digits = 3) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Users and memberships level by level (set-based; the closure triggers run per member). */
async function generateHierarchy(sql: Sql) {
  await sql`insert into public.clients (id, name) values (${LIST_CLIENT}, 'Bench hierarchy')`;
  await sql`
    create table bench.hierarchy (
      level int not null,
      idx int not null,
      role text not null,
      user_id uuid not null default gen_random_uuid(),
      membership_id uuid not null default gen_random_uuid(),
      -- The manager's position in the level above; members spread evenly over their managers.
      parent_idx int,
      primary key (level, idx)
    )`;
  for (const [i, level] of LEVELS.entries()) {
    const above = i === 0 ? null : LEVELS[i - 1].size;
    await sql`
      insert into bench.hierarchy (level, idx, role, parent_idx)
      select ${i + 1}, n, ${level.role},
             case when ${above}::int is null then null else ((n - 1) * ${above}::int) / ${level.size} + 1 end
      from generate_series(1, ${level.size}) n`;
  }
  await sql`
    insert into public.users (id, email, full_name)
    select user_id, format('h%s-%s@hierarchy.bench.example.com', level, idx), format('Member %s.%s', level, idx)
    from bench.hierarchy`;
  for (let level = 1; level <= LEVELS.length; level++) {
    await sql`
      insert into public.memberships (id, client_id, user_id, role_id, reports_to)
      select h.membership_id, ${LIST_CLIENT}, h.user_id, r.id, p.membership_id
      from bench.hierarchy h
      join public.roles r on r.client_id = ${LIST_CLIENT} and r.key = h.role
      left join bench.hierarchy p on p.level = h.level - 1 and p.idx = h.parent_idx
      where h.level = ${level}
      order by h.idx`;
  }
}

/**
 * The leads, in chunks of one INSERT ... SELECT each, spread evenly over the agents, created_at scattered
 * over the past year. The row-level BEFORE INSERT triggers (deduplication and assignment, the owner guard)
 * are off meanwhile: every owner is explicit and every email and phone unique. The statement-level AFTER
 * INSERT trigger of the visibility index stays on, so app.lead_viewers is built exactly as in production.
 * Returns the triggers it switched off.
 */
async function generateLeads(sql: Sql, total: number, chunk: number): Promise<string[]> {
  const agents = LEVELS.at(-1)!.size;
  const step = 31_536_000 / total;
  // tgtype bits: 1 row-level, 2 before, 4 insert. The outbox trigger is off too: generated leads are not
  // events (a million of them would keep section D's workers dispatching for minutes).
  const triggers = (await sql<{ name: string }[]>`
    select tgname as name from pg_trigger
    where tgrelid = 'public.leads'::regclass and not tgisinternal and tgenabled <> 'D'
      and (tgtype & 7 = 7 or tgname = 'on_leads_inserted_outbox')
    order by tgname`).map((row) => row.name);
  for (const name of triggers) await sql`alter table public.leads disable trigger ${sql(name)}`;
  try {
    for (let from = 1; from <= total; from += chunk) {
      const to = Math.min(total, from + chunk - 1);
      const started = performance.now();
      await sql`
        insert into public.leads (client_id, source, full_name, email, phone, status, owner_membership_id,
                                  utm_source, utm_medium, consent, created_at, updated_at)
        select ${LIST_CLIENT}, 'website', 'Lead ' || g, 'lead-' || g || '@hierarchy.bench.example.com',
               '+1' || (2000000000 + g), 'new', a.membership_id, 'bench', 'cpc', true, t.at, t.at
        from generate_series(${from}::int, ${to}::int) g
        join bench.hierarchy a on a.level = ${LEVELS.length} and a.idx = 1 + g % ${agents}
        cross join lateral (
          select now() - make_interval(secs => ((g::bigint * 7919) % ${total}) * ${step}::float8) as at
        ) t`;
      log(`  leads ${to.toLocaleString("en")}/${total.toLocaleString("en")} (${seconds(started)} s)`);
    }
  } finally {
    for (const name of triggers) await sql`alter table public.leads enable trigger ${sql(name)}`;
  }
  return triggers;
}

async function persona(sql: Sql, label: string, level: number): Promise<Persona> {
  const [row] = await sql<Persona[]>`
    select ${label} as label, h.level, h.user_id, h.membership_id,
           (select count(*)::int from app.membership_closure c where c.ancestor_id = h.membership_id)
             as team_members,
           case when h.role in ('owner', 'admin')
             then (select count(*)::int from public.leads l where l.client_id = ${LIST_CLIENT})
             else (select count(*)::int from app.lead_viewers v where v.viewer_id = h.membership_id) end
             as visible_leads
    from bench.hierarchy h where h.level = ${level} and h.idx = 1`;
  return row;
}

function stats(samples: number[]): Stats {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    iterations: sorted.length,
    p50: round(percentile(sorted, 50)),
    p95: round(percentile(sorted, 95)),
    p99: round(percentile(sorted, 99)),
    mean: round(sorted.reduce((a, b) => a + b, 0) / sorted.length),
  };
}

type Query = (tx: Tx) => Promise<readonly { id: string }[]>;

/** One timed case: its caller's claims (null for the superuser cases) and its query. */
interface Timed {
  claims: Claims | null;
  query: Query;
}

/** BEGIN, (the authenticated role and the caller's claims, as asUser() sets them,) the query, COMMIT. */
async function runOnce(sql: Sql, timed: Timed) {
  const began = performance.now();
  let statementMs = 0;
  let ids: string[] = [];
  await sql.begin(async (tx) => {
    if (timed.claims) {
      await tx`select set_config('role', 'authenticated', true),
                      set_config('request.jwt.claims', ${JSON.stringify(timed.claims)}, true)`;
    }
    const started = performance.now();
    const rows = await timed.query(tx);
    statementMs = performance.now() - started;
    ids = rows.map((row) => row.id);
  });
  return { statementMs, transactionMs: performance.now() - began, ids };
}

/**
 * Times every case, interleaved: after a warm-up (20 runs and at least half a second per case: caches,
 * prepared statements, postgres.js's statement descriptions), each round runs every unfinished case once.
 * So whatever else the machine does meanwhile falls on all cases alike and leaves their ratios alone. A case
 * is done after `iterations` runs or `secondsPerCase` of its own runs, whichever comes first (at least 10).
 */
async function measureAll(sql: Sql, settings: ListSettings, cases: Timed[]) {
  const samples = cases.map(() => ({ statement: [] as number[], transaction: [] as number[], spentMs: 0 }));
  const ids: string[][] = cases.map(() => []);
  for (const timed of cases) {
    const warm = performance.now() + 500;
    for (let i = 0; i < 20 || performance.now() < warm; i++) await runOnce(sql, timed);
  }
  const unfinished = (i: number) =>
    samples[i].statement.length < 10 ||
    (samples[i].statement.length < settings.iterations &&
      samples[i].spentMs < settings.secondsPerCase * 1000);
  while (cases.some((_, i) => unfinished(i))) {
    for (const [i, timed] of cases.entries()) {
      if (!unfinished(i)) continue;
      const run = await runOnce(sql, timed);
      samples[i].statement.push(run.statementMs);
      samples[i].transaction.push(run.transactionMs);
      samples[i].spentMs += run.transactionMs;
      ids[i] = run.ids;
    }
  }
  return samples.map((s, i) => ({
    statement: stats(s.statement),
    transaction: stats(s.transaction),
    ids: ids[i],
  }));
}

const sameIds = (a: string[], b: string[]) => a.length === b.length && a.every((id, i) => id === b[i]);

function ratio(name: string, numerator: ListCase, denominator: ListCase, target = false): ListRatio {
  const r = (a: number, b: number) => round(a / b, 2);
  const result: ListRatio = {
    name,
    numerator: numerator.id,
    denominator: denominator.id,
    statement_p50: r(numerator.statement_ms.p50, denominator.statement_ms.p50),
    statement_p95: r(numerator.statement_ms.p95, denominator.statement_ms.p95),
    transaction_p50: r(numerator.transaction_ms.p50, denominator.transaction_ms.p50),
    transaction_p95: r(numerator.transaction_ms.p95, denominator.transaction_ms.p95),
  };
  if (target) {
    result.target = {
      ratio_max: 2,
      p95_max_ms: 2,
      ratio_met: result.statement_p50 <= 2,
      p95_met: numerator.statement_ms.p95 < 2,
    };
  }
  return result;
}

/** Generates the client and its leads, then times each case; sql is a superuser pool. */
export async function benchLeadList(sql: Sql, settings: ListSettings): Promise<ListReport> {
  const notes: string[] = [];
  const started = performance.now();
  log("C generating 10,000 members in 7 levels");
  await generateHierarchy(sql);
  const hierarchyS = seconds(started);
  log(`C generating ${settings.leads.toLocaleString("en")} leads`);
  const leadsStarted = performance.now();
  const bypassed = await generateLeads(sql, settings.leads, settings.chunk);
  const leadsS = seconds(leadsStarted);
  log("C vacuum analyze");
  const vacuumStarted = performance.now();
  for (const table of ["public.leads", "app.lead_viewers", "app.membership_closure", "public.memberships"]) {
    await sql.unsafe(`vacuum analyze ${table}`);
  }
  const vacuumS = seconds(vacuumStarted);
  const totalS = seconds(started);
  const [sizes] = await sql<
    { viewers: number; closure: number; leads_size: string; viewers_size: string }[]
  >`
    select (select count(*)::int from app.lead_viewers) as viewers,
           (select count(*)::int from app.membership_closure) as closure,
           pg_size_pretty(pg_total_relation_size('public.leads')) as leads_size,
           pg_size_pretty(pg_total_relation_size('app.lead_viewers')) as viewers_size`;

  const manager = await persona(sql, "mid-level manager (level 5)", 5);
  const teamLead = await persona(sql, "team lead (level 6)", 6);
  const admin = await persona(sql, "client admin (level 2)", 2);
  const claimsOf = (p: Persona): Claims => ({
    sub: p.user_id,
    role: "authenticated",
    client_id: LIST_CLIENT,
    session_id: crypto.randomUUID(),
  });

  const visiblePage = "select * from public.leads where id = any(app.visible_lead_page($1, 50)) " +
    "order by created_at desc, id desc";
  const plainPage =
    "select * from public.leads where client_id = $1 order by created_at desc, id desc limit 50";
  const closurePage = "select l.* from public.leads l where l.owner_membership_id in " +
    "(select descendant_id from app.membership_closure where ancestor_id = $1) " +
    "order by created_at desc, id desc limit 50";
  const indexPage =
    "select * from public.leads where id = any(array(select v.lead_id from app.lead_viewers v " +
    "where v.viewer_id = $1 order by v.created_at desc, v.lead_id desc limit 50)) order by created_at desc, id desc";

  const definitions: Array<{
    id: string;
    description: string;
    who: Persona;
    rls: boolean;
    sql: string;
    query: Query;
  }> = [
    {
      id: "manager_rls",
      description: "(1) mid-level manager, RLS: id = any(visible_lead_page()) in one statement",
      who: manager,
      rls: true,
      sql: visiblePage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where id = any(app.visible_lead_page(${LIST_CLIENT}, 50))
           order by created_at desc, id desc`,
    },
    {
      id: "manager_rls_api",
      description: "(1) mid-level manager, the API's own listLeads() (index ids and page, one statement)",
      who: manager,
      rls: true,
      sql: "listLeads() in functions/api/leads/leads.queries.ts, no filters, limit 50",
      query: async (tx) => (await listLeads(tx, LIST_CLIENT, { duplicates: "include" }, { limit: 50 })).rows,
    },
    {
      id: "admin_rls",
      description: "(2) client admin, RLS (client scope, plain query)",
      who: admin,
      rls: true,
      sql: plainPage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where client_id = ${LIST_CLIENT} order by created_at desc, id desc limit 50`,
    },
    {
      id: "admin_rls_api",
      description: "(2) client admin, the API's own listLeads()",
      who: admin,
      rls: true,
      sql: "listLeads() in functions/api/leads/leads.queries.ts, no filters, limit 50",
      query: async (tx) => (await listLeads(tx, LIST_CLIENT, { duplicates: "include" }, { limit: 50 })).rows,
    },
    {
      id: "manager_raw_closure",
      description: "(3) mid-level manager, no RLS: owner in closure subtree",
      who: manager,
      rls: false,
      sql: closurePage,
      query: (tx) =>
        tx<{ id: string }[]>`select l.* from public.leads l where l.owner_membership_id in
             (select descendant_id from app.membership_closure where ancestor_id = ${manager.membership_id})
           order by created_at desc, id desc limit 50`,
    },
    {
      id: "manager_raw_index",
      description: "(3) mid-level manager, no RLS: same visibility index read directly",
      who: manager,
      rls: false,
      sql: indexPage,
      query: (tx) =>
        tx<{ id: string }[]>`select * from public.leads where id = any(array(
             select v.lead_id from app.lead_viewers v where v.viewer_id = ${manager.membership_id}
             order by v.created_at desc, v.lead_id desc limit 50))
           order by created_at desc, id desc`,
    },
    {
      id: "admin_raw",
      description: "(3) client admin, no RLS: plain query",
      who: admin,
      rls: false,
      sql: plainPage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where client_id = ${LIST_CLIENT} order by created_at desc, id desc limit 50`,
    },
    {
      id: "manager_rls_plain_policy",
      description: "(4) mid-level manager, RLS policy alone (plain query, no visibility index)",
      who: manager,
      rls: true,
      sql: plainPage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where client_id = ${LIST_CLIENT} order by created_at desc, id desc limit 50`,
    },
    {
      id: "team_lead_rls",
      description: "(4) team lead, RLS: id = any(visible_lead_page()) in one statement",
      who: teamLead,
      rls: true,
      sql: visiblePage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where id = any(app.visible_lead_page(${LIST_CLIENT}, 50))
           order by created_at desc, id desc`,
    },
    {
      id: "team_lead_rls_plain_policy",
      description: "(4) team lead, RLS policy alone (plain query, no visibility index)",
      who: teamLead,
      rls: true,
      sql: plainPage,
      query: (tx) =>
        tx<
          { id: string }[]
        >`select * from public.leads where client_id = ${LIST_CLIENT} order by created_at desc, id desc limit 50`,
    },
  ];

  // One connection, like one API request's transaction; the API's own type parsers.
  const measured = createDb(settings.url, { max: 1 });
  const cases: ListCase[] = [];
  const ids: Record<string, string[]> = {};
  try {
    log(`C timing ${definitions.length} cases, interleaved`);
    const results = await measureAll(
      measured,
      settings,
      definitions.map((d) => ({ claims: d.rls ? claimsOf(d.who) : null, query: d.query })),
    );
    for (const [i, d] of definitions.entries()) {
      const result = results[i];
      ids[d.id] = result.ids;
      cases.push({
        id: d.id,
        description: d.description,
        persona: d.who.label,
        rls: d.rls,
        sql: d.sql,
        rows: result.ids.length,
        statement_ms: result.statement,
        transaction_ms: result.transaction,
      });
    }
  } finally {
    await measured.end();
  }
  const byId = (id: string) => cases.find((c) => c.id === id)!;
  const sameRows = {
    manager: ids.manager_rls.length === 50 && sameIds(ids.manager_rls, ids.manager_raw_closure) &&
      sameIds(ids.manager_rls, ids.manager_raw_index) &&
      sameIds(ids.manager_rls, ids.manager_rls_plain_policy),
    admin: ids.admin_rls.length === 50 && sameIds(ids.admin_rls, ids.admin_raw),
    team_lead: ids.team_lead_rls.length === 50 && sameIds(ids.team_lead_rls, ids.team_lead_rls_plain_policy),
  };
  for (const [who, same] of Object.entries(sameRows)) {
    if (!same) notes.push(`The ${who} cases did not all return the same 50 leads; check the policies`);
  }
  return {
    members: LEVELS.reduce((sum, level) => sum + level.size, 0),
    levels: LEVELS.map((level) => level.size),
    leads: settings.leads,
    generation: {
      hierarchy_s: hierarchyS,
      leads_s: leadsS,
      leads_per_second: Math.round(settings.leads / leadsS),
      vacuum_analyze_s: vacuumS,
      total_s: totalS,
      lead_viewers_rows: sizes.viewers,
      closure_rows: sizes.closure,
      leads_size: sizes.leads_size,
      lead_viewers_size: sizes.viewers_size,
      triggers_bypassed: bypassed,
    },
    personas: [manager, teamLead, admin],
    cases,
    ratios: [
      ratio("manager: RLS / no-RLS closure query", byId("manager_rls"), byId("manager_raw_closure"), true),
      ratio("manager: RLS / no-RLS same index", byId("manager_rls"), byId("manager_raw_index"), true),
      ratio(
        "manager: API listLeads / no-RLS same index",
        byId("manager_rls_api"),
        byId("manager_raw_index"),
        true,
      ),
      ratio("admin: RLS / no-RLS", byId("admin_rls"), byId("admin_raw"), true),
      ratio("admin: API listLeads / no-RLS", byId("admin_rls_api"), byId("admin_raw"), true),
      ratio(
        "manager: plain policy / visibility index",
        byId("manager_rls_plain_policy"),
        byId("manager_rls"),
      ),
      ratio(
        "team lead: plain policy / visibility index",
        byId("team_lead_rls_plain_policy"),
        byId("team_lead_rls"),
      ),
    ],
    same_rows: sameRows,
    notes,
  };
}
