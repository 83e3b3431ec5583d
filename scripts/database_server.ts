/**
 * Which PostgreSQL server the test runner and the benchmark work on: DATABASE_URL's when set, else the one
 * on 127.0.0.1:5432 when it answers, else the embedded server (so a machine with no database still runs).
 */
import postgres from "postgres";
import { startEmbeddedPostgres } from "./embedded_postgres.ts";

const LOCAL_SERVER = "postgres://postgres@127.0.0.1:5432/postgres";

async function reachable(url: string): Promise<boolean> {
  const sql = postgres(url, { max: 1, connect_timeout: 3, onnotice: () => {} });
  try {
    await sql`select 1`;
    return true;
  } catch {
    return false;
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/**
 * The maintenance-database URL of the server to use, and a stop function when an embedded server had to
 * be started (with its data in `embedded.dataDir`, on `embedded.port`, else on a free port).
 */
export async function findServer(
  embedded: { dataDir: string; port?: number },
): Promise<{ adminUrl: string; stop?: () => Promise<void> }> {
  const configured = Deno.env.get("DATABASE_URL");
  if (configured) return { adminUrl: configured };
  if (await reachable(LOCAL_SERVER)) return { adminUrl: LOCAL_SERVER };
  console.log("No PostgreSQL server on 127.0.0.1:5432; starting the embedded one");
  const server = await startEmbeddedPostgres(embedded);
  return { adminUrl: server.url, stop: () => server.stop() };
}

/** The same server's URL for another database. */
export function withDatabase(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${database}`;
  return parsed.toString();
}
