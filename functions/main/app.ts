/**
 * The local stack's router: serves every edge function under Supabase's URL layout
 * (/functions/v1/<name>/...) from one process, as Supabase's own edge runtime does with its main function.
 */
import { createApiApp } from "../api/app.ts";
import { createAuthApp } from "../auth/app.ts";
import { createIngestApp } from "../ingest/app.ts";
import type { Deps, FunctionBindings } from "../_shared/http.ts";
import { createWebhooksApp } from "../webhooks/app.ts";
import { createWorkerApp } from "../worker/app.ts";
import { jobHandlers } from "../worker/handlers.ts";
import { createWorker, type Worker } from "../worker/worker.ts";
import { wakeAfterWrites, workerWake } from "../_shared/worker_wake.ts";

type Handler = (request: Request, bindings: FunctionBindings) => Response | Promise<Response>;

/**
 * Routes /functions/v1/<name>/... to each function's app, with /docs and /openapi.json as shortcuts. The
 * worker function drains `worker` (a new one when not given). Every write that succeeded wakes `worker`, and
 * the worker function at WORKER_URL too when one is configured (a worker running in its own process).
 */
export function createLocalStack(
  deps: Deps,
  worker: Worker = createWorker(deps, jobHandlers()),
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const remote = workerWake(deps.config);
  const wake = () => {
    worker.nudge();
    remote?.();
  };
  const functions: Record<string, Handler> = {
    api: wakeAfterWrites(createApiApp(deps).fetch, wake),
    auth: wakeAfterWrites(createAuthApp(deps).fetch, wake),
    ingest: wakeAfterWrites(createIngestApp(deps).fetch, wake),
    webhooks: wakeAfterWrites(createWebhooksApp(deps).fetch, wake),
    worker: createWorkerApp(deps, worker).fetch,
  };
  return async (request, info) => {
    const url = new URL(request.url);
    if (url.pathname === "/docs") return Response.redirect(new URL("/functions/v1/api/docs", url), 302);
    if (url.pathname === "/openapi.json") {
      url.pathname = "/functions/v1/api/openapi.json";
      request = new Request(url, request);
    }
    const match = url.pathname.match(/^\/functions\/v1\/([a-z0-9-]+)(\/.*)?$/);
    const handler = match ? functions[match[1]] : undefined;
    if (!match || !handler) {
      return Response.json(
        {
          type: "https://lead-platform.dev/problems/function-not-found",
          title: "Not Found",
          status: 404,
          code: "function_not_found",
          detail: `No function serves ${url.pathname}; functions: ${Object.keys(functions).join(", ")}`,
        },
        { status: 404, headers: { "content-type": "application/problem+json" } },
      );
    }
    // The request goes over as it came: each function routes on it without /functions/v1 (functionPath), as
    // Supabase strips that prefix, and takes the client address from the socket where Supabase sets
    // X-Forwarded-For.
    const clientAddress = info?.remoteAddr.transport === "tcp" ? info.remoteAddr.hostname : undefined;
    return await handler(request, { clientAddress });
  };
}
