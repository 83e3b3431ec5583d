/** Serves the api function alone, as Supabase deploys it. */
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { serveWithWake } from "../_shared/worker_wake.ts";
import { createApiApp } from "./app.ts";

if (import.meta.main) {
  const config = loadConfig();
  serveWithWake(config, createApiApp({ config, sql: connectDatabase(config) }).fetch);
}
