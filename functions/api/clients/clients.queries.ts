/** SQL of the client service. Every function runs inside the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

const COLUMNS = "id, name, status, settings, created_at, updated_at";

export interface ClientRow {
  id: string;
  name: string;
  status: "active" | "inactive";
  settings: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export async function insertClient(
  tx: Tx,
  input: { id: string; name: string; settings?: Record<string, unknown> },
): Promise<ClientRow> {
  const [row] = await tx<ClientRow[]>`
    select ${tx.unsafe(COLUMNS)}
    from public.create_client(${input.id}, ${input.name}, ${tx.json((input.settings ?? {}) as never)})`;
  return row;
}

export function listClients(tx: Tx, page: { limit: number; after?: string }): Promise<ClientRow[]> {
  return tx<ClientRow[]>`
    select ${tx.unsafe(COLUMNS)} from public.clients
    where ${page.after === undefined ? tx`true` : tx`id > ${page.after}`}
    order by id
    limit ${page.limit + 1}`;
}

export async function findClient(tx: Tx, id: string): Promise<ClientRow | undefined> {
  const [row] = await tx<ClientRow[]>`select ${tx.unsafe(COLUMNS)} from public.clients where id = ${id}`;
  return row;
}

export async function updateClient(
  tx: Tx,
  id: string,
  changes: { name?: string; settings?: Record<string, unknown>; status?: "active" | "inactive" },
): Promise<ClientRow | undefined> {
  const [row] = await tx<ClientRow[]>`
    update public.clients set
      name = coalesce(${changes.name ?? null}, name),
      settings = coalesce(${changes.settings ? tx.json(changes.settings as never) : null}::jsonb, settings),
      status = coalesce(${changes.status ?? null}, status)
    where id = ${id}
    returning ${tx.unsafe(COLUMNS)}`;
  return row;
}
