/**
 * The platform as the benchmark drives it: every edge function (createLocalStack) in its own Deno process,
 * so the load generator and the benchmark's own work never share its event loop.
 *
 *   DATABASE_URL=... BENCH_PORT=0 BENCH_POOL=20 LOG_LEVEL=error deno run -A scripts/bench/platform_server.ts
 *
 * Prints "listening <port>" once it accepts requests; stops on SIGTERM.
 */
import { loadConfig } from "../../functions/_shared/config.ts";
import { createDb } from "../../functions/_shared/db.ts";
import { createLocalStack } from "../../functions/main/app.ts";

if (import.meta.main) {
  // The port is the benchmark's (BENCH_PORT, 0 for any free one), which config.toml's validation refuses.
  const { PORT: _port, ...env } = Deno.env.toObject();
  const config = loadConfig(env);
  if (!config.database.url) throw new Error("DATABASE_URL is not set");
  const sql = createDb(config.database.url, { max: Number(Deno.env.get("BENCH_POOL") ?? "20") });
  const server = Deno.serve({
    port: Number(Deno.env.get("BENCH_PORT") ?? "0"),
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`listening ${port}`),
  }, createLocalStack({ config, sql }));
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    await sql.end({ timeout: 2 });
    Deno.exit(0);
  });
}
