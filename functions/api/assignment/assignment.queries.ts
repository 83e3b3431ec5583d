/** SQL of the assignment service. Every function runs in the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

export interface RuleRow {
  id: string;
  client_id: string;
  product_id: string | null;
  role_keys: string[];
  membership_ids: string[];
  enabled: boolean;
  created_at: string;
  updated_at: string;
}

export interface RuleInput {
  product_id: string | null;
  role_keys: string[];
  membership_ids: string[];
  enabled: boolean;
}

export interface StatusRow {
  key: string;
  name: string;
  position: number;
  is_closed: boolean;
}

const RULE_COLUMNS = "id, client_id, product_id, role_keys, membership_ids, enabled, created_at, updated_at";

export function listRules(tx: Tx, clientId: string) {
  return tx<RuleRow[]>`
    select ${tx.unsafe(RULE_COLUMNS)} from public.assignment_rules
    where client_id = ${clientId}
    order by product_id is not null, created_at, id`;
}

export async function findRule(tx: Tx, clientId: string, ruleId: string): Promise<RuleRow | undefined> {
  const [row] = await tx<RuleRow[]>`
    select ${
    tx.unsafe(RULE_COLUMNS)
  } from public.assignment_rules where client_id = ${clientId} and id = ${ruleId}`;
  return row;
}

/** True when the client has enabled the product. */
export async function productEnabled(tx: Tx, clientId: string, productId: string): Promise<boolean> {
  const [row] = await tx`
    select 1 from public.client_products where client_id = ${clientId} and product_id = ${productId}`;
  return row !== undefined;
}

/** The given role keys that are not roles of the client. */
export async function unknownRoleKeys(tx: Tx, clientId: string, keys: string[]): Promise<string[]> {
  const rows = await tx<{ key: string }[]>`
    select k as key from unnest(${keys}::text[]) k
    where not exists (select 1 from public.roles r where r.client_id = ${clientId} and r.key = k)`;
  return rows.map((row) => row.key);
}

/** The given membership ids that are not members of the client the caller can see. */
export async function unknownMemberships(tx: Tx, clientId: string, ids: string[]): Promise<string[]> {
  const rows = await tx<{ id: string }[]>`
    select i as id from unnest(${ids}::uuid[]) i
    where not exists (select 1 from public.memberships m where m.client_id = ${clientId} and m.id = i)`;
  return rows.map((row) => row.id);
}

/** The rule of the client for a product (null: the default rule), if any. */
export async function ruleForProduct(
  tx: Tx,
  clientId: string,
  productId: string | null,
): Promise<string | undefined> {
  const [row] = await tx<{ id: string }[]>`
    select id from public.assignment_rules
    where client_id = ${clientId} and product_id is not distinct from ${productId}::uuid`;
  return row?.id;
}

export async function insertRule(tx: Tx, clientId: string, rule: RuleInput): Promise<RuleRow> {
  const [row] = await tx<RuleRow[]>`
    insert into public.assignment_rules (client_id, product_id, role_keys, membership_ids, enabled)
    values (${clientId}, ${rule.product_id}::uuid, ${rule.role_keys}::text[], ${rule.membership_ids}::uuid[],
            ${rule.enabled})
    returning ${tx.unsafe(RULE_COLUMNS)}`;
  return row;
}

export async function updateRule(
  tx: Tx,
  clientId: string,
  ruleId: string,
  rule: RuleInput,
): Promise<RuleRow | undefined> {
  const [row] = await tx<RuleRow[]>`
    update public.assignment_rules set
      product_id = ${rule.product_id}::uuid,
      role_keys = ${rule.role_keys}::text[],
      membership_ids = ${rule.membership_ids}::uuid[],
      enabled = ${rule.enabled}
    where client_id = ${clientId} and id = ${ruleId}
    returning ${tx.unsafe(RULE_COLUMNS)}`;
  return row;
}

export async function deleteRule(tx: Tx, clientId: string, ruleId: string): Promise<boolean> {
  const rows = await tx`
    delete from public.assignment_rules where client_id = ${clientId} and id = ${ruleId} returning id`;
  return rows.length > 0;
}

/** Whether the caller may manage members of the client, and whether they see the client at all. */
export async function memberManagement(
  tx: Tx,
  clientId: string,
): Promise<{ allowed: boolean; visible: boolean }> {
  const [row] = await tx<{ allowed: boolean; visible: boolean }[]>`
    select app.has_permission(${clientId}, 'members.manage') as allowed,
           ${clientId} = any (app.my_client_ids()) or app.is_platform_admin() as visible`;
  return row;
}

/** Sets the caller's own availability; false when the membership is not the caller's. */
export async function setOwnAvailability(
  tx: Tx,
  clientId: string,
  membershipId: string,
  available: boolean,
): Promise<boolean> {
  const [row] = await tx<{ updated: boolean }[]>`
    select public.set_own_availability(${clientId}, ${membershipId}::uuid, ${available}) as updated`;
  return row.updated;
}

/** Sets a member's availability under the memberships policies (members.manage inside the caller's scope). */
export async function setAvailability(
  tx: Tx,
  clientId: string,
  membershipId: string,
  available: boolean,
): Promise<boolean> {
  // No RETURNING: it would need the row to pass the read policy too, which the update policy already implies.
  const result = await tx`
    update public.memberships set available = ${available}
    where client_id = ${clientId} and id = ${membershipId}`;
  return result.count === 1;
}

export function listStatuses(tx: Tx, clientId: string) {
  return tx<StatusRow[]>`
    select key, name, position, is_closed from public.lead_statuses
    where client_id = ${clientId} order by position, key`;
}

/** Locks the client's pipeline for the rest of the transaction and returns its keys. */
export async function lockStatuses(tx: Tx, clientId: string): Promise<string[]> {
  const rows = await tx<{ key: string }[]>`
    select key from public.lead_statuses where client_id = ${clientId} order by key for update`;
  return rows.map((row) => row.key);
}

/**
 * Removes one status; false when leads still have it (the leads foreign key refuses, counting every lead of
 * the client whatever the caller can see). A savepoint keeps the transaction usable after the refusal.
 */
export async function removeStatus(tx: Tx, clientId: string, key: string): Promise<boolean> {
  try {
    await tx.savepoint((sp) =>
      sp`delete from public.lead_statuses where client_id = ${clientId} and key = ${key}`
    );
    return true;
  } catch (error) {
    if ((error as { constraint_name?: string }).constraint_name === "leads_status_fkey") return false;
    throw error;
  }
}

export async function upsertStatuses(tx: Tx, clientId: string, statuses: StatusRow[]): Promise<void> {
  await tx`
    insert into public.lead_statuses (client_id, key, name, position, is_closed)
    select ${clientId}, s.key, s.name, s.position, s.is_closed
    from unnest(${statuses.map((s) => s.key)}::text[], ${statuses.map((s) => s.name)}::text[],
                ${statuses.map((s) => String(s.position))}::text[]::int[],
                ${statuses.map((s) => String(s.is_closed))}::text[]::boolean[])
      as s (key, name, position, is_closed)
    on conflict (client_id, key) do update set
      name = excluded.name, position = excluded.position, is_closed = excluded.is_closed`;
}
