/**
 * Waking the worker after a write. A lead's events (greeting, webhooks, notifications) are committed to the
 * outbox with the lead; the worker turns them into work when it next runs. On Supabase it runs when called:
 * pg_cron calls it every minute, so without a wake-up a lead could wait a minute for its WhatsApp greeting.
 * Every function therefore calls the worker function after a successful write, once the response is on its
 * way (the write has committed by then). The call is a hint: the outbox row is the source of truth and the
 * cron call the safety net, so a failed call is logged and dropped.
 */
import { SignJWT } from "jose";
import type { Config } from "./config.ts";
import { log } from "./http.ts";

/** Asks the worker to look for new work soon; returns at once and never throws. */
export type Wake = () => void;

type Handler<B extends unknown[]> = (request: Request, ...rest: B) => Response | Promise<Response>;

const WRITES = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/** Wraps a function's handler: a successful write (POST, PUT, PATCH or DELETE answered 2xx) wakes the worker. */
export function wakeAfterWrites<B extends unknown[]>(
  handler: Handler<B>,
  wake: Wake,
): (request: Request, ...rest: B) => Promise<Response> {
  return async (request, ...rest) => {
    const response = await handler(request, ...rest);
    if (WRITES.has(request.method) && response.status >= 200 && response.status < 300) wake();
    return response;
  };
}

/** Supabase's edge runtime stops an instance once its responses are sent unless a promise is handed over. */
function keepAlive(task: Promise<void>) {
  (globalThis as { EdgeRuntime?: { waitUntil(promise: Promise<unknown>): void } }).EdgeRuntime?.waitUntil(
    task,
  );
}

/**
 * Calls the worker function (config.urls.worker) with a service-role token signed with the platform's JWT
 * secret, as pg_cron's call is authorised. At most one call is in flight, and calls start at least
 * `queue.wake_interval_ms` apart: wakes in between are folded into one call that starts when both allow, so
 * every write is followed by a call that started after it, and a busy function makes a few calls a second,
 * not one per request. Undefined when no worker URL is configured.
 */
export function workerWake(config: Config): Wake | undefined {
  const url = config.urls.worker;
  if (!url) return undefined;
  const interval = config.queue.wake_interval_ms;
  const secret = new TextEncoder().encode(config.secrets.jwt_secret);
  let token: { value: string; renewAt: number } | undefined;
  let running = false;
  let wanted = false;
  let lastStart = -Infinity;

  async function authorization(): Promise<string> {
    if (!token || Date.now() >= token.renewAt) {
      const value = await new SignJWT({ role: "service_role" })
        .setProtectedHeader({ alg: "HS256", typ: "JWT" })
        .setIssuedAt()
        .setExpirationTime("10m")
        .sign(secret);
      token = { value, renewAt: Date.now() + 5 * 60_000 };
    }
    return `Bearer ${token.value}`;
  }

  async function callWorker(authorizationHeader: string) {
    try {
      const response = await fetch(url!, {
        method: "POST",
        headers: { authorization: authorizationHeader, "content-type": "application/json" },
        body: "{}",
        // A worker call drains at most drain_max_ms; past that it is not a wake-up any more.
        signal: AbortSignal.timeout(config.queue.drain_max_ms + 10_000),
      });
      await response.body?.cancel();
      if (!response.ok) log("warn", "worker wake-up refused", { status: response.status });
    } catch (error) {
      log("warn", "worker wake-up failed", { error: String(error) });
    }
  }

  async function run() {
    while (wanted) {
      const wait = lastStart + interval - performance.now();
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
      wanted = false;
      // Timed from when the request leaves, so signing a new token does not eat into the interval.
      const header = await authorization();
      lastStart = performance.now();
      await callWorker(header);
    }
    running = false;
  }

  return () => {
    wanted = true;
    if (running) return;
    running = true;
    keepAlive(run());
  };
}

/** Serves one function alone, as Supabase deploys it, waking the worker after its writes when configured. */
export function serveWithWake(
  config: Config,
  handler: (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
  options: Deno.ServeTcpOptions = {},
): Deno.HttpServer<Deno.NetAddr> {
  const wake = workerWake(config);
  return Deno.serve(options, wake ? wakeAfterWrites(handler, wake) : handler);
}
