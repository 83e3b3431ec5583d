/**
 * Load generators the benchmark runs as separate processes, and what it reads from them: wrk (HTTP, with
 * scripts/bench/ingest.lua) and pgbench (the raw database). Both report requests per second and latency
 * percentiles in milliseconds.
 */

export interface LoadResult {
  /** What produced the figures, e.g. "wrk -t2 -c16 -d10s". */
  tool: string;
  connections: number;
  requests: number;
  seconds: number;
  requests_per_second: number;
  latency_ms: { mean: number; p50: number; p90: number; p99: number; max: number };
  /** Non-2xx answers, socket errors and timeouts (wrk); failed transactions (pgbench). */
  errors: number;
  error_detail?: Record<string, number>;
}

const SCRIPT = new URL("./ingest.lua", import.meta.url).pathname;

const round = (value: number, digits = 2) => Math.round(value * 10 ** digits) / 10 ** digits;

/** Nearest-rank percentile of already sorted values. */
export function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length, Math.max(1, rank)) - 1];
}

async function output(command: string, args: string[], env?: Record<string, string>) {
  const result = await new Deno.Command(command, { args, env, stdout: "piped", stderr: "piped" }).output();
  const decoder = new TextDecoder();
  return { code: result.code, stdout: decoder.decode(result.stdout), stderr: decoder.decode(result.stderr) };
}

/** Converts one of wrk's durations ("812.00us", "1.20ms", "2.00s", "1.00m") to milliseconds. */
export function wrkDuration(text: string): number {
  const match = text.match(/^([\d.]+)(us|ms|s|m)$/);
  if (!match) return NaN;
  const factor = { us: 0.001, ms: 1, s: 1000, m: 60_000 }[match[2] as "us" | "ms" | "s" | "m"];
  return Number(match[1]) * factor;
}

/**
 * Reads wrk's report: the exact JSON line ingest.lua's done() prints, else wrk's own text (rounded
 * figures from --latency) when a script without done() was used.
 */
export function parseWrk(stdout: string, connections: number, tool: string): LoadResult {
  const json = stdout.match(/^WRK_JSON (.*)$/m);
  if (json) {
    const r = JSON.parse(json[1]);
    const seconds = r.duration_us / 1e6;
    const detail = {
      non_2xx: r.status_errors,
      connect: r.connect_errors,
      read: r.read_errors,
      write: r.write_errors,
      timeout: r.timeouts,
    };
    return {
      tool,
      connections,
      requests: r.requests,
      seconds: round(seconds, 3),
      requests_per_second: round(r.requests / seconds, 1),
      latency_ms: {
        mean: round(r.latency_us.mean / 1000, 3),
        p50: round(r.latency_us.p50 / 1000, 3),
        p90: round(r.latency_us.p90 / 1000, 3),
        p99: round(r.latency_us.p99 / 1000, 3),
        max: round(r.latency_us.max / 1000, 3),
      },
      errors: Object.values(detail).reduce((a, b) => a + b, 0),
      error_detail: detail,
    };
  }
  const requests = stdout.match(/(\d+) requests in ([\d.]+\w+)/);
  const rps = stdout.match(/Requests\/sec:\s+([\d.]+)/);
  const mean = stdout.match(/Latency\s+([\d.]+\w+)/);
  const max = stdout.match(/Latency\s+\S+\s+\S+\s+([\d.]+\w+)/);
  const at = (p: string) => stdout.match(new RegExp(`^\\s+${p}%\\s+([\\d.]+\\w+)`, "m"))?.[1] ?? "";
  if (!requests || !rps) throw new Error(`Could not read wrk's report:\n${stdout}`);
  const non2xx = Number(stdout.match(/Non-2xx or 3xx responses: (\d+)/)?.[1] ?? 0);
  const socket = stdout.match(/Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/);
  const socketErrors = socket ? socket.slice(1).map(Number).reduce((a, b) => a + b, 0) : 0;
  return {
    tool,
    connections,
    requests: Number(requests[1]),
    seconds: round(wrkDuration(requests[2]) / 1000, 3),
    requests_per_second: Number(rps[1]),
    latency_ms: {
      mean: wrkDuration(mean?.[1] ?? ""),
      p50: wrkDuration(at("50")),
      p90: wrkDuration(at("90")),
      p99: wrkDuration(at("99")),
      max: wrkDuration(max?.[1] ?? ""),
    },
    errors: non2xx + socketErrors,
    error_detail: { non_2xx: non2xx, socket: socketErrors },
  };
}

export interface WrkOptions {
  /** Origin of the server, e.g. http://127.0.0.1:8123. */
  origin: string;
  path: string;
  apiKey?: string;
  connections: number;
  seconds: number;
  /** First lead number of this run; runs must be at least 1,000,000 apart. */
  base: number;
  /** 0: one lead per request; N: {"leads": [N leads]}. */
  batch: number;
}

