/**
 * The benchmark's readable table. Ratios are always platform / baseline: below 1x for throughput and
 * above 1x for latency mean the platform is slower.
 */
import { cpuPerRequest, type IngestPoint, type IngestReport, type Measured, medianBy } from "./_ingest.ts";
import type { ListReport } from "./_lead_list.ts";
import type { QueueReport } from "./_queue.ts";
import type { LoadResult } from "./_load.ts";
import { describeWaits } from "./_waits.ts";

export interface Machine {
  cpu: string;
  cores: number;
  memory_gb: number;
  os: string;
  deno: string;
  postgres: string;
  postgres_settings: Record<string, string>;
  wrk: string;
  pgbench: string;
  /** Load averages at the start, before each section and at the end: other work on the machine shows here. */
  load_average?: Record<string, number[]>;
}

export interface Ratios {
  throughput: number | null;
  p50: number | null;
  p99: number | null;
}

export interface BenchReport {
  benchmark: string;
  started_at: string;
  duration_s: number;
  settings: Record<string, unknown>;
  machine: Machine;
  ingest: (IngestReport & { ratios: IngestRatios }) | { skipped: string };
  lead_list: ListReport | { skipped: string };
  queue: QueueReport | { skipped: string };
  notes: string[];
}

/** Section D as tables. */
function queueTables(queue: QueueReport): string {
  const out = ["D. Event pipeline: webhook jobs to a local HTTP sink, beside the raw SKIP LOCKED rate"];
  out.push(
    `raw SQL claim-and-complete (${queue.raw_claim_complete.connections} connections, batches of ` +
      `${queue.raw_claim_complete.batch}): ${
        queue.raw_claim_complete.rows_per_second.toLocaleString("en-US")
      } rows/s`,
  );
  out.push("workers  jobs    seconds  jobs/s   vs raw");
  out.push("-------  ------  -------  -------  ------");
  for (const point of queue.workers) {
    out.push(
      [
        String(point.workers).padEnd(7),
        point.jobs.toLocaleString("en-US").padEnd(6),
        fmt(point.seconds, 2).padEnd(7),
        point.jobs_per_second.toLocaleString("en-US").padEnd(7),
        `${fmt(point.jobs_per_second / queue.raw_claim_complete.rows_per_second, 3)}x`,
      ].join("  "),
    );
  }
  const l = queue.latency;
  out.push(
    `ingest-to-webhook latency at ${l.leads_per_second} leads/s after ${l.warmup_seconds} s of warm-up: ` +
      `p50 ${fmt(l.p50_ms, 1)} ms, p99 ${fmt(l.p99_ms, 1)} ms, max ${fmt(l.max_ms, 1)} ms ` +
      `(${l.delivered} of ${l.sent} delivered, warm-up included)`,
    `single leads after ${fmt(l.idle_ms / 1000, 0)} s idle: woken by the platform ${
      idleList(l.after_idle_woken_ms)
    }; left to the worker's polling ${idleList(l.after_idle_polled_ms)}`,
  );
  return out.join("\n");
}

const idleList = (values: (number | null)[]) =>
  values.map((value) => value === null ? "not delivered" : `${fmt(value, 1)} ms`).join(", ");

type PointRatios = {
  connections: number;
  platform_vs_http: Ratios;
  platform_vs_pgbench: Ratios;
  platform_vs_schema: Ratios;
};

export interface IngestRatios {
  single: PointRatios[];
  batch: PointRatios[];
}

const r2 = (value: number) => Math.round(value * 100) / 100;

const SCHEMA_BASELINE = "(c) pgbench INSERT, leads schema";

/** Platform / baseline for throughput, p50 and p99; null where either side is missing. */
export function ratios(
  platform: LoadResult | null | undefined,
  baseline: LoadResult | null | undefined,
): Ratios {
  if (!platform || !baseline) return { throughput: null, p50: null, p99: null };
  return {
    throughput: r2(platform.requests_per_second / baseline.requests_per_second),
    p50: r2(platform.latency_ms.p50 / baseline.latency_ms.p50),
    p99: r2(platform.latency_ms.p99 / baseline.latency_ms.p99),
  };
}

