/** Serves the webhooks function alone, as Supabase deploys it (verify_jwt = false: Meta signs its calls). */
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { createWebhooksApp } from "./app.ts";

if (import.meta.main) {
  const config = loadConfig();
  Deno.serve(createWebhooksApp({ config, sql: connectDatabase(config) }).fetch);
}
