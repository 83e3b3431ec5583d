/** Serves the worker function alone, as Supabase deploys it (pg_cron calls POST /worker). */
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { createWorkerApp } from "./app.ts";
import { jobHandlers } from "./handlers.ts";
import { createWorker } from "./worker.ts";

if (import.meta.main) {
  const config = loadConfig();
  const sql = connectDatabase(config);
  Deno.serve(createWorkerApp({ config, sql }, createWorker({ config, sql }, jobHandlers())).fetch);
}
