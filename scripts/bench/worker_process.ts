/**
 * A worker in its own process, as the benchmark runs several: the platform's worker (every job handler) with
 * its polling loop, against DATABASE_URL, and the worker function on BENCH_PORT (0 for any free one), which
 * the platform server calls after its writes to wake the loop (WORKER_URL). Prints "listening <port>" once
 * running (the benchmark's start signal); stops gracefully on SIGTERM.
 */
import { loadConfig } from "../../functions/_shared/config.ts";
import { createDb } from "../../functions/_shared/db.ts";
import { createWorkerApp } from "../../functions/worker/app.ts";
import { jobHandlers } from "../../functions/worker/handlers.ts";
import { createWorker } from "../../functions/worker/worker.ts";

if (import.meta.main) {
  const { PORT: _port, ...env } = Deno.env.toObject();
  const config = loadConfig(env);
  if (!config.database.url) throw new Error("DATABASE_URL is not set");
  const sql = createDb(config.database.url, {
    max: Number(Deno.env.get("BENCH_POOL") ?? "8"),
    asynchronousCommit: Deno.env.get("BENCH_ASYNC") === "1",
  });
  const worker = createWorker({ config, sql }, jobHandlers());
  worker.start();
  const server = Deno.serve({
    port: Number(Deno.env.get("BENCH_PORT") ?? "0"),
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`listening ${port}`),
  }, createWorkerApp({ config, sql }, worker).fetch);
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    await worker.stop();
    await sql.end({ timeout: 2 });
    Deno.exit(0);
  });
}
