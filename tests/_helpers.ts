/**
 * Test helpers: the test database, a served local stack, fixtures created with the database's own rights,
 * and HTTP helpers. Every fixture gets a unique id so test files can run in parallel on one database.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { loadConfig } from "../functions/_shared/config.ts";
import { type Claims, createDb, type Sql } from "../functions/_shared/db.ts";
import { createLocalStack } from "../functions/main/app.ts";
import { jobHandlers } from "../functions/worker/handlers.ts";
import { createWorker } from "../functions/worker/worker.ts";
import { hashToken, randomToken, signAccessToken } from "../functions/_shared/auth.ts";
import { createSession } from "../functions/auth/auth.queries.ts";
import { createSecretBox } from "../functions/_shared/integrations/secret_box.ts";
import { generateSigningSecret, webhookSecretContext } from "../functions/_shared/outbound_webhooks.ts";
import { migrate } from "../scripts/migrate.ts";

/** The database `deno task test` created and migrated for this run. */
export function testDatabaseUrl(): string {
  const url = Deno.env.get("TEST_DATABASE_URL");
  if (!url) throw new Error("TEST_DATABASE_URL is not set; run the tests with `deno task test`");
  return url;
}

/** Deno.test without the resource sanitizers: pools and servers are shared by a file's tests. */
export function test(name: string, fn: () => Promise<void> | void) {
  Deno.test({ name, fn, sanitizeOps: false, sanitizeResources: false });
}

let shared: Sql | undefined;

/** A superuser pool for fixtures and for checking what tests did (bypasses row-level security). */
export function db(): Sql {
  shared ??= createDb(testDatabaseUrl(), { max: 4 });
  return shared;
}

