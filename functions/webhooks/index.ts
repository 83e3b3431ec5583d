/** Serves the webhooks function alone, as Supabase deploys it (verify_jwt = false: Meta signs its calls). */
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { serveWithWake } from "../_shared/worker_wake.ts";
import { createWebhooksApp } from "./app.ts";

if (import.meta.main) {
  const config = loadConfig();
  serveWithWake(config, createWebhooksApp({ config, sql: connectDatabase(config) }).fetch);
}
