/**
 * Platform configuration: config.toml (bundled with every function) overlaid by environment variables,
 * parsed once with zod so a bad value stops start-up with the offending field named.
 */
import { parse as parseToml } from "smol-toml";
import { z } from "zod";
import configToml from "../../config.toml" with { type: "text" };

const positiveInt = z.coerce.number().int().positive();

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
  database: z.object({
    url: z.string().optional(),
    max_connections: positiveInt,
    embedded_port: positiveInt,
    embedded_data_dir: z.string(),
  }),
  secrets: z.object({
    jwt_secret: z.string().min(32, "JWT_SECRET must be at least 32 characters"),
    encryption_key: z.string().optional(),
    meta_app_secret: z.string().optional(),
    meta_verify_token: z.string().optional(),
  }),
  urls: z.object({
    graph_api: z.url(),
    google_sheets: z.url(),
    google_token: z.url(),
  }),
});

export type Config = z.infer<typeof configSchema>;

/** Secret used for access tokens when none is configured outside production; never valid in production. */
const DEVELOPMENT_JWT_SECRET = "development-only-jwt-secret-change-me-0123456789";

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
    rate_limit: {
      ...file.rate_limit,
      per_user: envValue(env, "RATE_LIMIT_PER_USER") ?? file.rate_limit.per_user,
      per_ip: envValue(env, "RATE_LIMIT_PER_IP") ?? file.rate_limit.per_ip,
    },
    // Supabase sets SUPABASE_DB_URL in every edge function.
    database: { ...file.database, url: envValue(env, "DATABASE_URL") ?? envValue(env, "SUPABASE_DB_URL") },
    secrets: {
      jwt_secret: jwtSecret,
      encryption_key: envValue(env, "ENCRYPTION_KEY"),
      meta_app_secret: envValue(env, "META_APP_SECRET"),
      meta_verify_token: envValue(env, "META_VERIFY_TOKEN"),
    },
    urls: {
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