/** Runs fn against a brand-new empty database on the test server, dropped afterwards. */
export async function withFreshDatabase(fn: (url: string) => Promise<void>) {
  const adminUrl = Deno.env.get("TEST_ADMIN_DATABASE_URL");
  if (!adminUrl) throw new Error("TEST_ADMIN_DATABASE_URL is not set; run the tests with `deno task test`");
  const name = `lap_fresh_${crypto.randomUUID().replaceAll("-", "").slice(0, 12)}`;
  const admin = postgres(adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  try {
    await fn(url.toString());
  } finally {
    await admin.unsafe(`drop database if exists ${name} with (force)`);
    await admin.end();
  }
}

/**
 * Runs fn against a fresh, migrated database of its own: for what the other test files' workers would disturb
 * in the shared one (an empty queue, an unmerged search index).
 */
export function withPrivateDatabase(fn: (sql: Sql, url: string) => Promise<void>) {
  return withFreshDatabase(async (url) => {
    await migrate(url, { quiet: true });
    const sql = createDb(url, { max: 2 });
    try {
      await fn(sql, url);
    } finally {
      await sql.end();
    }
  });
}

/** A unique, valid client id or email local part. */
export function uniq(prefix: string): string {
  return `${prefix}-${crypto.randomUUID().slice(0, 8)}`;
}

export const PASSWORD = "correct-horse-battery";

/** Creates a user with PASSWORD (cheap bcrypt cost for speed). */
/**
 * JSON text of arrays nested `levels` deep around a number: nested(2) is "[[1]]". Text, because
 * JSON.stringify itself runs out of stack on a value nested some thousands of levels deep.
 */
export function nested(levels: number): string {
  return "[".repeat(levels) + "1" + "]".repeat(levels);
}

export async function createUser(
  options: { email?: string; name?: string; admin?: boolean; password?: string | null } = {},
): Promise<{ id: string; email: string }> {
  const email = options.email ?? `${uniq("user")}@example.com`;
  const [user] = await db()<{ id: string; email: string }[]>`
    insert into public.users (email, full_name, is_platform_admin)
    values (${email.toLowerCase()}, ${options.name ?? "Test User"}, ${options.admin ?? false})
    returning id, email`;
  if (options.password !== null) {
    await db()`select app.set_password(${user.id}, ${options.password ?? PASSWORD}, 4)`;
  }
  return user;
}

/** Creates a client (system roles are copied by its trigger). */
export async function createClient(id = uniq("client"), name = "Test Client"): Promise<string> {
  await db()`insert into public.clients (id, name) values (${id}, ${name})`;
  return id;
}

/**
 * An ingest key of the client with both ingest scopes, stored as the key endpoints store one; returns its id
 * and the hex SHA-256 that app.ingest_requests() takes.
 */
export async function insertIngestKey(
  clientId: string,
  ratePerMinute = 1_000_000,
): Promise<{ id: string; hash: string }> {
  const keyHash = await hashToken(`lap_test_${uniq("key")}`);
  const [key] = await db()<{ id: string; hash: string }[]>`
    insert into app.api_keys (client_id, name, prefix, key_hash, rate_limit_per_minute)
    values (${clientId}, 'Test key', ${uniq("p")}, ${keyHash}, ${ratePerMinute})
    returning id, encode(key_hash, 'hex') as hash`;
  return key;
}

/** Adds a user to a client with a role key; returns the membership id. */
export async function addMember(
  clientId: string,
  userId: string,
  role: string,
  reportsTo: string | null = null,
): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    insert into public.memberships (client_id, user_id, role_id, reports_to)
    select ${clientId}, ${userId}, r.id, ${reportsTo} from public.roles r
    where r.client_id = ${clientId} and r.key = ${role}
    returning id`;
  if (!row) throw new Error(`Role "${role}" not found in client "${clientId}"`);
  return row.id;
}

/**
 * In `sql`'s database (a private one, where db()'s helpers do not reach): a reporting line of new users with
 * the given role keys, each reporting to the one before. Returns each member's user and membership ids.
 */
export async function addReportingLine(
  sql: Sql,
  clientId: string,
  roles: string[],
): Promise<{ user: string; membership: string }[]> {
  const line: { user: string; membership: string }[] = [];
  for (const role of roles) {
    const [row] = await sql<{ user_id: string; id: string }[]>`
      with u as (
        insert into public.users (email, full_name) values (${`${
      uniq(role)
    }@example.com`}, ${role}) returning id
      )
      insert into public.memberships (client_id, user_id, role_id, reports_to)
      select ${clientId}, u.id, r.id, ${line.at(-1)?.membership ?? null}::uuid from u
      join public.roles r on r.client_id = ${clientId} and r.key = ${role}
      returning user_id, id`;
    if (!row) throw new Error(`Role "${role}" not found in client "${clientId}"`);
    line.push({ user: row.user_id, membership: row.id });
  }
  return line;
}

/** A webhook endpoint of the client on lead.created, its signing secret sealed as the API stores it. */
export async function addWebhookEndpoint(sql: Sql, clientId: string, url: string, encryptionKey: string) {
  const [endpoint] = await sql<{ id: string }[]>`
    insert into public.webhook_endpoints (client_id, url, events) values (${clientId}, ${url}, '{lead.created}')
    returning id`;
  const secret = generateSigningSecret();
  const sealed = await createSecretBox(encryptionKey).seal(secret, webhookSecretContext(endpoint.id));
  await sql`insert into app.webhook_secrets (endpoint_id, secret_sealed) values (${endpoint.id}, ${sealed})`;
  return { endpointId: endpoint.id, secret };
}

/** A client with an owner, an admin, a manager with an agent below, an agent outside that team, and a viewer. */
export async function createTeam(clientId = uniq("client")) {
  await createClient(clientId);
  const people = {
    owner: await createUser({ name: "Owner" }),
    admin: await createUser({ name: "Admin" }),
    manager: await createUser({ name: "Manager" }),
    agent: await createUser({ name: "Agent" }),
    otherAgent: await createUser({ name: "Other agent" }),
    viewer: await createUser({ name: "Viewer" }),
  };
  const owner = await addMember(clientId, people.owner.id, "owner");
  const admin = await addMember(clientId, people.admin.id, "admin", owner);
  const manager = await addMember(clientId, people.manager.id, "manager", admin);
  const agent = await addMember(clientId, people.agent.id, "agent", manager);
  const otherAgent = await addMember(clientId, people.otherAgent.id, "agent", admin);
  const viewer = await addMember(clientId, people.viewer.id, "viewer", admin);
  return {
    clientId,
    users: people,
    memberships: { owner, admin, manager, agent, otherAgent, viewer },
  };
}

/** Runs fn as the given user under row-level security, as the API does. */
export function actAs<T>(
  userId: string,
  clientId: string | null,
  fn: (tx: postgres.TransactionSql) => Promise<T>,
): Promise<T> {
  const claims: Claims = {
    sub: userId,
    role: "authenticated",
    session_id: crypto.randomUUID(),
    client_id: clientId,
  };
  return db().begin(async (tx) => {
    await tx`select set_config('role', 'authenticated', true),
                    set_config('request.jwt.claims', ${JSON.stringify(claims)}, true)`;
    return await fn(tx);
  }) as Promise<T>;
}

export interface Stack {
  url: string;
  sql: Sql;
  close(): Promise<void>;
}

/**
 * Serves the local stack (every function) on a free port against the test database. Every test request
 * comes from 127.0.0.1, so the shared per-IP buckets are lifted unless a test sets them. Test files share the
 * queue, so the stack's worker (POST /worker) runs only the jobs of `workerClients` (none by default): a
 * worker pointed at one file's emulators must not run another file's jobs.
 */
export function startStack(
  env: Record<string, string> = {},
  overrides: Parameters<typeof loadConfig>[1] = {},
  options: { workerClients?: () => string[] } = {},
): Stack {
  const config = loadConfig(
    { APP_ENV: "test", DATABASE_URL: testDatabaseUrl(), RATE_LIMIT_PER_IP: "1000000", ...env },
    { ...overrides, auth: { login_attempts_per_ip: 1_000_000, ...overrides.auth } },
  );
  const sql = createDb(testDatabaseUrl(), { max: 5 });
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", onListen: () => {} },
    createLocalStack(
      { config, sql },
      createWorker({ config, sql }, jobHandlers(), { clients: options.workerClients ?? (() => []) }),
    ),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}`,
    sql,
    close: async () => {
      await server.shutdown();
      await sql.end();
    },
  };
}

