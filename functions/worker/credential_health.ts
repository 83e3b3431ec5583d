/**
 * The `integrations.health` job (hourly per client, app.schedule_periodic_jobs): checks the client's
 * WhatsApp token and every Meta page token before a lead depends on them.
 *
 * - With META_APP_ID and META_APP_SECRET, each token goes through Graph's debug_token (validity and expiry);
 *   without them, or when the app token is refused, a cheap GET of the token's own object (the phone number,
 *   the page) tells alive from dead, with the expiry unknown.
 * - Expiring within 7 days: the owners and admins are told, at most once a day per credential.
 * - Dead: the credential is marked broken and the client's jobs that need it are paused (only this client's:
 *   'whatsapp.greeting' for the WhatsApp token; 'meta.%' once no page of the client works, so one dead page does not
 *   hold back the leads of a healthy one). Healthy again: marked ok and the pause is lifted, so the waiting
 *   jobs run.
 */
import type { Config } from "../_shared/config.ts";
import type { Sql } from "../_shared/db.ts";
import { loadIntegration, loadPageToken } from "../_shared/integrations/credentials.ts";
import {
  classifyGraphError,
  createGraphClient,
  GraphApiError,
  type GraphClient,
  parseGraphJson,
} from "../_shared/integrations/graph.ts";
import type { Job } from "./queue.ts";
import { markWhatsAppBroken } from "./whatsapp_greeting.ts";
import { type JobContext, JobError } from "./worker.ts";

const EXPIRY_WARNING_MS = 7 * 24 * 3600 * 1000;

/** What a check found: alive (maybe expiring), dead, or not decidable now. */
export interface Verdict {
  state: "ok" | "expiring" | "dead" | "unknown";
  expires_at: string | null;
  detail: string | null;
}

