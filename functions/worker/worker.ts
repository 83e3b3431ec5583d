/**
 * The worker: dispatches outbox events, claims due jobs and runs their handlers. One implementation serves
 * both ways of running it: `drain()` empties a bounded batch and returns (the `worker` edge function, which
 * pg_cron calls on Supabase), and `start()` loops with adaptive polling (the local stack). Any number of
 * workers may run at once; the queue's SKIP LOCKED claims and leases keep them apart.
 */
import type { Config } from "../_shared/config.ts";
import type { Sql } from "../_shared/db.ts";
import { log } from "../_shared/http.ts";
import {
  backoffSeconds,
  claimJobs,
  completeJobs,
  dispatchEvents,
  failJob,
  flushLeadSearchIndex,
  type Job,
  pruneExpired,
  releaseJobs,
  routeWebhookInbox,
  schedulePeriodicJobs,
} from "./queue.ts";

/** What a handler gets besides its job. */
export interface JobContext {
  sql: Sql;
  config: Config;
  workerId: string;
}

/** Runs one job; the value it returns is stored as the job's result. Throw JobError to steer retries. */
export type JobHandler = (job: Job, context: JobContext) => Promise<unknown>;

/**
 * A failure a handler understands: `permanent` ones are dead at once (retrying cannot help), others retry
 * after `retryAfterSeconds` when given (a 429's Retry-After), else after the configured backoff.
 */
export class JobError extends Error {
  constructor(
    message: string,
    readonly options: { code: string; permanent?: boolean; retryAfterSeconds?: number },
  ) {
    super(message);
  }
}

export interface DrainStats {
  dispatched: number;
  claimed: number;
  succeeded: number;
  retried: number;
  dead: number;
}

export interface Worker {
  readonly id: string;
  /** Runs until nothing is due, `maxJobs` were claimed or `maxMs` passed; returns what it did. */
  drain(options?: { maxJobs?: number; maxMs?: number }): Promise<DrainStats>;
  /** Starts the polling loop (idempotent). */
  start(): void;
  /** True while the polling loop runs (started and not stopping). */
  readonly polling: boolean;
  /** Wakes the loop now, e.g. right after a request wrote events. */
  nudge(): void;
  /** Stops claiming, lets in-flight jobs finish within the grace period and releases the rest. */
  stop(): Promise<void>;
}

/**
 * Builds a worker over the given database and handlers (keyed by job kind). `clients` (a list, or a function
 * read at every claim) dedicates it to some clients' jobs; it still dispatches every event.
 */
