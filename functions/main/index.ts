/**
 * `deno task dev`: the whole platform on one machine. Uses DATABASE_URL, or starts the embedded
 * PostgreSQL under .data/; migrates and seeds the demo data; serves every function on PORT (8000) and runs
 * the background worker's polling loop in the same process.
 */
import { SignJWT } from "jose";
import { startEmbeddedPostgres } from "../../scripts/embedded_postgres.ts";
import { loadLocalEnv } from "../../scripts/local_env.ts";
import { migrate } from "../../scripts/migrate.ts";
import { loadConfig } from "../_shared/config.ts";
import { connectDatabase } from "../_shared/db.ts";
import { log } from "../_shared/http.ts";
import { jobHandlers } from "../worker/handlers.ts";
import { createWorker } from "../worker/worker.ts";
import { createLocalStack } from "./app.ts";

/**
 * Stops with a clear message when the port is taken (most often a second `./run dev` beside a running one),
 * before the database is started or migrated.
 */
function ensurePortFree(port: number) {
  try {
    Deno.listen({ hostname: "0.0.0.0", port }).close();
  } catch (error) {
    if (!(error instanceof Deno.errors.AddrInUse)) throw error;
    console.error(
      `Port ${port} is already in use: is the platform already running? Stop it, or start this one on ` +
        `another port with PORT=<port>.`,
    );
    Deno.exit(1);
  }
}

if (import.meta.main) {
  loadLocalEnv();
  const config = loadConfig();
  ensurePortFree(config.server.port);
  let url = config.database.url;
  let embedded: Awaited<ReturnType<typeof startEmbeddedPostgres>> | undefined;
  if (!url) {
    embedded = await startEmbeddedPostgres({
      dataDir: config.database.embedded_data_dir,
      port: config.database.embedded_port,
    });
    url = embedded.url;
    log("info", "embedded PostgreSQL started", { port: embedded.port, data_dir: embedded.dataDir });
  }
  await migrate(url, { seed: config.env !== "production", quiet: true });
  const sql = connectDatabase(config, url);
  const worker = createWorker({ config, sql }, jobHandlers());
  worker.start();
  // The anon key is what supabase-js sends before anyone logs in: a JWT with role anon.
  const anonKey = await new SignJWT({ role: "anon", iss: "supabase" })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setIssuedAt()
    .setExpirationTime("10y")
    .sign(new TextEncoder().encode(config.secrets.jwt_secret));

  const server = Deno.serve({
    port: config.server.port,
    hostname: "0.0.0.0",
    onListen: ({ port }) => {
      const base = `http://localhost:${port}`;
      console.log([
        "",
        `Lead Automation Platform is running at ${base}/functions/v1/<function>`,
        `  health   ${base}/functions/v1/api/health`,
        `  docs     ${base}/docs`,
        `  anon key ${anonKey}`,
        `  demo logins (password "demo-password"): admin@demo.test (platform admin), owner@acme.test,`,
        `    manager@acme.test, agent@acme.test, owner@globex.test`,
        "",
      ].join("\n"));
    },
  }, createLocalStack({ config, sql }, worker));

  const shutdown = async () => {
    await server.shutdown();
    await worker.stop();
    await sql.end({ timeout: 5 });
    await embedded?.stop();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
}
