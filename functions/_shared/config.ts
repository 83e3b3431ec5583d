/**
 * Platform configuration: config.toml (bundled with every function) overlaid by environment variables,
 * parsed once with zod so a bad value stops start-up with the offending field named.
 */
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import configToml from "../../config.toml" with { type: "text" };
import { createSecretBox } from "./integrations/secret_box.ts";

const positiveInt = z.coerce.number().int().positive();
// z.coerce.boolean() would read the environment's "false" as true.
const flag = z.union([
  z.boolean(),
  z.enum(["true", "false", "1", "0"]).transform((v) => v === "true" || v === "1"),
]);

const configSchema = z.object({
  env: z.enum(["development", "test", "production"]),
  server: z.object({
    port: positiveInt,
    max_body_bytes: positiveInt,
    cors_origins: z.array(z.string()),
  }),
  auth: z.object({
    audience: z.string().min(1),
    access_token_ttl: positiveInt,
    refresh_token_ttl: positiveInt,
    invitation_ttl: positiveInt,
    bcrypt_cost: z.coerce.number().int().min(4).max(16),
    login_attempts_per_email: positiveInt,
    login_attempts_per_ip: positiveInt,
    login_window_seconds: positiveInt,
  }),
  rate_limit: z.object({
    window_seconds: positiveInt,
    per_user: positiveInt,
    per_ip: positiveInt,
  }),
  ingest: z.object({
    max_batch: positiveInt,
    max_body_bytes: positiveInt,
  }),
  queue: z.object({
    max_attempts: positiveInt,
    retry_base_seconds: z.coerce.number().positive(),
    retry_max_seconds: z.coerce.number().positive(),
    retry_jitter: z.coerce.number().min(0).max(1),
    lease_seconds: positiveInt,
    concurrency: positiveInt,
    per_client_running: positiveInt,
    dispatch_batch: positiveInt,
    dispatch_interval_ms: positiveInt,
    search_flush_interval_ms: positiveInt,
    poll_min_ms: positiveInt,
    poll_max_ms: positiveInt,
    drain_max_jobs: positiveInt,
    drain_max_ms: positiveInt,
    wake_interval_ms: positiveInt,
    shutdown_grace_ms: positiveInt,
  }),
  webhooks: z.object({
    timeout_ms: positiveInt,
    disable_after_hours: z.coerce.number().positive(),
    allow_local_targets: flag,
  }),
  retention: z.object({
    interval_seconds: positiveInt,
    batch: positiveInt,
    finished_jobs_days: positiveInt,
    dead_days: positiveInt,
    webhook_inbox_days: positiveInt,
    webhook_deliveries_days: positiveInt,
    sessions_days: positiveInt,
    read_notifications_days: positiveInt,
  }),
  whatsapp: z.object({
    unconfirmed_send_wait_seconds: positiveInt,
  }),
  google_sheets: z.object({
    writes_per_minute: positiveInt,
  }),
  database: z.object({
    url: z.string().optional(),
    max_connections: positiveInt,
    embedded_port: positiveInt,
    embedded_data_dir: z.string(),
  }),
  secrets: z.object({
    jwt_secret: z.string().min(32, "JWT_SECRET must be at least 32 characters"),
    encryption_key: z.string().min(1, "ENCRYPTION_KEY is required in production").refine((key) => {
      try {
        createSecretBox(key);
        return true;
      } catch {
        return key === "";
      }
    }, "ENCRYPTION_KEY must be 32 random bytes in base64 (openssl rand -base64 32)"),
    worker_secret: z.string().optional(),
    meta_app_id: z.string().optional(),
    meta_app_secret: z.string().optional(),
    meta_verify_token: z.string().optional(),
  }),
  urls: z.object({
    worker: z.url({ protocol: /^https?$/ }).optional(),
    graph_api: z.url(),
    google_sheets: z.url(),
    google_token: z.url(),
  }),
});

