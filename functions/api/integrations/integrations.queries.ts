/**
 * SQL of the integrations service, run inside the caller's RLS transaction: settings rows through the
 * policies of policies/integrations.sql, sealed credentials through the security definer functions of
 * sql/0026_integration_secrets.sql, which check integrations.manage themselves and never return a secret.
 */
import type { Tx } from "../../_shared/db.ts";
import type { IntegrationKind } from "../../_shared/integrations/credentials.ts";

type Status = "unknown" | "ok" | "broken";

/** Status columns shared by integrations and pages. */
export interface StatusRow {
  status: Status;
  status_detail: string | null;
  checked_at: string | null;
  token_expires_at: string | null;
}

/** An integration row with whether its secret is stored. */
export interface IntegrationRow extends StatusRow {
  kind: IntegrationKind;
  enabled: boolean;
  settings: Record<string, unknown>;
  has_secret: boolean;
  created_at: string;
  updated_at: string;
}

export interface MetaFormRow {
  form_id: string;
  page_id: string;
  name: string;
  product_id: string | null;
  backfilled_until: string | null;
  created_at: string;
}

export interface MetaPageRow extends StatusRow {
  page_id: string;
  name: string;
  has_token: boolean;
  created_at: string;
  updated_at: string;
  forms: MetaFormRow[];
}

export async function listIntegrations(tx: Tx, clientId: string): Promise<IntegrationRow[]> {
  return await tx<IntegrationRow[]>`
    with secrets as (select app.integration_secret_kinds(${clientId}) as kinds)
    select i.kind, i.enabled, i.settings, i.status, i.status_detail, i.checked_at, i.token_expires_at,
      i.created_at, i.updated_at, i.kind = any (secrets.kinds) as has_secret
    from public.integrations i cross join secrets
    where i.client_id = ${clientId}
    order by i.kind`;
}

/** The client's pages (or one of them) with their forms, oldest first. */
export async function listPages(tx: Tx, clientId: string, pageId?: string): Promise<MetaPageRow[]> {
  return await tx<MetaPageRow[]>`
    with tokens as (select app.meta_page_token_ids(${clientId}) as ids)
    select p.page_id, p.name, p.status, p.status_detail, p.checked_at, p.token_expires_at, p.created_at,
      p.updated_at, p.page_id = any (tokens.ids) as has_token,
      coalesce((
        select jsonb_agg(jsonb_build_object(
          'form_id', f.form_id, 'page_id', f.page_id, 'name', f.name, 'product_id', f.product_id,
          'backfilled_until', f.backfilled_until, 'created_at', f.created_at) order by f.created_at, f.form_id)
        from public.meta_forms f where f.page_id = p.page_id and f.client_id = p.client_id
      ), '[]') as forms
    from public.meta_pages p cross join tokens
    where p.client_id = ${clientId} and (${pageId ?? null}::text is null or p.page_id = ${pageId ?? null})
    order by p.created_at, p.page_id`;
}

/** Whether a secret of this kind is stored for the client. */
export async function hasSecret(tx: Tx, clientId: string, kind: IntegrationKind): Promise<boolean> {
  const [row] = await tx<{ found: boolean }[]>`
    select ${kind} = any (app.integration_secret_kinds(${clientId})) as found`;
  return row.found;
}

/**
 * Creates or replaces an integration's settings. When the credential or the connection key (the setting
 * that names what the credential reaches) changes, the recorded status no longer applies and is reset.
 * `keepSettings` names settings kept from the stored row (they describe the stored credential).
 */
export async function upsertIntegration(
  tx: Tx,
  clientId: string,
  kind: IntegrationKind,
  values: {
    enabled: boolean;
    settings: Record<string, unknown>;
    newCredential: boolean;
    connectionKey: string;
    keepSettings: string[];
  },
): Promise<{ created: boolean }> {
  const [row] = await tx<{ created: boolean }[]>`
    insert into public.integrations as i (client_id, kind, enabled, settings)
    values (${clientId}, ${kind}, ${values.enabled}, ${tx.json(values.settings as never)})
    on conflict (client_id, kind) do update set
      enabled = excluded.enabled,
      settings = excluded.settings || coalesce(
        (select jsonb_object_agg(k, i.settings -> k) from unnest(${values.keepSettings}::text[]) k
         where i.settings ? k), '{}'),
      (status, status_detail, checked_at, token_expires_at) = (
        select case when reset then 'unknown' else i.status end,
          case when reset then null else i.status_detail end,
          case when reset then null else i.checked_at end,
          case when reset then null else i.token_expires_at end
        from (select ${values.newCredential}::boolean
          or i.settings ->> ${values.connectionKey} is distinct from excluded.settings ->> ${values.connectionKey}
          as reset) r)
    returning (xmax = 0) as created`;
  return row;
}

/** Stores a sealed secret; false when the caller may not manage the client's integrations. */
export async function setIntegrationSecret(
  tx: Tx,
  clientId: string,
  kind: IntegrationKind,
  sealed: string,
): Promise<boolean> {
  const [row] = await tx<{ stored: boolean }[]>`
    select app.set_integration_secret(${clientId}, ${kind}, ${sealed}) as stored`;
  return row.stored;
}

