/** SQL of the permission service. Every function runs in the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

export function listPermissions(tx: Tx) {
  return tx<
    { code: string; description: string }[]
  >`select code, description from public.permissions order by code`;
}

export function listRoles(tx: Tx, clientId: string) {
  return tx<
    {
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
    }[]
  >`
    select id, client_id, key, name, rank, scope, permissions, is_system, created_at, updated_at
    from public.roles where client_id = ${clientId} order by rank, key`;
}