export function ingestRatios(report: IngestReport): IngestRatios {
  return {
    single: report.single.map((p) => ({
      connections: p.connections,
      platform_vs_http: ratios(p.platform, p.baseline_http),
      platform_vs_pgbench: ratios(p.platform, p.baseline_pgbench),
      platform_vs_schema: ratios(p.platform, p.baseline_schema),
    })),
    batch: report.batch.map((p) => ({
      connections: p.connections,
      platform_vs_http: ratios(p.platform, p.baseline_http),
      platform_vs_pgbench: ratios(p.platform, p.baseline_pgbench),
      platform_vs_schema: ratios(p.platform, p.baseline_schema),
    })),
  };
}

/** Lays rows out in columns; numbers are right-aligned. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? "").length)));
  const numeric = (text: string) => /^[\d.,x-]+( ?%)?$/.test(text) || text === "n/a";
  const line = (cells: string[]) =>
    cells.map((cell, i) => numeric(cell) && i > 0 ? cell.padStart(widths[i]) : cell.padEnd(widths[i]))
      .join("  ").trimEnd();
  return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
}

const fmt = (value: number | null | undefined, digits = 2) =>
  value === null || value === undefined || Number.isNaN(value)
    ? "n/a"
    : value.toLocaleString("en", { minimumFractionDigits: digits, maximumFractionDigits: digits });
const times = (value: number | null | undefined) =>
  value === null || value === undefined ? "n/a" : `${fmt(value)}x`;

function loadRow(
  connections: number,
  system: string,
  result: Measured | null | undefined,
  ratio: Ratios | null,
  perRequest = 1,
): string[] {
  if (!result) return [String(connections), system, "n/a", "n/a", "n/a", "n/a", "n/a", "", "", ""];
  const errorRate = result.requests ? (100 * result.errors) / result.requests : 0;
  return [
    String(connections),
    system,
    fmt(result.requests_per_second * perRequest, 0),
    fmt(result.latency_ms.p50),
    fmt(result.latency_ms.p99),
    result.errors ? `${fmt(errorRate, 1)} %` : "0",
    result.leads_stored.toLocaleString("en"),
    ratio ? times(ratio.throughput) : "",
    ratio ? times(ratio.p50) : "",
    ratio ? times(ratio.p99) : "",
  ];
}

function ingestTables(report: IngestReport & { ratios: IngestRatios }, seconds: number): string {
  const out: string[] = [];
  const header = (unit: string) => [
    "conns",
    "system",
    unit,
    "p50 ms",
    "p99 ms",
    "errors",
    "stored",
    "thru ratio",
    "p50 ratio",
    "p99 ratio",
  ];
  out.push(
    `A. Single-lead ingest: POST /functions/v1/ingest/leads, one new lead per request, ${seconds} s per point`,
  );
  const single: string[][] = [];
  report.single.forEach((p: IngestPoint, i) => {
    const r = report.ratios.single[i];
    single.push(loadRow(p.connections, "platform (ingest function)", p.platform, null));
    single.push(loadRow(p.connections, "(a) bare Hono + INSERT", p.baseline_http, r.platform_vs_http));
    single.push(loadRow(p.connections, "(b) pgbench INSERT", p.baseline_pgbench, r.platform_vs_pgbench));
    single.push(loadRow(p.connections, SCHEMA_BASELINE, p.baseline_schema, r.platform_vs_schema));
  });
  out.push(table(header("req/s"), single));
  for (const p of report.single) {
    if (!p.rounds?.length) continue;
    const runs = p.rounds.map((pair, i) => {
      const rate = (run: Measured | null) => run ? fmt(run.requests_per_second, 0) : "n/a";
      const ratio = pair.platform && pair.baseline_http
        ? ` = ${fmt(pair.platform.requests_per_second / pair.baseline_http.requests_per_second)}x`
        : "";
      return `${i + 1}. ${rate(pair.platform)} / ${rate(pair.baseline_http)}${ratio}`;
    });
    out.push(
      `${p.connections} connections in ${p.rounds.length} alternating rounds (the table shows the round ` +
        `with the median ratio), platform / (a) req/s: ${runs.join("; ")}`,
    );
  }
  for (const p of report.single) {
    const pairs = (p.rounds ?? []).filter((round) => round.platform && round.outbox_off);
    const onOff = (round: (typeof pairs)[number]) =>
      round.platform!.requests_per_second / round.outbox_off!.requests_per_second;
    const median = medianBy(pairs, onOff);
    if (!median) continue;
    const runs = pairs.map((round, i) =>
      `${i + 1}. ${fmt(round.platform!.requests_per_second, 0)} / ` +
      `${fmt(round.outbox_off!.requests_per_second, 0)} = ${fmt(onOff(round))}x`
    );
    out.push(
      `outbox trigger at ${p.connections} connections, on / off req/s in the same rounds (the event ` +
        `pipeline's cost): ${runs.join("; ")}; median ${fmt(onOff(median))}x`,
    );
  }
  out.push("");
  out.push(`B. Batch ingest: {"leads": [${report.batch_size} leads]} per request, ${seconds} s per point`);
  const batch: string[][] = [];
  report.batch.forEach((p: IngestPoint, i) => {
    const r = report.ratios.batch[i];
    batch.push(loadRow(p.connections, "platform (ingest function)", p.platform, null, report.batch_size));
    batch.push(
      loadRow(
        p.connections,
        "(a) bare Hono + multi-row INSERT",
        p.baseline_http,
        r.platform_vs_http,
        report.batch_size,
      ),
    );
    batch.push(
      loadRow(
        p.connections,
        "(b) pgbench multi-row INSERT",
        p.baseline_pgbench,
        r.platform_vs_pgbench,
        report.batch_size,
      ),
    );
    batch.push(
      loadRow(p.connections, SCHEMA_BASELINE, p.baseline_schema, r.platform_vs_schema, report.batch_size),
    );
  });
  out.push(table(header("rows/s"), batch));
  out.push(
    "(c) inserts into a copy of public.leads with its indexes, constraints and foreign keys but no triggers\n" +
      "(no dedup, routing, visibility or outbox): the least this schema costs per lead on this machine.",
  );
  out.push("");
  out.push(
    "Resources during each point: the machine's CPU (all cores); the CPU time per request of the HTTP server\n" +
      "process, of the database's backends (all of them, the worker's included) and of the platform's worker\n" +
      "process, and their sum, which is what the machine spends on a request beside the load generator; the\n" +
      "lead events the worker had not dispatched when the point ended (work it caused but did not pay for); and\n" +
      "where the database's backends were (pg_stat_activity every 100 ms; CPU = active without a wait event):",
  );
  const waits: string[][] = [];
  const add = (section: string, p: IngestPoint, system: string, result: Measured | null | undefined) => {
    if (!result) return;
    waits.push([
      section,
      String(p.connections),
      system,
      result.machine_cpu_busy_pct === null ? "n/a" : `${fmt(result.machine_cpu_busy_pct, 0)} %`,
      fmt(result.server_cpu_ms_per_request),
      fmt(result.database_cpu_ms_per_request),
      fmt(result.worker_cpu_ms_per_request),
      fmt(cpuPerRequest(result)),
      result.events_pending_at_end === null ? "" : fmt(result.events_pending_at_end, 0),
      describeWaits(result.waits),
    ]);
  };
  for (const p of report.single) {
    add("A", p, "platform", p.platform);
    add("A", p, "(a)", p.baseline_http);
    add("A", p, "(b)", p.baseline_pgbench);
    add("A", p, "(c)", p.baseline_schema);
  }
  for (const p of report.batch) {
    add("B", p, "platform", p.platform);
    add("B", p, "(a)", p.baseline_http);
    add("B", p, "(b)", p.baseline_pgbench);
    add("B", p, "(c)", p.baseline_schema);
  }
  out.push(
    table(
      [
        "sec",
        "conns",
        "system",
        "machine CPU",
        "server ms/req",
        "database ms/req",
        "worker ms/req",
        "total ms/req",
        "events left",
        "database backends",
      ],
      waits,
    ),
  );
  return out.join("\n");
}

function listTables(report: ListReport): string {
  const g = report.generation;
  const out: string[] = [];
  out.push(
    `C. Lead list: the 50 newest visible leads; ${report.members.toLocaleString("en")} members in ` +
      `${report.levels.length} levels (${report.levels.join("/")}), ${
        report.leads.toLocaleString("en")
      } leads`,
  );
  out.push(
    `   generated in ${fmt(g.total_s, 1)} s: hierarchy ${fmt(g.hierarchy_s, 1)} s, leads ${
      fmt(g.leads_s, 1)
    } s ` +
      `(${g.leads_per_second.toLocaleString("en")} leads/s incl. triggers), vacuum analyze ` +
      `${fmt(g.vacuum_analyze_s, 1)} s; leads ${g.leads_size}, lead_viewers ${g.lead_viewers_size} ` +
      `(${g.lead_viewers_rows.toLocaleString("en")} rows)`,
  );
  out.push(
    "   personas: " +
      report.personas.map((p) =>
        `${p.label}: ${p.team_members.toLocaleString("en")} members, ${
          p.visible_leads.toLocaleString("en")
        } leads`
      ).join("; "),
  );
  out.push("");
  out.push(table(
    ["case", "rows", "iters", "stmt p50", "stmt p95", "tx p50", "tx p95"],
    report.cases.map((c) => [
      c.description,
      String(c.rows),
      String(c.statement_ms.iterations),
      fmt(c.statement_ms.p50, 3),
      fmt(c.statement_ms.p95, 3),
      fmt(c.transaction_ms.p50, 3),
      fmt(c.transaction_ms.p95, 3),
    ]),
  ));
  out.push(
    "   (milliseconds; stmt = the SELECT alone (both statements for listLeads), " +
      "tx = BEGIN + set_config (RLS cases) + stmt + COMMIT)",
  );
  out.push("");
  out.push(table(
    ["ratio", "stmt p50", "stmt p95", "tx p50", "tx p95", "target <=2x", "target p95 < 2 ms"],
    report.ratios.map((r) => [
      r.name,
      times(r.statement_p50),
      times(r.statement_p95),
      times(r.transaction_p50),
      times(r.transaction_p95),
      r.target ? (r.target.ratio_met ? "met" : "MISSED") : "",
      r.target ? (r.target.p95_met ? "met" : "MISSED") : "",
    ]),
  ));
  out.push(
    `   same 50 leads from every variant: manager ${report.same_rows.manager}, admin ${report.same_rows.admin}, ` +
      `team lead ${report.same_rows.team_lead}`,
  );
  return out.join("\n");
}

/** The whole report as text. */
export function formatReport(report: BenchReport): string {
  const m = report.machine;
  const out: string[] = [];
  out.push(`Lead Automation Platform benchmark, ${report.started_at} (${fmt(report.duration_s, 0)} s)`);
  out.push(`machine: ${m.cpu}, ${m.cores} cores, ${m.memory_gb} GB, ${m.os}`);
  out.push(`software: Deno ${m.deno}; ${m.postgres}; ${m.wrk}; ${m.pgbench}`);
  out.push(
    "postgres: " + Object.entries(m.postgres_settings).map(([k, v]) => `${k}=${v}`).join(", "),
  );
  if (m.load_average) {
    out.push(
      "load average (1/5/15 min): " +
        Object.entries(m.load_average).map(([at, values]) => `${at} ${values.join(" ")}`).join("; "),
    );
  }
  out.push(
    "setup: wrk, pgbench, both HTTP servers (separate Deno processes, postgres.js pool of " +
      `${report.settings.pool_per_server}), the platform's worker (running beside it during A and B, as ` +
      "deployed) and PostgreSQL share this machine",
  );
  out.push(
    "ratios: platform / baseline, so throughput below 1x and latency above 1x mean the platform is slower",
  );
  out.push("");
  if ("skipped" in report.ingest) out.push(`A/B. Ingest: skipped (${report.ingest.skipped})`);
  else out.push(ingestTables(report.ingest, Number(report.settings.seconds)));
  out.push("");
  if ("skipped" in report.lead_list) out.push(`C. Lead list: skipped (${report.lead_list.skipped})`);
  else out.push(listTables(report.lead_list));
  out.push("");
  if ("skipped" in report.queue) out.push(`D. Event pipeline: skipped (${report.queue.skipped})`);
  else out.push(queueTables(report.queue));
  const notes = [
    ...report.notes,
    ...("notes" in report.ingest ? report.ingest.notes : []),
    ...("notes" in report.lead_list ? report.lead_list.notes : []),
  ];
  if (notes.length) {
    out.push("");
    out.push("Notes:");
    for (const note of notes) out.push(`- ${note}`);
  }
  return out.join("\n");
}
