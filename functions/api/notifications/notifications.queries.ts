/**
 * SQL of the notifications service, always in the caller's RLS transaction: the policies of
 * policies/automation.sql show and update a notification for its recipient only. The explicit
 * `user_id = auth.uid()` conditions repeat that rule so the (user_id, created_at, id) index serves them.
 */
import type { Tx } from "../../_shared/db.ts";

export interface NotificationRow {
  id: string;
  client_id: string;
  kind: string;
  title: string;
  body: string;
  lead_id: string | null;
  data: Record<string, unknown>;
  created_at: string;
  read_at: string | null;
}

const COLUMNS = "n.id, n.client_id, n.kind, n.title, n.body, n.lead_id, n.data, n.created_at, n.read_at";

export async function listNotifications(
  tx: Tx,
  filters: { clientId?: string; unread: boolean },
  page: { limit: number; before?: [string, string] },
): Promise<{ rows: NotificationRow[]; more: boolean; unread: number }> {
  const client = filters.clientId ? tx`and n.client_id = ${filters.clientId}` : tx``;
  const rows = await tx<NotificationRow[]>`
    select ${tx.unsafe(COLUMNS)} from public.notifications n
    where n.user_id = (select auth.uid()) ${client}
      ${filters.unread ? tx`and n.read_at is null` : tx``}
      ${
    page.before
      ? tx`and (n.created_at, n.id) < (${page.before[0]}::timestamptz, ${page.before[1]}::uuid)`
      : tx``
  }
    order by n.created_at desc, n.id desc
    limit ${page.limit + 1}`;
  const [{ unread }] = await tx<{ unread: number }[]>`
    select count(*)::int as unread from public.notifications n
    where n.user_id = (select auth.uid()) and n.read_at is null ${client}`;
  return { rows: rows.slice(0, page.limit), more: rows.length > page.limit, unread };
}

export async function markRead(tx: Tx, id: string): Promise<NotificationRow | undefined> {
  const [row] = await tx<NotificationRow[]>`
    update public.notifications n set read_at = coalesce(n.read_at, now())
    where n.id = ${id} and n.user_id = (select auth.uid())
    returning ${tx.unsafe(COLUMNS)}`;
  return row;
}

export async function markAllRead(tx: Tx, clientId?: string): Promise<number> {
  const [{ count }] = await tx<{ count: number }[]>`
    with marked as (
      update public.notifications n set read_at = now()
      where n.user_id = (select auth.uid()) and n.read_at is null
        ${clientId ? tx`and n.client_id = ${clientId}` : tx``}
      returning 1
    )
    select count(*)::int as count from marked`;
  return count;
}
