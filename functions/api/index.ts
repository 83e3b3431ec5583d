/** Serves the api function alone, as Supabase deploys it. */
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { createApiApp } from "./app.ts";

if (import.meta.main) {
  const config = loadConfig();
  Deno.serve(createApiApp({ config, sql: connectDatabase(config) }).fetch);
}
