/**
 * The `meta.backfill` job (every 15 minutes per connected form, app.schedule_periodic_jobs): lists the
 * form's leads created since the last backfill and stores the ones whose webhook never arrived.
 *
 * Leads are stored exactly as the webhook path (`meta.fetch_lead`, meta_leads.ts) stores them: the same
 * field mapping (leadFromGraph), the same source ("meta", "instagram" for Instagram ads) and the leadgen id
 * as external_ref, unique per client and source, so the two paths can never create the same lead twice,
 * whichever runs first. The window overlaps the previous one by a few minutes (leads Graph shows late are
 * not missed; the unique external_ref makes the overlap free), and backfilled_until advances to the newest
 * created_time read.
 */
import { loadPageToken } from "../_shared/integrations/credentials.ts";
import { createGraphClient, GraphApiError, type GraphLead } from "../_shared/integrations/graph.ts";
import { leadFromGraph } from "./meta_leads.ts";
import type { Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

const OVERLAP_MS = 10 * 60 * 1000;
const FIRST_LOOKBACK_MS = 24 * 3600 * 1000;

interface Form {
  form_id: string;
  page_id: string;
  client_id: string;
  product_id: string | null;
  backfilled_until: string | null;
  created_at: string;
}

/** Graph's "2024-05-01T10:00:00+0000" as a Date (the offset without a colon is not ISO 8601 for Date.parse). */
function graphTime(value: string): Date | null {
  const date = new Date(value.replace(/([+-]\d{2})(\d{2})$/, "$1:$2"));
  return Number.isNaN(date.getTime()) ? null : date;
}

export async function backfillMetaForm(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const formId = String(job.payload.form_id ?? "");
  const [form] = await sql<Form[]>`
    select form_id, page_id, client_id, product_id, backfilled_until, created_at from public.meta_forms
    where form_id = ${formId} and client_id = ${job.client_id}`;
  if (!form) return { skipped: "form_not_found" };
  const page = await loadPageToken(sql, config, form.page_id);
  if (!page || page.clientId !== job.client_id) return { skipped: "page_not_connected" };

  const since = form.backfilled_until
    ? new Date(new Date(form.backfilled_until).getTime() - OVERLAP_MS)
    : new Date(new Date(form.created_at).getTime() - FIRST_LOOKBACK_MS);
  let leads: GraphLead[];
  try {
    leads = await createGraphClient({ baseUrl: config.urls.graph_api }).listFormLeads(
      form.form_id,
      page.token,
      {
        since,
      },
    );
  } catch (error) {
    if (!(error instanceof GraphApiError)) throw error;
    if (error.action === "token_invalid") {
      await sql`
        with before as (select p.status from public.meta_pages p where p.page_id = ${form.page_id}),
        broken as (
          update public.meta_pages set status = 'broken', status_detail = ${error.message}, checked_at = now()
          where page_id = ${form.page_id} and client_id = ${job.client_id}
          returning page_id, name
        )
        select app.notify_admins_once(${job.client_id}, 'integration.broken',
          ${`meta_page:${form.page_id}:broken`}, 'Facebook page disconnected',
          format('Leads from page %s cannot be fetched: %s. Reconnect the page.',
            coalesce(nullif(b.name, ''), b.page_id), ${error.message}::text),
          jsonb_build_object('integration', 'meta_page', 'page_id', b.page_id), interval '10 minutes')
        from broken b, before o
        where o.status <> 'broken'`;
      throw new JobError(
        `The access token of page ${form.page_id} is no longer valid (${error.message}); reconnect the page`,
        { code: "token_invalid", permanent: true },
      );
    }
    if (error.retryable) {
      throw new JobError(`Graph API asked to retry later: ${error.message}`, { code: "graph_retry_later" });
    }
    throw new JobError(`Graph API refused to list the leads of form ${form.form_id}: ${error.message}`, {
      code: "graph_failed",
      permanent: true,
    });
  }

  const created: string[] = [];
  const invalid: Array<{ leadgen_id: string; reason: string }> = [];
  let existing = 0;
  let newest: Date | null = null;
  for (const lead of leads) {
    const time = graphTime(lead.created_time);
    if (time && (!newest || time > newest)) newest = time;
    const fields = leadFromGraph(lead);
    if (fields.email === null && fields.phone === null) {
      // Reported in the job result, as the webhook path reports it in its dead job.
      invalid.push({ leadgen_id: lead.id, reason: "Neither a valid email nor a valid phone number" });
      continue;
    }
    const source = lead.platform === "ig" ? "instagram" : "meta";
    const [row] = await sql<{ id: string }[]>`
      insert into public.leads (client_id, source, external_ref, full_name, email, phone, product_id, custom,
        raw_payload)
      select ${job.client_id}, ${source}, ${lead.id}, ${fields.full_name}, ${fields.email}, ${fields.phone},
        ${form.product_id}, ${sql.json(fields.custom)},
        ${sql.json({ ...lead, page_id: form.page_id, backfilled: true } as never)}
      where not exists (
        select 1 from public.leads l
        where l.client_id = ${job.client_id} and l.source = ${source} and l.external_ref = ${lead.id}
      )
      on conflict (client_id, source, external_ref) do nothing
      returning id`;
    if (row) created.push(row.id);
    else existing++;
  }
  if (newest) {
    await sql`
      update public.meta_forms set backfilled_until = greatest(coalesce(backfilled_until, ${newest}), ${newest})
      where form_id = ${form.form_id}`;
  }
  return {
    since: since.toISOString(),
    read: leads.length,
    created: created.length,
    existing,
    invalid,
    lead_ids: created,
    backfilled_until: newest?.toISOString() ?? form.backfilled_until,
  };
}
