/**
 * SQL of the automations service. The catalog of automations is private (app.automation_catalog, read on
 * the owner pool: it holds nothing client-specific); a client's overrides are public.automations, read and
 * written in the caller's RLS transaction, whose policies require automations.manage for writes.
 */
import type { Sql, Tx } from "../../_shared/db.ts";

export interface CatalogEntry {
  event: string;
  action: string;
  description: string;
  default_enabled: boolean;
}

export interface Override {
  event: string;
  action: string;
  enabled: boolean;
  updated_at: string;
}

export interface AutomationRow extends CatalogEntry {
  enabled: boolean;
  updated_at: string | null;
}

export function catalog(sql: Sql): Promise<CatalogEntry[]> {
  return sql<CatalogEntry[]>`
    select event, action, description, default_enabled from app.automation_catalog order by event, action`;
}

export async function catalogEntry(
  sql: Sql,
  event: string,
  action: string,
): Promise<CatalogEntry | undefined> {
  const [row] = await sql<CatalogEntry[]>`
    select event, action, description, default_enabled from app.automation_catalog
    where event = ${event} and action = ${action}`;
  return row;
}

export function overrides(tx: Tx, clientId: string): Promise<Override[]> {
  return tx<Override[]>`
    select event, action, enabled, updated_at from public.automations where client_id = ${clientId}`;
}

export async function setOverride(
  tx: Tx,
  clientId: string,
  event: string,
  action: string,
  enabled: boolean,
): Promise<Override> {
  const [row] = await tx<Override[]>`
    insert into public.automations (client_id, event, action, enabled, updated_by)
    values (${clientId}, ${event}, ${action}, ${enabled}, auth.uid())
    on conflict (client_id, event, action) do update
      set enabled = excluded.enabled, updated_by = excluded.updated_by, updated_at = now()
    returning event, action, enabled, updated_at`;
  return row;
}

/** A catalog entry as it applies to a client with the given override (or none). */
export function applied(entry: CatalogEntry, override: Override | undefined): AutomationRow {
  return {
    event: entry.event,
    action: entry.action,
    description: entry.description,
    enabled: override?.enabled ?? entry.default_enabled,
    default_enabled: entry.default_enabled,
    updated_at: override?.updated_at ?? null,
  };
}