/** GET /{objectId} with the token itself: answers only whether Graph still accepts the token. */
async function probe(config: Config, token: string, objectId: string): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${config.urls.graph_api.replace(/\/+$/, "")}/${objectId}?fields=id`, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      signal: AbortSignal.timeout(10_000),
    });
  } catch (cause) {
    throw new GraphApiError(`Graph API did not answer: ${cause instanceof Error ? cause.message : cause}`, {
      status: 0,
      action: "retry_later",
      type: "NetworkError",
    });
  }
  const text = await response.text();
  let body: unknown = null;
  try {
    body = parseGraphJson(text);
  } catch {
    // Classified by status below.
  }
  if (!response.ok || (typeof body === "object" && body !== null && "error" in body)) {
    throw classifyGraphError(response.status, body);
  }
}

/** Checks one token; `objectId` is what the fallback probe reads (the page, the phone number). */
export async function inspectToken(
  config: Config,
  graph: GraphClient,
  token: string,
  objectId: string | undefined,
  now = Date.now(),
): Promise<Verdict> {
  const { meta_app_id: appId, meta_app_secret: appSecret } = config.secrets;
  try {
    if (appId && appSecret) {
      try {
        const info = await graph.debugToken(token, `${appId}|${appSecret}`);
        const expiresAt = info.expires_at ? info.expires_at.toISOString() : null;
        if (!info.is_valid) {
          return {
            state: "dead",
            expires_at: expiresAt,
            detail: info.error?.message ?? "The token is not valid",
          };
        }
        const expiring = info.expires_at !== null && info.expires_at.getTime() - now < EXPIRY_WARNING_MS;
        return { state: expiring ? "expiring" : "ok", expires_at: expiresAt, detail: null };
      } catch (error) {
        // A refused app token (wrong META_APP_SECRET) says nothing about this token: fall back to the probe.
        if (!(error instanceof GraphApiError) || error.action === "retry_later") throw error;
      }
    }
    if (!objectId || !/^\d+$/.test(objectId)) {
      return { state: "unknown", expires_at: null, detail: "Nothing to check the token against" };
    }
    await probe(config, token, objectId);
    return { state: "ok", expires_at: null, detail: null };
  } catch (error) {
    if (!(error instanceof GraphApiError)) throw error;
    if (error.action === "token_invalid") return { state: "dead", expires_at: null, detail: error.message };
    if (error.action === "retry_later") {
      throw new JobError(`Graph API asked to retry later: ${error.message}`, { code: "graph_retry_later" });
    }
    return { state: "unknown", expires_at: null, detail: error.message };
  }
}

async function recordWhatsApp(sql: Sql, clientId: string, verdict: Verdict): Promise<void> {
  if (verdict.state === "dead") {
    await markWhatsAppBroken(sql, clientId, verdict.detail ?? "The token is not valid");
    await sql`update public.integrations set token_expires_at = ${verdict.expires_at}
              where client_id = ${clientId} and kind = 'whatsapp'`;
    return;
  }
  if (verdict.state === "unknown") {
    await sql`update public.integrations set checked_at = now(), status_detail = ${verdict.detail}
              where client_id = ${clientId} and kind = 'whatsapp'`;
    return;
  }
  await sql.begin(async (tx) => {
    await tx`update public.integrations set status = 'ok', status_detail = null, checked_at = now(),
               token_expires_at = ${verdict.expires_at}
             where client_id = ${clientId} and kind = 'whatsapp'`;
    await tx`delete from app.job_pauses where client_id = ${clientId} and kind_pattern = 'whatsapp.greeting'`;
  });
  if (verdict.state === "expiring") {
    await sql`select app.notify_admins_once(${clientId}, 'integration.expiring', 'whatsapp:expiring',
      'WhatsApp token expires soon',
      ${`The WhatsApp access token expires on ${verdict.expires_at}. Reconnect WhatsApp before then.`},
      jsonb_build_object('integration', 'whatsapp', 'expires_at', ${verdict.expires_at}::text), interval '1 day')`;
  }
}

async function recordPage(
  sql: Sql,
  clientId: string,
  page: { page_id: string; name: string; status: string },
  verdict: Verdict,
): Promise<void> {
  const label = page.name || page.page_id;
  if (verdict.state === "dead") {
    await sql`update public.meta_pages set status = 'broken', status_detail = ${verdict.detail},
                checked_at = now(), token_expires_at = ${verdict.expires_at}
              where page_id = ${page.page_id} and client_id = ${clientId}`;
    if (page.status !== "broken") {
      await sql`select app.notify_admins_once(${clientId}, 'integration.broken', ${`meta_page:${page.page_id}:broken`},
        'Facebook page disconnected',
        ${`Leads from page ${label} cannot be fetched: ${verdict.detail}. Reconnect the page.`},
        jsonb_build_object('integration', 'meta_page', 'page_id', ${page.page_id}::text), interval '10 minutes')`;
    }
    return;
  }
  if (verdict.state === "unknown") {
    await sql`update public.meta_pages set checked_at = now(), status_detail = ${verdict.detail}
              where page_id = ${page.page_id} and client_id = ${clientId}`;
    return;
  }
  await sql`update public.meta_pages set status = 'ok', status_detail = null, checked_at = now(),
              token_expires_at = ${verdict.expires_at}
            where page_id = ${page.page_id} and client_id = ${clientId}`;
  if (verdict.state === "expiring") {
    await sql`select app.notify_admins_once(${clientId}, 'integration.expiring',
      ${`meta_page:${page.page_id}:expiring`}, 'Facebook page token expires soon',
      ${`The access token of page ${label} expires on ${verdict.expires_at}. Reconnect the page before then.`},
      jsonb_build_object('integration', 'meta_page', 'page_id', ${page.page_id}::text,
        'expires_at', ${verdict.expires_at}::text), interval '1 day')`;
  }
}

export async function checkCredentialHealth(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const graph = createGraphClient({ baseUrl: config.urls.graph_api });
  const result: { whatsapp?: Verdict; pages: Array<Verdict & { page_id: string }> } = { pages: [] };

  const whatsapp = await loadIntegration(sql, config, job.client_id, "whatsapp");
  if (whatsapp?.enabled && whatsapp.secret) {
    const phoneNumberId = (whatsapp.settings as { phone_number_id?: string }).phone_number_id;
    result.whatsapp = await inspectToken(config, graph, whatsapp.secret, phoneNumberId);
    await recordWhatsApp(sql, job.client_id, result.whatsapp);
  }

  const pages = await sql<{ page_id: string; name: string; status: string }[]>`
    select page_id, name, status from public.meta_pages where client_id = ${job.client_id} order by page_id`;
  for (const page of pages) {
    const stored = await loadPageToken(sql, config, page.page_id);
    const verdict: Verdict = stored
      ? await inspectToken(config, graph, stored.token, page.page_id)
      : { state: "dead", expires_at: null, detail: "No page access token is stored" };
    await recordPage(sql, job.client_id, page, verdict);
    result.pages.push({ page_id: page.page_id, ...verdict });
  }
  if (pages.length > 0) {
    // Meta jobs wait while no page of the client works, and run again as soon as one does.
    await sql`
      with pages as (
        select bool_and(p.status = 'broken') as all_broken from public.meta_pages p
        where p.client_id = ${job.client_id}
      ), paused as (
        insert into app.job_pauses (client_id, kind_pattern, reason)
        select ${job.client_id}, 'meta.%', 'No Facebook page token of the client is valid'
        from pages where all_broken
        on conflict (client_id, kind_pattern) do nothing
      )
      delete from app.job_pauses jp using pages
      where jp.client_id = ${job.client_id} and jp.kind_pattern = 'meta.%' and not pages.all_broken`;
  }
  return result;
}
