/**
 * SQL of the API key service. Keys live in the private app.api_keys table; these wrappers call the
 * security definer functions of sql/0014_api_keys.sql inside the caller's RLS transaction, which check
 * api_keys.manage themselves and never return a hash.
 */
import type { Tx } from "../../_shared/db.ts";

/** A key as the API shows it: everything but the hash. */
export interface ApiKeyRow {
  id: string;
  client_id: string;
  name: string;
  environment: "live" | "test";
  prefix: string;
  scopes: ("ingest:single" | "ingest:batch")[];
  allowed_origins: string[];
  rate_limit_per_minute: number;
  default_source: "website" | "api" | "manual";
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
  replaced_by: string | null;
  created_at: string;
  status: "active" | "expired" | "revoked";
}

/** Settings of a new key. */
export interface NewApiKey {
  name: string;
  environment: "live" | "test";
  scopes: string[];
  allowed_origins: string[];
  rate_limit_per_minute: number;
  default_source: string;
  expires_at?: string;
}

export async function createApiKey(
  tx: Tx,
  clientId: string,
  key: NewApiKey & { prefix: string; hash: Uint8Array },
): Promise<ApiKeyRow> {
  const [row] = await tx<{ key: ApiKeyRow }[]>`
    select public.create_api_key(${clientId}, ${key.name}, ${key.environment}, ${key.prefix}, ${key.hash},
      ${key.scopes}::text[], ${key.allowed_origins}::text[], ${key.rate_limit_per_minute}, ${key.default_source},
      ${key.expires_at ?? null}::timestamptz) as key`;
  return row.key;
}

export async function listApiKeys(tx: Tx, clientId: string): Promise<ApiKeyRow[]> {
  const rows = await tx<{ key: ApiKeyRow }[]>`select public.list_api_keys(${clientId}) as key`;
  return rows.map((row) => row.key);
}

export async function revokeApiKey(tx: Tx, clientId: string, keyId: string): Promise<ApiKeyRow | null> {
  const [row] = await tx<{ key: ApiKeyRow | null }[]>`
    select public.revoke_api_key(${clientId}, ${keyId}::uuid) as key`;
  return row.key;
}

export async function rotateApiKey(
  tx: Tx,
  clientId: string,
  keyId: string,
  replacement: { prefix: string; hash: Uint8Array; graceSeconds: number },
): Promise<{ key: ApiKeyRow; previous: ApiKeyRow } | null> {
  const [row] = await tx<{ rotated: { key: ApiKeyRow; previous: ApiKeyRow } | null }[]>`
    select public.rotate_api_key(${clientId}, ${keyId}::uuid, ${replacement.prefix}, ${replacement.hash},
      ${replacement.graceSeconds}) as rotated`;
  return row.rotated;
}
