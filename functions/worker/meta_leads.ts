/**
 * The `meta.fetch_lead` job (enqueued by app.route_webhook_inbox for each Lead Ads `leadgen` change): reads
 * the lead from the Graph API with the page's access token and stores it for the page's client.
 *
 * The lead is a plain insert into public.leads, so the routing triggers deduplicate and assign it exactly as
 * for every other source, and the outbox trigger announces it. external_ref is the leadgen id, unique per
 * client and source, so a repeated job (a lost lease, an admin's replay) finds the lead it stored before.
 *
 * A page token Meta no longer accepts marks the page broken, tells the client's owners and admins once, and
 * kills the job with a readable error (an admin replays it after reconnecting the page); rate limits and
 * outages retry.
 */
import { loadPageToken } from "../_shared/integrations/credentials.ts";
import {
  createGraphClient,
  fieldDataToLead,
  GraphApiError,
  type GraphLead,
} from "../_shared/integrations/graph.ts";
import { normalizePhone } from "../_shared/leads.ts";
import type { Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

interface FetchLeadPayload {
  leadgen_id: string;
  page_id: string;
  form_id: string | null;
  product_id: string | null;
  created_time: unknown;
}

// The shape leads_email_check accepts; anything else stays in custom rather than failing the insert.
const EMAIL = /^[^@\s]+@[^@\s]+\.[^@\s]+$/;

/** The lead's columns from its form answers; answers that are not valid contact details stay in custom. */
export function leadFromGraph(lead: GraphLead): {
  full_name: string | null;
  email: string | null;
  phone: string | null;
  custom: Record<string, string>;
} {
  const mapped = fieldDataToLead(lead.field_data);
  const custom = { ...mapped.custom };
  const email = mapped.email?.toLowerCase();
  const phone = mapped.phone === undefined ? undefined : normalizePhone(mapped.phone);
  if (mapped.email !== undefined && !(email && EMAIL.test(email) && email.length <= 320)) {
    custom.email = mapped.email;
  }
  if (mapped.phone !== undefined && !phone) custom.phone_number = mapped.phone;
  return {
    full_name: mapped.full_name?.slice(0, 200) ?? null,
    email: email && EMAIL.test(email) && email.length <= 320 ? email : null,
    phone: phone ?? null,
    custom,
  };
}

/**
 * Marks the page broken and notifies the client's owners and admins, once: while the page stays broken, the next
 * failing jobs find no row to change (a concurrent one re-checks the condition after waiting) and stay quiet.
 */
async function markPageBroken(
  { sql }: JobContext,
  clientId: string,
  pageId: string,
  detail: string,
): Promise<void> {
  await sql`
    with broken as (
      update public.meta_pages p set status = 'broken', status_detail = ${detail}, checked_at = now()
      where p.page_id = ${pageId} and p.client_id = ${clientId} and p.status <> 'broken'
      returning p.page_id, p.name
    )
    select app.notify_admins_once(${clientId}, 'integration.broken', 'meta-page:' || b.page_id || ':broken',
      'Facebook page disconnected',
      format('Leads from page %s cannot be fetched: %s. Reconnect the page to receive its leads again.',
        coalesce(nullif(b.name, ''), b.page_id), ${detail}::text),
      jsonb_build_object('integration', 'meta_page', 'page_id', b.page_id), interval '10 minutes')
    from broken b`;
}

export async function fetchMetaLead(job: Job, context: JobContext): Promise<unknown> {
  const { sql, config } = context;
  const payload = job.payload as unknown as FetchLeadPayload;
  const page = await loadPageToken(sql, config, payload.page_id);
  if (!page || page.clientId !== job.client_id) {
    // Disconnected (or moved to another client) since the delivery was routed: nothing to fetch with.
    const [known] = await sql`
      select 1 from public.meta_pages p where p.page_id = ${payload.page_id} and p.client_id = ${job.client_id}`;
    if (!known) return { skipped: "page_disconnected" };
    const detail = "No page access token is stored";
    await markPageBroken(context, job.client_id, payload.page_id, detail);
    throw new JobError(`Page ${payload.page_id} has no access token; reconnect the page`, {
      code: "token_missing",
      permanent: true,
    });
  }

  let lead: GraphLead;
  try {
    lead = await createGraphClient({ baseUrl: config.urls.graph_api }).fetchLead(
      payload.leadgen_id,
      page.token,
    );
  } catch (error) {
    if (!(error instanceof GraphApiError)) throw error;
    if (error.action === "token_invalid") {
      await markPageBroken(context, job.client_id, payload.page_id, error.message);
      throw new JobError(
        `The access token of page ${payload.page_id} is no longer valid (${error.message}); reconnect the ` +
          "page, then retry this job",
        { code: "token_invalid", permanent: true },
      );
    }
    if (error.retryable) {
      throw new JobError(`Graph API asked to retry later: ${error.message}`, { code: "graph_retry_later" });
    }
    throw new JobError(`Graph API refused to return lead ${payload.leadgen_id}: ${error.message}`, {
      code: "graph_failed",
      permanent: true,
    });
  }

  const fields = leadFromGraph(lead);
  if (fields.email === null && fields.phone === null) {
    throw new JobError(`Lead ${payload.leadgen_id} has neither a valid email nor a valid phone number`, {
      code: "no_contact",
      permanent: true,
    });
  }
  const source = lead.platform === "ig" ? "instagram" : "meta";
  const formId = lead.form_id ?? payload.form_id;
  const raw = { ...lead, page_id: payload.page_id, webhook_created_time: payload.created_time ?? null };
  const row = await storeLead(context, job.client_id, {
    ...fields,
    source,
    external_ref: lead.id,
    form_id: formId,
    fallback_product_id: payload.product_id,
    raw_payload: raw,
  });
  return { lead_id: row.id, outcome: row.created ? "created" : "existing", duplicate_of: row.duplicate_of };
}

interface StoredLead {
  id: string;
  created: boolean;
  duplicate_of: string | null;
}

/**
 * Inserts the lead through the routing triggers, or finds the one stored before under the same external_ref.
 * The product is the form's mapping as it is now (the one seen at routing time when the form is unmapped).
 */
async function storeLead(
  { sql }: JobContext,
  clientId: string,
  lead: {
    full_name: string | null;
    email: string | null;
    phone: string | null;
    custom: Record<string, string>;
    source: string;
    external_ref: string;
    form_id: string | null;
    fallback_product_id: string | null;
    raw_payload: Record<string, unknown>;
  },
): Promise<StoredLead> {
  const [inserted] = await sql<StoredLead[]>`
    insert into public.leads (client_id, source, external_ref, full_name, email, phone, product_id, custom,
      raw_payload)
    values (${clientId}, ${lead.source}, ${lead.external_ref}, ${lead.full_name}, ${lead.email}, ${lead.phone},
      coalesce((select f.product_id from public.meta_forms f
                where f.form_id = ${lead.form_id} and f.client_id = ${clientId}),
               (select cp.product_id from public.client_products cp
                where cp.client_id = ${clientId} and cp.product_id = ${lead.fallback_product_id}::uuid)),
      ${sql.json(lead.custom)}, ${sql.json(lead.raw_payload as never)})
    on conflict (client_id, source, external_ref) do nothing
    returning id, true as created, duplicate_of`;
  if (inserted) return inserted;
  // A new statement sees the row a concurrent insert committed while this one waited on it.
  const [existing] = await sql<StoredLead[]>`
    select l.id, false as created, l.duplicate_of from public.leads l
    where l.client_id = ${clientId} and l.source = ${lead.source} and l.external_ref = ${lead.external_ref}`;
  if (!existing) throw new Error(`Lead ${lead.external_ref} conflicted but cannot be found`);
  return existing;
}
