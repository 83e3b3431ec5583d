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

type Handler = (request: Request, bindings: FunctionBindings) => Response | Promise<Response>;

/**
 * Routes /functions/v1/<name>/... to each function's app, with /docs and /openapi.json as shortcuts. The
 * worker function drains `worker` (a new one when not given); every write that succeeded nudges it, which is
 * the local stand-in for an after-commit wake-up (the response is sent after the commit).
 */
export function createLocalStack(
  deps: Deps,
  worker: Worker = createWorker(deps, jobHandlers()),
): (request: Request, info?: Deno.ServeHandlerInfo) => Promise<Response> {
  const functions: Record<string, Handler> = {
    api: createApiApp(deps).fetch,
    auth: createAuthApp(deps).fetch,
    ingest: createIngestApp(deps).fetch,
    webhooks: createWebhooksApp(deps).fetch,
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
    const response = await handler(request, { clientAddress });
    if (request.method !== "GET" && response.status < 300) worker.nudge();
    return response;
  };
}