export async function deleteIntegration(tx: Tx, clientId: string, kind: IntegrationKind): Promise<boolean> {
  const rows = await tx`
    delete from public.integrations where client_id = ${clientId} and kind = ${kind} returning kind`;
  return rows.length > 0;
}

/** The recorded status of an integration, when the caller can see it. */
export async function integrationStatus(
  tx: Tx,
  clientId: string,
  kind: IntegrationKind,
): Promise<StatusRow | undefined> {
  const [row] = await tx<StatusRow[]>`
    select status, status_detail, checked_at, token_expires_at from public.integrations
    where client_id = ${clientId} and kind = ${kind}`;
  return row;
}

/** Records a connection test's outcome; undefined when the integration is gone. */
export async function recordCheck(
  tx: Tx,
  clientId: string,
  kind: IntegrationKind,
  check: { status: "ok" | "broken"; detail: string | null; tokenExpiresAt: Date | null },
): Promise<StatusRow | undefined> {
  const [row] = await tx<StatusRow[]>`
    update public.integrations
    set status = ${check.status}, status_detail = ${check.detail}, checked_at = now(),
      token_expires_at = ${check.tokenExpiresAt?.toISOString() ?? null}::timestamptz
    where client_id = ${clientId} and kind = ${kind}
    returning status, status_detail, checked_at, token_expires_at`;
  return row;
}

/**
 * Connects a page to the client. When the page is already connected, says to which side: this client
 * ("own") or any other ("other"), never which.
 */
export async function connectPage(
  tx: Tx,
  clientId: string,
  page: { pageId: string; name: string },
): Promise<"connected" | "own" | "other"> {
  const inserted = await tx`
    insert into public.meta_pages (page_id, client_id, name) values (${page.pageId}, ${clientId}, ${page.name})
    on conflict (page_id) do nothing
    returning page_id`;
  if (inserted.length > 0) return "connected";
  const [existing] = await tx<{ client_id: string }[]>`
    select client_id from public.meta_pages where page_id = ${page.pageId}`;
  return existing?.client_id === clientId ? "own" : "other";
}

/** Stores a page's sealed token; false when the page is not the caller's to manage. */
export async function setPageToken(tx: Tx, pageId: string, sealed: string): Promise<boolean> {
  const [row] = await tx<{ stored: boolean }[]>`select app.set_page_token(${pageId}, ${sealed}) as stored`;
  return row.stored;
}

/** Renames a page and, when its token was replaced, forgets the old token's status; false when not found. */
export async function updatePage(
  tx: Tx,
  clientId: string,
  pageId: string,
  changes: { name?: string; newToken: boolean },
): Promise<boolean> {
  const rows = await tx`
    update public.meta_pages set
      name = coalesce(${changes.name ?? null}::text, name),
      status = case when ${changes.newToken}::boolean then 'unknown' else status end,
      status_detail = case when ${changes.newToken}::boolean then null else status_detail end,
      checked_at = case when ${changes.newToken}::boolean then null else checked_at end,
      token_expires_at = case when ${changes.newToken}::boolean then null else token_expires_at end
    where client_id = ${clientId} and page_id = ${pageId}
    returning page_id`;
  return rows.length > 0;
}

export async function deletePage(tx: Tx, clientId: string, pageId: string): Promise<boolean> {
  const rows = await tx`
    delete from public.meta_pages where client_id = ${clientId} and page_id = ${pageId} returning page_id`;
  return rows.length > 0;
}

/** True when the client sells (has enabled) the product. */
export async function productEnabled(tx: Tx, clientId: string, productId: string): Promise<boolean> {
  const rows = await tx`
    select 1 from public.client_products where client_id = ${clientId} and product_id = ${productId}::uuid`;
  return rows.length > 0;
}

/**
 * Maps a form of one of the client's pages, or changes the mapping of a form the client already has (its
 * backfill position is kept). "other" when another client has the form.
 */
export async function upsertForm(
  tx: Tx,
  clientId: string,
  form: { formId: string; pageId: string; name: string; productId: string | null },
): Promise<{ outcome: "created" | "updated"; form: MetaFormRow } | { outcome: "other" }> {
  const [created] = await tx<MetaFormRow[]>`
    insert into public.meta_forms (form_id, page_id, client_id, product_id, name)
    values (${form.formId}, ${form.pageId}, ${clientId}, ${form.productId}::uuid, ${form.name})
    on conflict (form_id) do nothing
    returning form_id, page_id, name, product_id, backfilled_until, created_at`;
  if (created) return { outcome: "created", form: created };
  const [updated] = await tx<MetaFormRow[]>`
    update public.meta_forms
    set page_id = ${form.pageId}, product_id = ${form.productId}::uuid, name = ${form.name}
    where form_id = ${form.formId} and client_id = ${clientId}
    returning form_id, page_id, name, product_id, backfilled_until, created_at`;
  return updated ? { outcome: "updated", form: updated } : { outcome: "other" };
}

export async function deleteForm(tx: Tx, clientId: string, formId: string): Promise<boolean> {
  const rows = await tx`
    delete from public.meta_forms where client_id = ${clientId} and form_id = ${formId} returning form_id`;
  return rows.length > 0;
}
