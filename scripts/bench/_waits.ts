/**
 * What the database's backends were doing during a load run, sampled from pg_stat_activity: on CPU, waiting
 * for a lock held by another transaction, for the WAL to reach disk, or idle inside a transaction. It shows
 * where a throughput ceiling comes from without a profiler.
 */
import type { Sql } from "../../functions/_shared/db.ts";

export interface WaitProfile {
  samples: number;
  /** Mean number of backends of the benchmark database that were active (or idle in a transaction). */
  mean_active_backends: number;
  /** Share of backend samples per state: "CPU" (active, no wait event) or "<wait type>:<event>". */
  top: Array<{ event: string; share: number }>;
}

/** Samples every `everyMs` until stop() is called, which returns the profile. */
export function sampleWaits(sql: Sql, everyMs = 100): { stop(): Promise<WaitProfile> } {
  const counts = new Map<string, number>();
  let samples = 0;
  let backends = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      const rows = await sql<{ event: string; n: number }[]>`
        select case when state = 'idle in transaction' then 'Client:idle in transaction'
                    else coalesce(wait_event_type || ':' || wait_event, 'CPU') end as event,
               count(*)::int as n
        from pg_stat_activity
        where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'
          and state in ('active', 'idle in transaction')
        group by 1`;
      samples++;
      for (const row of rows) {
        counts.set(row.event, (counts.get(row.event) ?? 0) + row.n);
        backends += row.n;
      }
      await new Promise((resolve) => setTimeout(resolve, everyMs));
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      const top = [...counts.entries()]
        .sort((a, b) => b[1] - a[1])
        .slice(0, 5)
        .map(([event, n]) => ({ event, share: Math.round((1000 * n) / Math.max(1, backends)) / 10 }));
      return {
        samples,
        mean_active_backends: Math.round((100 * backends) / Math.max(1, samples)) / 100,
        top,
      };
    },
  };
}

/** "CPU 45%, Lock:transactionid 30% (12.3 active)". */
export function describeWaits(profile: WaitProfile | undefined): string {
  if (!profile || !profile.samples) return "n/a";
  const events = profile.top.map((e) => `${e.event} ${e.share}%`).join(", ") || "nothing active";
  return `${events} (mean ${profile.mean_active_backends} active backends)`;
}
