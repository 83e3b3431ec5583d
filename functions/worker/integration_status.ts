/** Integration health as job handlers change it: one place that marks a client's integration broken. */
import type { Sql } from "../_shared/db.ts";
import type { IntegrationKind } from "../_shared/integrations/credentials.ts";

/**
 * Marks a client's integration broken and, only when it was not broken already, notifies the owners and
 * admins (one statement, so concurrent jobs notify once). `pause` (a job-kind LIKE pattern) holds back that
 * client's jobs of those kinds until a health check finds the credential working again.
 */
export async function markIntegrationBroken(
  sql: Sql,
  clientId: string,
  kind: IntegrationKind,
  detail: string,
  notice: { title: string; body: string; pause?: string },
): Promise<void> {
  await sql`
    with before as (
      select i.status from public.integrations i where i.client_id = ${clientId} and i.kind = ${kind}
    ), broken as (
      update public.integrations i set status = 'broken', status_detail = ${detail}, checked_at = now()
      where i.client_id = ${clientId} and i.kind = ${kind}
      returning i.client_id
    ), paused as (
      insert into app.job_pauses (client_id, kind_pattern, reason)
      select b.client_id, ${
    notice.pause ?? null
  }::text, ${`${kind} credential refused: ${detail}`} from broken b
      where ${notice.pause ?? null}::text is not null
      on conflict (client_id, kind_pattern) do update set reason = excluded.reason
    )
    select app.notify_admins_once(${clientId}, 'integration.broken', ${`${kind}:broken`}, ${notice.title},
      ${notice.body}, jsonb_build_object('integration', ${kind}::text), interval '10 minutes')
    from broken b, before o
    where o.status <> 'broken'`;
}
