import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";

Deno.test("loadConfig() uses config.toml values and development secrets by default", () => {
  const config = loadConfig({});
  assert.equal(config.env, "development");
  assert.equal(config.server.port, 8000);
  assert.equal(config.auth.audience, "authenticated");
  assert.ok(config.secrets.jwt_secret.length >= 32, "a development JWT secret is generated");
  assert.equal(config.urls.graph_api, "https://graph.facebook.com/v21.0");
});

Deno.test("loadConfig() lets environment variables override config.toml", () => {
  const config = loadConfig({
    PORT: "9100",
    RATE_LIMIT_PER_USER: "7",
    DATABASE_URL: "postgres://u@h/db",
    GRAPH_API_URL: "http://127.0.0.1:9999/v21.0",
  });
  assert.equal(config.server.port, 9100);
  assert.equal(config.rate_limit.per_user, 7);
  assert.equal(config.database.url, "postgres://u@h/db");
  assert.equal(config.urls.graph_api, "http://127.0.0.1:9999/v21.0");
});

Deno.test("loadConfig() falls back to Supabase's SUPABASE_DB_URL", () => {
  assert.equal(loadConfig({ SUPABASE_DB_URL: "postgres://s@h/db" }).database.url, "postgres://s@h/db");
});

Deno.test("loadConfig() finds the worker function under SUPABASE_URL unless WORKER_URL names it", () => {
  assert.equal(loadConfig({}).urls.worker, undefined, "no URL: nothing to wake");
  assert.equal(
    loadConfig({ SUPABASE_URL: "https://abc.supabase.co/" }).urls.worker,
    "https://abc.supabase.co/functions/v1/worker",
  );
  assert.equal(
    loadConfig({
      SUPABASE_URL: "https://abc.supabase.co",
      WORKER_URL: "http://10.0.0.5:8000/functions/v1/worker",
    })
      .urls.worker,
    "http://10.0.0.5:8000/functions/v1/worker",
  );
  assert.throws(() => loadConfig({ WORKER_URL: "ftp://host/worker" }), /urls\.worker/);
  assert.throws(() => loadConfig({ WORKER_URL: "not a url" }), /urls\.worker/);
});

const KEY = btoa("k".repeat(32));

Deno.test("loadConfig() in production refuses a missing JWT secret, database or encryption key", () => {
  assert.throws(
    () => loadConfig({ APP_ENV: "production", DATABASE_URL: "postgres://u@h/db" }),
    /secrets\.jwt_secret: JWT_SECRET must be at least 32 characters/,
  );
  assert.throws(
    () => loadConfig({ APP_ENV: "production", JWT_SECRET: "x".repeat(40), ENCRYPTION_KEY: KEY }),
    /DATABASE_URL is required in production/,
  );
  assert.throws(
    () =>
      loadConfig({ APP_ENV: "production", JWT_SECRET: "x".repeat(40), DATABASE_URL: "postgres://u@h/db" }),
    /ENCRYPTION_KEY is required in production/,
  );
  const config = loadConfig({
    APP_ENV: "production",
    JWT_SECRET: "x".repeat(40),
    DATABASE_URL: "postgres://u@h/db",
    ENCRYPTION_KEY: KEY,
  });
  assert.equal(config.env, "production");
});

Deno.test("loadConfig() names every invalid field", () => {
  assert.throws(
    () => loadConfig({ PORT: "not-a-port", GRAPH_API_URL: "nope", JWT_SECRET: "short" }),
    (error: Error) =>
      /server\.port/.test(error.message) && /urls\.graph_api/.test(error.message) &&
      /secrets\.jwt_secret/.test(error.message),
  );
});

Deno.test("loadConfig() refuses an ENCRYPTION_KEY that is not 32 bytes of base64", () => {
  assert.throws(
    () => loadConfig({ ENCRYPTION_KEY: btoa("short") }),
    /ENCRYPTION_KEY must be 32 random bytes/,
  );
});
