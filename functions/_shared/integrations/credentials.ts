/**
 * Per-client third-party credentials at rest: the associated data every sealed secret is bound to, and the
 * loaders the worker and the API use to read a credential back. The API seals with the same contexts
 * (functions/api/integrations), so a ciphertext copied into another client's, kind's or page's row fails to
 * open instead of leaking that credential.
 *
 * The loaders read the private tables (app.integration_secrets, app.meta_page_tokens), so they take the
 * owner pool, never a transaction acting as a user; callers check permissions first.
 */
import type { Config } from "../config.ts";
import type { Sql } from "../db.ts";
import { createSecretBox, type SecretBox } from "./secret_box.ts";

/** Integration kinds as the database names them. */
export type IntegrationKind = "whatsapp" | "google_sheets";

/** Associated data of an integration's sealed secret (WhatsApp token, service-account key JSON). */
export const integrationSecretContext = (clientId: string, kind: IntegrationKind | string): string =>
  `integration:${clientId}:${kind}`;

/** Associated data of a Meta page's sealed access token. */
export const pageTokenContext = (pageId: string): string => `meta-page:${pageId}`;

const boxes = new Map<string, SecretBox>();

/** The secret box of the configured encryption key, made once per key. */
export function secretBoxFor(config: Config): SecretBox {
  const key = config.secrets.encryption_key;
  let box = boxes.get(key);
  if (!box) {
    box = createSecretBox(key);
    boxes.set(key, box);
  }
  return box;
}

/** Seals an integration's secret for app.set_integration_secret(). */
export function sealIntegrationSecret(
  config: Config,
  clientId: string,
  kind: IntegrationKind,
  plaintext: string,
): Promise<string> {
  return secretBoxFor(config).seal(plaintext, integrationSecretContext(clientId, kind));
}

/** Seals a page access token for app.set_page_token(). */
export function sealPageToken(config: Config, pageId: string, token: string): Promise<string> {
  return secretBoxFor(config).seal(token, pageTokenContext(pageId));
}

/** An integration as the worker uses it: its settings, switches and opened secret. */
export interface LoadedIntegration {
  settings: Record<string, unknown>;
  enabled: boolean;
  status: "unknown" | "ok" | "broken";
  /** The opened plaintext (a token, or a service-account key as JSON text); null when none is stored. */
  secret: string | null;
}

/**
 * Reads a client's integration of one kind with its secret opened; null when the client has none.
 * Throws when the stored secret does not open (tampered, another key, copied from another row).
 */
export async function loadIntegration(
  sql: Sql,
  config: Config,
  clientId: string,
  kind: IntegrationKind,
): Promise<LoadedIntegration | null> {
  const [row] = await sql<
    {
      settings: Record<string, unknown>;
      enabled: boolean;
      status: LoadedIntegration["status"];
      secret_sealed: string | null;
    }[]
  >`
    select i.settings, i.enabled, i.status, s.secret_sealed
    from public.integrations i
    left join app.integration_secrets s on s.client_id = i.client_id and s.kind = i.kind
    where i.client_id = ${clientId} and i.kind = ${kind}`;
  if (!row) return null;
  const secret = row.secret_sealed === null
    ? null
    : await secretBoxFor(config).open(row.secret_sealed, integrationSecretContext(clientId, kind));
  return { settings: row.settings, enabled: row.enabled, status: row.status, secret };
}

/**
 * Reads a connected page's client and opened access token; null when the page is not connected or has no
 * token. Throws when the stored token does not open.
 */
export async function loadPageToken(
  sql: Sql,
  config: Config,
  pageId: string,
): Promise<{ clientId: string; token: string } | null> {
  const [row] = await sql<{ client_id: string; token_sealed: string }[]>`
    select p.client_id, t.token_sealed
    from public.meta_pages p join app.meta_page_tokens t on t.page_id = p.page_id
    where p.page_id = ${pageId}`;
  if (!row) return null;
  return {
    clientId: row.client_id,
    token: await secretBoxFor(config).open(row.token_sealed, pageTokenContext(pageId)),
  };
}
