/** SQL of the permission service. Every function runs in the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

export function listPermissions(tx: Tx) {
  return tx<
    { code: string; description: string }[]
  >`select code, description from public.permissions order by code`;
}

export interface RoleRow {
  id: string;
  client_id: string;
  key: string;
  name: string;
  rank: number;
  scope: "own" | "team" | "client";
  permissions: string[];
  is_system: boolean;
  created_at: string;
  updated_at: string;
}

const COLUMNS = "id, client_id, key, name, rank, scope, permissions, is_system, created_at, updated_at";

export function listRoles(tx: Tx, clientId: string) {
  return tx<RoleRow[]>`
    select ${tx.unsafe(COLUMNS)} from public.roles where client_id = ${clientId} order by rank, key`;
}

export async function insertRole(
  tx: Tx,
  clientId: string,
  role: { key: string; name: string; rank: number; scope: string; permissions: string[] },
): Promise<RoleRow> {
  const [row] = await tx<RoleRow[]>`
    insert into public.roles (client_id, key, name, rank, scope, permissions)
    values (${clientId}, ${role.key}, ${role.name}, ${role.rank}, ${role.scope}, ${role.permissions}::text[])
    returning ${tx.unsafe(COLUMNS)}`;
  return row;
}

export async function updateRole(
  tx: Tx,
  clientId: string,
  roleId: string,
  changes: { name?: string; rank?: number; scope?: string; permissions?: string[] },
): Promise<RoleRow | undefined> {
  const [row] = await tx<RoleRow[]>`
    update public.roles set
      name = coalesce(${changes.name ?? null}, name),
      rank = coalesce(${changes.rank ?? null}::int, rank),
      scope = coalesce(${changes.scope ?? null}, scope),
      permissions = coalesce(${changes.permissions ?? null}::text[], permissions)
    where client_id = ${clientId} and id = ${roleId}
    returning ${tx.unsafe(COLUMNS)}`;
  return row;
}

export async function deleteRole(tx: Tx, clientId: string, roleId: string): Promise<boolean> {
  const rows =
    await tx`delete from public.roles where client_id = ${clientId} and id = ${roleId} returning id`;
  return rows.length > 0;
}