export interface Reply {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Calls a function path ("/api/clients") with an optional token and JSON body. */
export async function call(
  stack: Stack,
  method: string,
  path: string,
  options: { token?: string; body?: unknown; headers?: Record<string, string> } = {},
): Promise<Reply> {
  const headers = new Headers(options.headers);
  if (options.token) headers.set("authorization", `Bearer ${options.token}`);
  let body: string | undefined;
  if (options.body !== undefined) {
    body = typeof options.body === "string" ? options.body : JSON.stringify(options.body);
    if (!headers.has("content-type")) headers.set("content-type", "application/json");
  }
  const response = await fetch(`${stack.url}/functions/v1${path}`, { method, headers, body });
  const text = await response.text();
  let parsed: unknown = text;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    // Non-JSON bodies (the docs page) stay text.
  }
  return { status: response.status, headers: response.headers, body: parsed };
}

/** Logs in and returns the tokens. */
export async function login(stack: Stack, email: string, password = PASSWORD, clientId?: string) {
  const reply = await call(stack, "POST", "/auth/login", { body: { email, password, client_id: clientId } });
  if (reply.status !== 200) throw new Error(`Login of ${email} failed: ${JSON.stringify(reply.body)}`);
  return reply.body as { access_token: string; refresh_token: string; client_id: string | null };
}

/**
 * An access token for a new session of a fixture user, made with the auth service's own session query and
 * signer: for tests about authorization rather than logging in, it skips bcrypt and the login throttle.
 */
export async function sessionToken(
  user: { id: string; email: string },
  clientId: string | null,
): Promise<string> {
  const sessionId = await createSession(db(), {
    userId: user.id,
    clientId,
    ip: "127.0.0.1",
    refreshHash: await hashToken(randomToken("lap_rt_")),
    ttl: 3600,
  });
  const config = loadConfig({ APP_ENV: "test" });
  return (await signAccessToken(config, { userId: user.id, email: user.email, sessionId, clientId })).token;
}

/** A createTeam() client with an access token for each of its members. */
export async function teamWithTokens() {
  const team = await createTeam();
  const tokens = {
    owner: await sessionToken(team.users.owner, team.clientId),
    admin: await sessionToken(team.users.admin, team.clientId),
    manager: await sessionToken(team.users.manager, team.clientId),
    agent: await sessionToken(team.users.agent, team.clientId),
    viewer: await sessionToken(team.users.viewer, team.clientId),
  };
  return { ...team, tokens };
}

/** Asserts a problem+json reply with this status (and stable code). */
export function assertProblem(reply: Reply, status: number, code?: string) {
  assert.equal(
    reply.status,
    status,
    `expected ${status}, got ${reply.status}: ${JSON.stringify(reply.body)}`,
  );
  assert.equal(reply.headers.get("content-type"), "application/problem+json");
  if (code) assert.equal(reply.body.code, code, JSON.stringify(reply.body));
}

/**
 * Asserts that id is a UUID version 7 (sql/0042_time_ordered_ids.sql) whose time, in Unix milliseconds, lies
 * between from and to (Date.now() before and after it was made).
 */
export function assertTimeOrderedId(id: string, from: number, to: number) {
  assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  const millis = parseInt(id.slice(0, 8) + id.slice(9, 13), 16);
  assert.ok(from <= millis && millis <= to, `${id} was made at ${millis}, not between ${from} and ${to}`);
}
