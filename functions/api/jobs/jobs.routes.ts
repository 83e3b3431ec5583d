import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

export const JOB_STATUSES = ["queued", "running", "succeeded", "dead", "cancelled"] as const;

/**
 * A job id as a path parameter: a positive integer (the bigint identity of app.jobs), at most 15 digits so
 * it stays an exact JavaScript number.
 */
export const jobIdSchema = z.string().regex(/^[1-9][0-9]{0,14}$/, "Use a job id: a positive integer")
  .transform(Number).openapi({ type: "integer", minimum: 1, example: 42 });

const jobErrorSchema = z.looseObject({
  attempt: z.number().int(),
  at: timestamp,
  message: z.string(),
  code: z.string().optional(),
}).openapi("JobError", { description: "One failed attempt" });

export const jobSchema = z.object({
  id: z.number().int(),
  client_id: clientIdSchema,
  kind: z.string().openapi({ example: "webhook.deliver" }),
  status: z.enum(JOB_STATUSES),
  attempts: z.number().int().openapi({ description: "Attempts made so far" }),
  max_attempts: z.number().int().openapi({ description: "The job is dead after this many failed attempts" }),
  run_at: timestamp.openapi({ description: "When a queued job is next due" }),
  created_at: timestamp,
  updated_at: timestamp,
  finished_at: timestamp.nullable(),
  last_error: jobErrorSchema.nullable().openapi({ description: "The latest failed attempt, if any" }),
}).openapi("Job");

export const jobDetailSchema = jobSchema.extend({
  idempotency_key: z.string().openapi({
    description: "One job per effect: event:<event id>:<action>[:<target>]",
  }),
  payload: z.unknown().nullable().openapi({
    description: "What the job works on; null when payload_visible is false",
  }),
  result: z.unknown().nullable().openapi({ description: "What a finished job returned; null likewise" }),
  payload_visible: z.boolean().openapi({
    description: "Payloads and results can carry lead data (a webhook's lead snapshot), so they are shown " +
      "only to callers whose role sees every record of the client (scope client)",
  }),
  errors: z.array(jobErrorSchema).openapi({ description: "Every failed attempt, oldest first" }),
  locked_by: z.string().nullable().openapi({ description: "The worker running the job" }),
  locked_until: timestamp.nullable().openapi({ description: "End of the running worker's lease" }),
}).openapi("JobDetail");

const clientParams = z.object({ clientId: clientIdSchema });
const jobParams = z.object({ clientId: clientIdSchema, jobId: jobIdSchema });

export const listJobs = apiRoute({
  method: "get",
  path: "/clients/{clientId}/jobs",
  tags: ["Jobs"],
  summary: "List a client's background jobs, newest first",
  permission: "jobs.read",
  request: {
    params: clientParams,
    query: pageQuery.extend({
      status: z.enum(JOB_STATUSES).optional(),
      kind: z.string().regex(/^[a-z][a-z0-9_.]{0,62}$/, "Use a job kind such as webhook.deliver").optional()
        .openapi({ example: "webhook.deliver" }),
    }),
  },
  responses: { 200: jsonResponse(pageOf(jobSchema), "A page of jobs (payloads in the detail only)") },
});

export const getJob = apiRoute({
  method: "get",
  path: "/clients/{clientId}/jobs/{jobId}",
  tags: ["Jobs"],
  summary: "Read a job with its payload, result and every error",
  permission: "jobs.read",
  request: { params: jobParams },
  responses: { 200: jsonResponse(jobDetailSchema, "The job") },
});

export const retryJob = apiRoute({
  method: "post",
  path: "/clients/{clientId}/jobs/{jobId}/retry",
  tags: ["Jobs"],
  summary: "Run a dead, cancelled or waiting job again now, with a fresh set of attempts",
  description:
    "The job keeps its id, payload and error history; its attempt budget grows by the configured " +
    "maximum. A queued job waiting for its backoff runs at once. A running job (it may still succeed) and " +
    "a succeeded one (running it again would repeat its effect) are refused with 409.",
  permission: "jobs.manage",
  request: { params: jobParams },
  responses: {
    200: jsonResponse(jobDetailSchema, "The job, queued to run now"),
    409: problem(
      "The job is running (job_running), has succeeded (job_succeeded) or has used up every attempt a job " +
        "may have (job_retry_limit)",
    ),
  },
});

export const cancelJob = apiRoute({
  method: "post",
  path: "/clients/{clientId}/jobs/{jobId}/cancel",
  tags: ["Jobs"],
  summary: "Cancel a queued or dead job so it never runs (cancelling twice keeps the first time)",
  description: "A queued job will not run; a dead one is set aside. A running job cannot be stopped " +
    "midway and a succeeded one has nothing left to cancel: both are refused with 409. Cancelling a " +
    "cancelled job answers 200 with the job unchanged.",
  permission: "jobs.manage",
  request: { params: jobParams },
  responses: {
    200: jsonResponse(jobDetailSchema, "The cancelled job"),
    409: problem("The job is running (job_running) or has succeeded (job_succeeded)"),
  },
});

export const routes = [listJobs, getJob, retryJob, cancelJob];