export function createWorker(
  deps: { sql: Sql; config: Config },
  handlers: Record<string, JobHandler>,
  options: { id?: string; clients?: string[] | (() => string[]) } = {},
): Worker {
  const id = options.id ?? `worker-${crypto.randomUUID().slice(0, 8)}`;
  const { sql, config } = deps;
  const context: JobContext = { sql, config, workerId: id };
  const kinds = Object.keys(handlers);
  const refillAt = Math.floor(config.queue.concurrency / 2);
  const inFlight = new Map<number, Promise<void>>();
  const finished: Array<{ id: number; attempt: number; result: unknown }> = [];
  const stats = emptyStats();
  let wake: (() => void) | undefined;
  let nudged = false;
  let loop: Promise<void> | undefined;
  let stopping = false;
  // Periodic jobs are enqueued at most once a minute per worker (their keys make every worker agree), and
  // retention is checked as often (the database runs a pass only when one is due).
  let scheduledAt = -Infinity;
  let housekeptAt = -Infinity;
  let flushedAt = -Infinity;
  let flushing: Promise<void> | undefined;
  let pruning: Promise<void> | undefined;

  function emptyStats(): DrainStats {
    return { dispatched: 0, claimed: 0, succeeded: 0, retried: 0, dead: 0 };
  }

  function nudge() {
    if (wake) wake();
    else nudged = true;
  }

  /**
   * Waits for a nudge, a finished job or the timeout, whichever comes first. A nudge that came while the
   * loop was busy (no one waiting) is kept, so it is not lost and the next pause returns at once.
   */
  function pause(ms: number): Promise<void> {
    if (nudged) {
      nudged = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        wake = undefined;
        resolve();
      }
      wake = done;
    });
  }

  async function run(job: Job) {
    try {
      const result = await handlers[job.kind](job, context);
      finished.push({ id: job.id, attempt: job.attempts, result: result ?? null });
    } catch (error) {
      const known = error instanceof JobError ? error.options : undefined;
      const permanent = known?.permanent ?? false;
      const retrySeconds = known?.retryAfterSeconds ?? backoffSeconds(config, job.attempts);
      const message = error instanceof Error ? error.message : String(error);
      const status = await failJob(
        sql,
        id,
        job,
        { message, code: known?.code ?? "error" },
        retrySeconds,
        permanent,
      )
        .catch((failure) => {
          // The lease will expire and the job come back; nothing is lost.
          log("error", "job failure not recorded", { job_id: job.id, error: String(failure) });
          return null;
        });
      if (status === "dead") stats.dead++;
      else if (status === "queued") stats.retried++;
      log(status === "dead" ? "error" : "warn", "job failed", {
        worker_id: id,
        job_id: job.id,
        kind: job.kind,
        client_id: job.client_id,
        attempt: job.attempts,
        status,
        code: known?.code,
        error: message,
      });
    } finally {
      inFlight.delete(job.id);
      // Refill in batches: a round per finished job would cost three queries per job.
      if (inFlight.size <= refillAt) nudge();
    }
  }

  async function flushCompletions() {
    if (finished.length === 0) return;
    const batch = finished.splice(0, finished.length);
    try {
      stats.succeeded += (await completeJobs(sql, id, batch)).length;
    } catch (error) {
      // Not recorded: the leases expire and the jobs run again (handlers are idempotent).
      log("error", "job completions not recorded", {
        worker_id: id,
        jobs: batch.length,
        error: String(error),
      });
    }
  }

  /** Runs a retention pass if one is due, in the background: a long pass must not hold back dispatch. */
  function prune() {
    pruning ??= pruneExpired(sql, config)
      .then(
        (pruned) => {
          if (pruned && Object.values(pruned).some((count) => typeof count === "number" && count > 0)) {
            log("info", "retention pass deleted expired records", { worker_id: id, ...pruned });
          }
        },
        (error) => log("error", "retention pass failed", { worker_id: id, error: String(error) }),
      )
      .finally(() => pruning = undefined);
  }

  /**
   * Turns new events into jobs: the outbox, the webhook inbox and (once a minute) the periodic jobs and the
   * retention check; starts merging the lead search index's pending entries when due. Returns how many
   * events became work.
   */
  async function housekeeping(): Promise<number> {
    housekeptAt = performance.now();
    const dispatched = await dispatchEvents(sql, config);
    stats.dispatched += dispatched;
    const routed = await routeWebhookInbox(sql, config);
    if (performance.now() - scheduledAt >= 60_000) {
      scheduledAt = performance.now();
      await schedulePeriodicJobs(sql, config);
      prune();
    }
    if (!flushing && performance.now() - flushedAt >= config.queue.search_flush_interval_ms) {
      flushedAt = performance.now();
      // Not awaited: a long merge must not hold back dispatch and claims.
      flushing = flushLeadSearchIndex(sql)
        .then(
          () => {},
          (error) => log("error", "search index merge failed", { worker_id: id, error: String(error) }),
        )
        .finally(() => flushing = undefined);
    }
    return dispatched + routed;
  }

  /**
   * One round: record finished jobs, then claim into free slots while (at most every dispatch interval)
   * new events become jobs on another connection, so a busy worker never waits for that bookkeeping before
   * claiming. Jobs made this round are claimed by the next.
   */
  async function round(claimLimit: number): Promise<{ claimed: number; produced: number }> {
    const housekeepingDue = performance.now() - housekeptAt >= config.queue.dispatch_interval_ms;
    const free = Math.min(config.queue.concurrency - inFlight.size, claimLimit);
    const clients = typeof options.clients === "function" ? options.clients() : options.clients ?? null;
    // Completions first: they free the client's running slots that the claim counts against its cap.
    await flushCompletions();
    const [produced, jobs] = await Promise.all([
      housekeepingDue ? housekeeping() : 0,
      free > 0 ? claimJobs(sql, config, id, free, kinds, clients) : [],
    ]);
    stats.claimed += jobs.length;
    for (const job of jobs) inFlight.set(job.id, run(job));
    return { claimed: jobs.length, produced };
  }

  async function drain(options: { maxJobs?: number; maxMs?: number } = {}): Promise<DrainStats> {
    const maxJobs = options.maxJobs ?? config.queue.drain_max_jobs;
    const deadline = performance.now() + (options.maxMs ?? config.queue.drain_max_ms);
    const before = { ...stats };
    let claimed = 0;
    housekeptAt = -Infinity;
    while (!stopping && claimed < maxJobs && performance.now() < deadline) {
      const { claimed: got, produced } = await round(maxJobs - claimed);
      claimed += got;
      if (got === 0 && produced === 0 && inFlight.size === 0) break;
      if (got === 0 && produced > 0) housekeptAt = -Infinity;
      else if (got === 0) await Promise.race(inFlight.values());
      // Claim again once half the slots are free: one claim per finished job would cost a query per job.
      while (inFlight.size > refillAt) await Promise.race(inFlight.values());
    }
    await Promise.all(inFlight.values());
    await flushCompletions();
    await Promise.all([flushing, pruning]);
    return {
      dispatched: stats.dispatched - before.dispatched,
      claimed: stats.claimed - before.claimed,
      succeeded: stats.succeeded - before.succeeded,
      retried: stats.retried - before.retried,
      dead: stats.dead - before.dead,
    };
  }

  async function poll() {
    let delay = config.queue.poll_min_ms;
    while (!stopping) {
      let got = 0;
      try {
        const result = await round(config.queue.concurrency);
        got = result.claimed + result.produced;
      } catch (error) {
        // The database restarting or unreachable: keep polling, slower.
        log("error", "worker round failed", { worker_id: id, error: String(error) });
        delay = config.queue.poll_max_ms;
      }
      if (got > 0) {
        delay = config.queue.poll_min_ms;
        if (inFlight.size > refillAt) await pause(config.queue.poll_max_ms);
        continue;
      }
      await pause(delay);
      if (inFlight.size === 0) delay = Math.min(delay * 2, config.queue.poll_max_ms);
    }
  }

  async function stop() {
    if (stopping) return;
    stopping = true;
    nudge();
    await loop;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise((resolve) => timer = setTimeout(resolve, config.queue.shutdown_grace_ms));
    await Promise.race([Promise.all(inFlight.values()), grace]);
    clearTimeout(timer);
    await flushCompletions();
    await Promise.all([flushing, pruning]);
    const unfinished = [...inFlight.keys()];
    if (unfinished.length) {
      const released = await releaseJobs(sql, id, unfinished).catch(() => 0);
      log("warn", "worker released unfinished jobs", { worker_id: id, released });
    }
  }

  return {
    id,
    drain,
    start() {
      loop ??= poll();
    },
    get polling() {
      return loop !== undefined && !stopping;
    },
    nudge,
    stop,
  };
}