/** Runs wrk with ingest.lua against a server and returns what it measured. */
export async function runWrk(options: WrkOptions): Promise<LoadResult> {
  const threads = Math.min(2, options.connections);
  const tool = `wrk -t${threads} -c${options.connections} -d${options.seconds}s`;
  const { code, stdout, stderr } = await output("wrk", [
    `-t${threads}`,
    `-c${options.connections}`,
    `-d${options.seconds}s`,
    "--timeout",
    "30s",
    "--latency",
    "-s",
    SCRIPT,
    options.origin + options.path,
    "--",
    options.path,
    options.apiKey ?? "-",
    String(options.base),
    String(options.batch),
    String(threads),
  ]);
  if (code !== 0) throw new Error(`wrk failed (exit ${code}): ${stderr || stdout}`);
  return parseWrk(stdout, options.connections, tool);
}

/** libpq connection settings for pgbench from a postgres:// URL. */
function libpqEnv(url: string): Record<string, string> {
  const parsed = new URL(url);
  const env: Record<string, string> = {
    PGHOST: parsed.hostname,
    PGPORT: parsed.port || "5432",
    PGDATABASE: decodeURIComponent(parsed.pathname.slice(1)),
    PGUSER: decodeURIComponent(parsed.username || "postgres"),
    PGAPPNAME: "lead-platform-bench",
  };
  if (parsed.password) env.PGPASSWORD = decodeURIComponent(parsed.password);
  const sslmode = parsed.searchParams.get("sslmode");
  if (sslmode) env.PGSSLMODE = sslmode;
  return env;
}

export interface PgbenchOptions {
  url: string;
  /** A pgbench custom script file. */
  script: string;
  clients: number;
  seconds: number;
  /** Whether to log every transaction for percentiles (not needed for warm-ups). */
  log: boolean;
}

/**
 * Runs pgbench with a custom script (-n: no vacuum of pgbench's own tables; prepared statements, like
 * postgres.js). Percentiles come from its per-transaction log, since pgbench prints only the mean.
 */
export async function runPgbench(options: PgbenchOptions): Promise<LoadResult> {
  const threads = Math.min(2, options.clients);
  const logDir = await Deno.makeTempDir({ prefix: "lap-bench-pgbench-" });
  const args = [
    "-n",
    "-M",
    "prepared",
    "-T",
    String(options.seconds),
    "-c",
    String(options.clients),
    "-j",
    String(threads),
    "-f",
    options.script,
  ];
  if (options.log) args.push("-l", `--log-prefix=${logDir}/pgbench_log`);
  const tool = `pgbench -M prepared -T ${options.seconds} -c ${options.clients} -j ${threads}`;
  try {
    const { code, stdout, stderr } = await output("pgbench", args, {
      ...Deno.env.toObject(),
      ...libpqEnv(options.url),
    });
    if (code !== 0) throw new Error(`pgbench failed (exit ${code}): ${stderr || stdout}`);
    const tps = stdout.match(/tps = ([\d.]+) \(without initial connection time\)/);
    const processed = stdout.match(/number of transactions actually processed: (\d+)/);
    const failed = Number(stdout.match(/number of failed transactions: (\d+)/)?.[1] ?? 0);
    const mean = stdout.match(/latency average = ([\d.]+) ms/);
    if (!tps || !processed) throw new Error(`Could not read pgbench's report:\n${stdout}`);
    const latencies: number[] = [];
    if (options.log) {
      for await (const entry of Deno.readDir(logDir)) {
        const text = await Deno.readTextFile(`${logDir}/${entry.name}`);
        for (const line of text.split("\n")) {
          // client_id transaction_no latency_us script_no epoch_s epoch_us
          const fields = line.split(" ");
          if (fields.length >= 6) latencies.push(Number(fields[2]) / 1000);
        }
      }
    }
    latencies.sort((a, b) => a - b);
    const requests = Number(processed[1]);
    return {
      tool,
      connections: options.clients,
      requests,
      seconds: options.seconds,
      requests_per_second: round(Number(tps[1]), 1),
      latency_ms: {
        mean: round(Number(mean?.[1] ?? NaN), 3),
        p50: round(percentile(latencies, 50), 3),
        p90: round(percentile(latencies, 90), 3),
        p99: round(percentile(latencies, 99), 3),
        max: round(latencies.at(-1) ?? NaN, 3),
      },
      errors: failed,
    };
  } finally {
    await Deno.remove(logDir, { recursive: true });
  }
}

/** The first line of a program's version output, or why there is none. */
export async function toolVersion(command: string, args: string[]): Promise<string> {
  try {
    const { stdout, stderr } = await output(command, args);
    return (stdout || stderr).split("\n")[0].trim();
  } catch (error) {
    return `unavailable (${error instanceof Error ? error.message : String(error)})`;
  }
}
