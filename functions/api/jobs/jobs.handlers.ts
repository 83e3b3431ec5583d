import { type RouteHandler, z } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor } from "../../_shared/http.ts";
import * as queries from "./jobs.queries.ts";
import type * as routes from "./jobs.routes.ts";

const jobNotFound = (id: number) => new ApiError(404, "job_not_found", `Job ${id} was not found`);

/** Why a running or succeeded job cannot be retried or cancelled. */
function refused(action: "retried" | "cancelled", id: number, status: queries.JobStatus): ApiError {
  return status === "running"
    ? new ApiError(
      409,
      "job_running",
      `Job ${id} is running and cannot be ${action} now; try again when it ends`,
    )
    : new ApiError(409, "job_succeeded", `Job ${id} has succeeded and cannot be ${action}`);
}

/** The job as the caller may see it: payload and result only for callers who see the whole client. */
async function visibleDetail(
  c: Parameters<RouteHandler<typeof routes.getJob, AppEnv>>[0],
  clientId: string,
  job: queries.JobDetailRow,
) {
  const visible = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.seesWholeClient(tx, clientId),
  );
  return visible
    ? { ...job, payload_visible: true }
    : { ...job, payload: null, result: null, payload_visible: false };
}

const cursorShape = z.tuple([z.number().int().positive()]);

export const listJobs: RouteHandler<typeof routes.listJobs, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { limit, cursor, status, kind } = c.req.valid("query");
  const before = cursor ? decodeCursor(cursor, cursorShape)[0] : undefined;
  const { rows, more } = await queries.listJobs(c.get("deps").sql, clientId, { status, kind }, {
    limit,
    before,
  });
  return c.json({ data: rows, next_cursor: more ? encodeCursor([rows[rows.length - 1].id]) : null }, 200);
};

export const getJob: RouteHandler<typeof routes.getJob, AppEnv> = async (c) => {
  const { clientId, jobId } = c.req.valid("param");
  const job = await queries.findJob(c.get("deps").sql, clientId, jobId);
  if (!job) throw jobNotFound(jobId);
  return c.json(await visibleDetail(c, clientId, job), 200);
};

export const retryJob: RouteHandler<typeof routes.retryJob, AppEnv> = async (c) => {
  const { clientId, jobId } = c.req.valid("param");
  const { config, sql } = c.get("deps");
  let change: queries.JobChange;
  try {
    change = await queries.retryJob(sql, clientId, jobId, config.queue.max_attempts);
  } catch (error) {
    // Each retry adds a full set of attempts; app.jobs caps a job's attempts (jobs_max_attempts_check).
    if ((error as { constraint_name?: string }).constraint_name === "jobs_max_attempts_check") {
      throw new ApiError(
        409,
        "job_retry_limit",
        `Job ${jobId} has used up the attempts a job may have and cannot be retried again`,
      );
    }
    throw error;
  }
  if (change.outcome === "not_found") throw jobNotFound(jobId);
  if (change.outcome === "refused") throw refused("retried", jobId, change.status);
  return c.json(await visibleDetail(c, clientId, change.job), 200);
};

export const cancelJob: RouteHandler<typeof routes.cancelJob, AppEnv> = async (c) => {
  const { clientId, jobId } = c.req.valid("param");
  const change = await queries.cancelJob(c.get("deps").sql, clientId, jobId);
  if (change.outcome === "not_found") throw jobNotFound(jobId);
  if (change.outcome === "refused") throw refused("cancelled", jobId, change.status);
  return c.json(await visibleDetail(c, clientId, change.job), 200);
};
