/**
 * CPU accounting from /proc (Linux): the CPU time a server process, or the database's backends, used during
 * a run, and how busy the whole machine was. On a small machine that shows whether a throughput ceiling is
 * CPU (and whose) or waiting. Every function answers null where /proc is missing.
 */
import type { Sql } from "../../functions/_shared/db.ts";

let ticksPerSecond: number | undefined;

async function clockTicks(): Promise<number> {
  if (ticksPerSecond === undefined) {
    try {
      const { stdout } = await new Deno.Command("getconf", { args: ["CLK_TCK"], stdout: "piped" }).output();
      ticksPerSecond = Number(new TextDecoder().decode(stdout).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** User + system CPU seconds a process has used so far. */
export async function processCpuSeconds(pid: number): Promise<number | null> {
  try {
    const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
    // Fields after the command name, which is parenthesised and may contain spaces.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / await clockTicks();
  } catch {
    return null;
  }
}

/** The command name of a process ("postgres" for a PostgreSQL backend), or null when there is none. */
async function processName(pid: number): Promise<string | null> {
  try {
    return (await Deno.readTextFile(`/proc/${pid}/comm`)).trim();
  } catch {
    return null;
  }
}

/** Busy and total jiffies of all CPUs so far. */
export async function machineCpu(): Promise<{ busy: number; total: number } | null> {
  try {
    const line = (await Deno.readTextFile("/proc/stat")).split("\n")[0];
    const values = line.split(/\s+/).slice(1, 9).map(Number);
    const total = values.reduce((a, b) => a + b, 0);
    // idle and iowait are the 4th and 5th values.
    return { busy: total - values[3] - values[4], total };
  } catch {
    return null;
  }
}

/** Starts counting; stop() gives the machine's busy share (all cores) and the process's CPU seconds. */
export async function cpuMeter(pid?: number) {
  const machine = await machineCpu();
  const process = pid === undefined ? null : await processCpuSeconds(pid);
  return {
    stop: async (): Promise<{ machine_busy_pct: number | null; process_cpu_s: number | null }> => {
      const machineEnd = await machineCpu();
      const processEnd = pid === undefined ? null : await processCpuSeconds(pid);
      return {
        machine_busy_pct: machine && machineEnd && machineEnd.total > machine.total
          ? Math.round((1000 * (machineEnd.busy - machine.busy)) / (machineEnd.total - machine.total)) / 10
          : null,
        process_cpu_s: process !== null && processEnd !== null
          ? Math.round((processEnd - process) * 100) / 100
          : null,
      };
    },
  };
}

/**
 * Starts counting the CPU seconds of the benchmark database's backends (every connection to it, from any
 * process): every `everyMs` it reads from /proc the CPU time of each pid pg_stat_activity lists, so a backend
 * that connects during the run counts in full and one that leaves (pgbench's, at its end) counts up to its last
 * reading. Null when the database runs elsewhere: a pid that is not a postgres process here is somebody else's.
 */
export async function databaseCpuMeter(sql: Sql, everyMs = 100) {
  const read = async () => {
    const rows = await sql<{ pid: number }[]>`
      select pid from pg_stat_activity where datname = current_database()`;
    const seconds = new Map<number, number>();
    for (const { pid } of rows) {
      const used = await processName(pid) === "postgres" ? await processCpuSeconds(pid) : null;
      if (used !== null) seconds.set(pid, used);
    }
    return seconds;
  };
  const start = await read();
  const last = new Map(start);
  let running = true;
  const loop = (async () => {
    while (running) {
      await new Promise((resolve) => setTimeout(resolve, everyMs));
      for (const [pid, seconds] of await read()) last.set(pid, seconds);
    }
  })();
  return {
    /** CPU seconds the backends used since the start, or null when none could be read. */
    stop: async (): Promise<number | null> => {
      running = false;
      await loop;
      for (const [pid, seconds] of await read()) last.set(pid, seconds);
      if (last.size === 0) return null;
      let used = 0;
      for (const [pid, seconds] of last) used += seconds - (start.get(pid) ?? 0);
      return Math.round(used * 100) / 100;
    },
  };
}
