/**
 * The worker function: `POST /worker` drains a bounded batch of due work (dispatches outbox events, runs
 * jobs) and reports what it did (200). On Supabase, pg_cron calls it on a schedule (through pg_net) and the
 * other functions after their writes (functions/_shared/worker_wake.ts). Where the worker's polling loop
 * runs (the local stack, a long-running worker process), the loop does the work: the call only wakes it and
 * is answered 202 at once.
 *
 * Only the platform may call it: the service-role key (a JWT with role service_role signed with the
 * project's JWT secret) or the WORKER_SECRET in X-Worker-Secret. User tokens and anonymous calls get 401.
 */
import { jwtVerify } from "jose";
import { sameSecret } from "../_shared/auth.ts";
import { ApiError } from "../_shared/errors.ts";
import { createRouter, type Deps } from "../_shared/http.ts";
import type { Worker } from "./worker.ts";

async function isServiceRole(deps: Deps, authorization: string | undefined): Promise<boolean> {
  const token = authorization?.match(/^Bearer\s+(\S+)$/i)?.[1];
  if (!token) return false;
  try {
    const { payload } = await jwtVerify(token, new TextEncoder().encode(deps.config.secrets.jwt_secret), {
      algorithms: ["HS256"],
    });
    return payload.role === "service_role";
  } catch {
    return false;
  }
}

/** Builds the worker function's app around a worker, for production and tests alike. */
export function createWorkerApp(deps: Deps, worker: Worker) {
  const app = createRouter("/worker", deps.config);
  app.post("/", async (c) => {
    const secret = c.req.header("x-worker-secret");
    const allowed = await isServiceRole(deps, c.req.header("authorization")) ||
      (secret !== undefined && deps.config.secrets.worker_secret !== undefined &&
        await sameSecret(secret, deps.config.secrets.worker_secret));
    if (!allowed) {
      throw new ApiError(
        401,
        "worker_unauthorized",
        "Call the worker with the service-role key or the worker secret",
      );
    }
    if (worker.polling) {
      worker.nudge();
      return c.json({ woken: true }, 202);
    }
    return c.json(await worker.drain(), 200);
  });
  return app;
}
