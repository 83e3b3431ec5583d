/**
 * Jobs service: a client's background jobs (greetings, sheet appends, webhook deliveries) for its admins:
 * list and read under jobs.read, retry and cancel under jobs.manage.
 */
import { createModule } from "../routing.ts";
import * as handlers from "./jobs.handlers.ts";
import * as routes from "./jobs.routes.ts";

export const jobsRoutes = routes.routes;

export function jobsModule() {
  return createModule()
    .openapi(routes.listJobs, handlers.listJobs)
    .openapi(routes.getJob, handlers.getJob)
    .openapi(routes.retryJob, handlers.retryJob)
    .openapi(routes.cancelJob, handlers.cancelJob);
}
