/**
 * Database access through postgres.js, the one data path. Work done for a user runs inside a transaction
 * that takes the `authenticated` role and the user's JWT claims, exactly as PostgREST does, so row-level
 * security decides what the user sees whether they come through the API or supabase-js.
 */
import postgres from "postgres";
import type { Config } from "./config.ts";

export type Sql = postgres.Sql;
export type Tx = postgres.TransactionSql;

/** Claims of an access token as Postgres sees them through auth.uid() and auth.jwt(). */
export interface Claims {
  sub: string;
  role: "authenticated";
  session_id: string;
  client_id: string | null;
  email?: string;
  aud?: string;
  exp?: number;
  iat?: number;
}

/**
 * Opens a connection pool. Prepared statements are disabled behind a transaction pooler (Supabase's
 * port 6543), which cannot keep them between transactions.
 */
export function createDb(
  url: string,
  options: { max: number; prepare?: boolean; asynchronousCommit?: boolean },
): Sql {
  return postgres(url, {
    max: options.max,
    prepare: options.prepare ?? true,
    onnotice: () => {},
    connection: {
      application_name: "lead-platform",
      TimeZone: "UTC",
      ...(options.asynchronousCommit ? { synchronous_commit: "off" } : {}),
    },
    types: {
      // Timestamps stay strings with their microseconds, so they serialise as ISO 8601 and round-trip
      // exactly through keyset-pagination cursors.
      timestamptz: {
        to: 1184,
        from: [1184],
        serialize: (value: Date | string) => value instanceof Date ? value.toISOString() : value,
        parse: (value: string) => value.replace(" ", "T").replace(/\+00$/, "Z"),
      },
    },
  });
}

/**
 * How long one statement of a user's transaction may run, lock waits included: Supabase's default for the
 * `authenticated` role. A query that runs away (or waits behind a long lock) then ends as a 503
 * `query_timeout` instead of holding a pooled connection. Set per transaction, so it holds behind a
 * transaction pooler too.
 */
export const USER_STATEMENT_TIMEOUT = "8s";

/**
 * The limit of changes whose work grows with the client: moving or removing a member, or changing a role,
 * re-indexes who sees every lead of the subtree or re-checks every notification of the role's members.
 */
export const HIERARCHY_STATEMENT_TIMEOUT = "2min";

/** Runs fn in a transaction acting as the user the claims describe, under row-level security. */
export function asUser<T>(
  sql: Sql,
  claims: Claims,
  fn: (tx: Tx) => Promise<T>,
  statementTimeout = USER_STATEMENT_TIMEOUT,
): Promise<T> {
  return sql.begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true),
                    set_config('request.jwt.claims', ${JSON.stringify(claims)}, true),
                    set_config('statement_timeout', ${statementTimeout}, true)`;
    return await fn(tx);
  }) as Promise<T>;
}

/** Opens the pool the configuration describes; port 6543 is Supabase's transaction pooler. */
export function connectDatabase(config: Config, url = config.database.url): Sql {
  if (!url) throw new Error("DATABASE_URL is not set");
  return createDb(url, { max: config.database.max_connections, prepare: !/:6543(\/|$)/.test(url) });
}