export type Config = z.infer<typeof configSchema>;

/** Secret used for access tokens when none is configured outside production; never valid in production. */
const DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-change-me-0123456789";
/** 32 bytes (base64) sealing credentials outside production when ENCRYPTION_KEY is unset; never valid in production. */
const DEVELOPMENT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQtb25seS1lbmNyeXB0aW9uLWtleSE=";

function envValue(env: Record<string, string | undefined>, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value === "" ? undefined : value;
}

/**
 * Builds the configuration from config.toml, the given environment (defaults to the process's) and, for
 * tests, explicit overrides.
 * Throws with every invalid field listed; in production, missing secrets are errors instead of
 * being replaced by development values.
 */
export function loadConfig(
  env: Record<string, string | undefined> = Deno.env.toObject(),
  overrides: { [K in keyof Config]?: Partial<Config[K]> } = {},
): Config {
  const file = parseToml(configToml) as Record<string, Record<string, unknown>>;
  const appEnv = envValue(env, "APP_ENV") ?? "development";
  const production = appEnv === "production";
  const jwtSecret = envValue(env, "JWT_SECRET") ?? (production ? "" : DEVELOPMENT_JWT_SECRET);
  const raw = {
    env: appEnv,
    server: {
      ...file.server,
      port: envValue(env, "PORT") ?? file.server.port,
    },
    auth: file.auth,
    ingest: file.ingest,
    queue: file.queue,
    retention: file.retention,
    whatsapp: file.whatsapp,
    google_sheets: file.google_sheets,
    webhooks: {
      ...file.webhooks,
      allow_local_targets: envValue(env, "WEBHOOKS_ALLOW_LOCAL_TARGETS") ?? file.webhooks.allow_local_targets,
    },
    rate_limit: {
      ...file.rate_limit,
      per_user: envValue(env, "RATE_LIMIT_PER_USER") ?? file.rate_limit.per_user,
      per_ip: envValue(env, "RATE_LIMIT_PER_IP") ?? file.rate_limit.per_ip,
    },
    // Supabase sets SUPABASE_DB_URL in every edge function.
    database: { ...file.database, url: envValue(env, "DATABASE_URL") ?? envValue(env, "SUPABASE_DB_URL") },
    secrets: {
      jwt_secret: jwtSecret,
      encryption_key: envValue(env, "ENCRYPTION_KEY") ?? (production ? "" : DEVELOPMENT_ENCRYPTION_KEY),
      worker_secret: envValue(env, "WORKER_SECRET"),
      meta_app_id: envValue(env, "META_APP_ID"),
      meta_app_secret: envValue(env, "META_APP_SECRET"),
      meta_verify_token: envValue(env, "META_VERIFY_TOKEN"),
    },
    urls: {
      // Supabase sets SUPABASE_URL in every edge function; the worker function is served under it.
      worker: envValue(env, "WORKER_URL") ??
        (envValue(env, "SUPABASE_URL")?.replace(/\/+$/, "").concat("/functions/v1/worker")),
      graph_api: envValue(env, "GRAPH_API_URL") ?? "https://graph.facebook.com/v21.0",
      google_sheets: envValue(env, "GOOGLE_SHEETS_URL") ?? "https://sheets.googleapis.com",
      google_token: envValue(env, "GOOGLE_TOKEN_URL") ?? "https://oauth2.googleapis.com/token",
    },
  };
  for (const [section, values] of Object.entries(overrides)) {
    Object.assign((raw as unknown as Record<string, object>)[section], values);
  }
  const parsed = configSchema.safeParse(raw);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => `${issue.path.join(".")}: ${issue.message}`);
    throw new Error(`Invalid configuration: ${fields.join("; ")}`);
  }
  if (production && !parsed.data.database.url) {
    throw new Error("Invalid configuration: DATABASE_URL is required in production");
  }
  return parsed.data;
}
