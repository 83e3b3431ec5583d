/**
 * The `whatsapp.greeting` job (enqueued by app.dispatch_events for lead.created when the client switched the
 * whatsapp_greeting automation on): greets the new lead on WhatsApp with the client's number.
 *
 * - Free-form text (settings.greeting_text) only inside the 24-hour customer-service window (an inbound
 *   message from the lead within 24 hours); otherwise, or when Meta answers 131047, the approved template.
 * - Every outbound message is recorded in public.lead_messages as `queued` BEFORE it is sent, under an id
 *   derived from the job and the message kind, so a retried job finds the same row: once it says `sent`,
 *   nothing is sent again. A message Meta refused is recorded `failed` with Meta's error, never `sent`.
 * - A send that got no answer (timeout, lost reply, a worker that died during the call) may have reached the
 *   lead, and the Cloud API takes no idempotency key. So each send records when it started and carries the
 *   message id as biz_opaque_callback_data, which its status webhooks echo (whatsapp_inbound.ts records the
 *   message as sent from them); a retry that finds a send unanswered waits up to [whatsapp]
 *   unconfirmed_send_wait_seconds for that confirmation and sends again only without it (sql/0033).
 * - A token Meta refuses (190) marks the integration broken, pauses only this client's greetings and
 *   tells the owners; 131026 (not on WhatsApp) flags the lead and finishes; rate limits retry later.
 */
import { formatUuid, sha256 } from "../_shared/bytes.ts";
import { loadIntegration } from "../_shared/integrations/credentials.ts";
import { createGraphClient, GraphApiError, type GraphClient } from "../_shared/integrations/graph.ts";
import type { Sql } from "../_shared/db.ts";
import { markIntegrationBroken } from "./integration_status.ts";
import { backoffSeconds, type Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

interface WhatsAppSettings {
  phone_number_id?: string;
  template_name?: string;
  template_language?: string;
  greeting_text?: string;
  /** Lead fields filling the template's body placeholders {{1}}, {{2}}, ... in order (optional). */
  template_parameters?: string[];
}

interface GreetingLead {
  id: string;
  client_id: string;
  full_name: string | null;
  email: string | null;
  phone: string | null;
  custom: Record<string, unknown>;
  in_window: boolean;
}

type MessageKind = "text" | "template";

interface MessageRow {
  id: string;
  kind: MessageKind;
  status: string;
  provider_message_id: string | null;
  /** Seconds since a send began that WhatsApp never answered; null when none is pending. */
  unanswered_for: number | null;
  /** Accepted, then reported failed by a status webhook (not refused when sent). */
  undelivered: boolean;
}

/** A stable UUID from a string (SHA-256, shaped as version 8), so a retried job addresses the same row. */
export async function stableUuid(name: string): Promise<string> {
  const bytes = (await sha256(name)).slice(0, 16);
  bytes[6] = (bytes[6] & 0x0f) | 0x80;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  return formatUuid(bytes);
}

/** The Graph error as stored in lead_messages.error and job results. */
function errorRecord(error: GraphApiError) {
  return {
    code: error.code,
    subcode: error.subcode,
    action: error.action,
    message: error.message,
    details: error.details,
    fbtrace_id: error.fbtraceId,
  };
}

/** Marks WhatsApp broken for the client, pauses its greetings and notifies its owners and admins once. */
export function markWhatsAppBroken(sql: Sql, clientId: string, detail: string): Promise<void> {
  return markIntegrationBroken(sql, clientId, "whatsapp", detail, {
    title: "WhatsApp disconnected",
    body: `WhatsApp messages cannot be sent: ${detail}. Reconnect WhatsApp; waiting greetings are sent then.`,
    pause: "whatsapp.greeting",
  });
}

function sendTo(
  graph: GraphClient,
  settings: WhatsAppSettings,
  token: string,
  lead: GreetingLead,
  kind: MessageKind,
  messageId: string,
) {
  const address = {
    phoneNumberId: settings.phone_number_id!,
    accessToken: token,
    to: lead.phone!,
    callbackData: messageId,
  };
  if (kind === "text") return graph.sendWhatsAppText({ ...address, body: settings.greeting_text! });
  const parameters = (settings.template_parameters ?? []).map((field) => {
    const value = field.startsWith("custom.")
      ? lead.custom[field.slice(7)]
      : lead[field as keyof GreetingLead];
    return {
      type: "text",
      text: value === null || value === undefined || value === "" ? "-" : String(value),
    };
  });
  return graph.sendWhatsAppTemplate({
    ...address,
    templateName: settings.template_name!,
    languageCode: settings.template_language || "en_US",
    components: parameters.length ? [{ type: "body", parameters }] : undefined,
  });
}

export async function sendWhatsAppGreeting(job: Job, { sql, config }: JobContext): Promise<unknown> {
  const leadId = String(job.payload.lead_id ?? "");
  const [lead] = await sql<GreetingLead[]>`
    select l.id, l.client_id, l.full_name, l.email, l.phone, l.custom,
      exists (
        select 1 from public.lead_messages m
        where m.lead_id = l.id and m.direction = 'inbound' and m.created_at > now() - interval '24 hours'
      ) as in_window
    from public.leads l
    where l.id = ${leadId}::uuid and l.client_id = ${job.client_id}`;
  if (!lead) return { skipped: "lead_not_found" };
  const integration = await loadIntegration(sql, config, job.client_id, "whatsapp");
  if (!integration) return { skipped: "integration_missing" };
  if (!integration.enabled) return { skipped: "integration_disabled" };
  if (!lead.phone) return { skipped: "no_phone" };
  if (lead.custom?.whatsapp_unreachable === true) return { skipped: "recipient_unreachable" };
  const settings = integration.settings as WhatsAppSettings;
  if (!integration.secret || !settings.phone_number_id) {
    throw new JobError(
      "The WhatsApp integration has no access token or phone number id; reconnect WhatsApp",
      {
        code: "whatsapp_not_configured",
        permanent: true,
      },
    );
  }

  // A retry picks up where the last attempt stopped: a message already sent is never sent again.
  const messageIds = {
    text: await stableUuid(`${job.idempotency_key}:greeting:text`),
    template: await stableUuid(`${job.idempotency_key}:greeting:template`),
  };
  const previous = await sql<MessageRow[]>`
    select id, kind, status, provider_message_id,
      extract(epoch from now() - send_started_at)::float8 as unanswered_for,
      status = 'failed' and error ->> 'source' = 'whatsapp' as undelivered
    from public.lead_messages
    where id in (${messageIds.text}::uuid, ${messageIds.template}::uuid)`;
  const delivered = previous.find((m) => m.status !== "queued" && m.status !== "failed");
  if (delivered) {
    return {
      message_id: delivered.id,
      kind: delivered.kind,
      provider_message_id: delivered.provider_message_id,
    };
  }
  // A template WhatsApp accepted and then reported undeliverable (a status webhook confirming a send that got
  // no answer) is final: sending it again would fail the same way.
  if (previous.some((m) => m.kind === "template" && m.undelivered)) {
    throw new JobError("WhatsApp reported the greeting template failed; see the message's error", {
      code: "whatsapp_failed",
      permanent: true,
    });
  }
  // Waiting for a confirmation, the job still backs off as any retry does, so an outage of WhatsApp uses up
  // its attempts no faster than before.
  const retryAfter = (seconds: number) => Math.ceil(Math.max(seconds, backoffSeconds(config, job.attempts)));
  const unanswered = previous.find((m) => m.status === "queued" && m.unanswered_for !== null);
  const wait = config.whatsapp.unconfirmed_send_wait_seconds - (unanswered?.unanswered_for ?? Infinity);
  if (wait > 0) {
    throw new JobError(
      "The last send of this greeting got no answer from WhatsApp, so it may have reached the lead; waiting " +
        `${Math.ceil(wait)} s for its status to confirm it before sending again`,
      { code: "whatsapp_send_unconfirmed", retryAfterSeconds: retryAfter(wait) },
    );
  }
  const textRefused = previous.some((m) => m.kind === "text" && m.status === "failed");
  const canText = lead.in_window && !!settings.greeting_text && !textRefused;
  // Sent again as what went unanswered, so one message row holds both tries.
  let kind: MessageKind = unanswered?.kind ?? (canText ? "text" : "template");
  if (kind === "template" && !settings.template_name) {
    throw new JobError(
      "The WhatsApp integration has no template_name, and the lead is outside the 24-hour window in which " +
        "free-form text may be sent",
      { code: "whatsapp_no_template", permanent: true },
    );
  }

  const graph = createGraphClient({ baseUrl: config.urls.graph_api });
  for (;;) {
    const messageId = messageIds[kind];
    await sql`
      insert into public.lead_messages (id, client_id, lead_id, direction, status, kind, body, template_name,
        send_started_at)
      values (${messageId}, ${lead.client_id}, ${lead.id}, 'outbound', 'queued', ${kind},
        ${kind === "text" ? settings.greeting_text! : null}, ${
      kind === "template" ? settings.template_name! : null
    }, now())
      on conflict (id) do update set status = 'queued', error = null, send_started_at = now()
      -- A message WhatsApp refused when it was sent goes out again only on a deliberate retry of the job
      -- (after the client fixed the cause), and is queued again so that its outcome is recorded.
      where lead_messages.status = 'queued'
        or (lead_messages.status = 'failed' and lead_messages.error ->> 'source' is distinct from 'whatsapp')`;
    try {
      const sent = await sendTo(graph, settings, integration.secret, lead, kind, messageId);
      await sql`
        update public.lead_messages
        set status = 'sent', provider_message_id = ${sent.messageId}, error = null, send_started_at = null
        where id = ${messageId} and status = 'queued'`;
      return { message_id: messageId, kind, provider_message_id: sent.messageId };
    } catch (error) {
      if (!(error instanceof GraphApiError)) throw error;
      const detail = errorRecord(error);
      if (error.status === 0 && error.action === "retry_later") {
        // No answer: the send stays pending (send_started_at) until a status confirms it or the wait ends.
        await sql`update public.lead_messages set error = ${sql.json(detail)} where id = ${messageId}`;
        throw new JobError(`WhatsApp did not answer the greeting: ${error.message}`, {
          code: "whatsapp_send_unconfirmed",
          retryAfterSeconds: retryAfter(config.whatsapp.unconfirmed_send_wait_seconds),
        });
      }
      if (error.action === "retry_later") {
        // Answered but not taken: the message stays queued (with the reason) and the job tries again later.
        await sql`
          update public.lead_messages set error = ${sql.json(detail)}, send_started_at = null
          where id = ${messageId}`;
        throw new JobError(`WhatsApp asked to retry later: ${error.message}`, {
          code: "whatsapp_retry_later",
        });
      }
      await sql`
        update public.lead_messages set status = 'failed', error = ${sql.json(detail)}, send_started_at = null
        where id = ${messageId} and status = 'queued'`;
      if (error.action === "template_required" && kind === "text" && settings.template_name) {
        kind = "template";
        continue;
      }
      if (error.action === "recipient_unreachable") {
        await sql.begin(async (tx) => {
          await tx`
            update public.leads set custom = custom || '{"whatsapp_unreachable": true}'::jsonb
            where id = ${lead.id} and client_id = ${lead.client_id}`;
          await tx`
            insert into public.lead_activities (client_id, lead_id, kind, data)
            values (${lead.client_id}, ${lead.id}, 'whatsapp_unreachable',
              ${tx.json({ message_id: messageId, phone: lead.phone, error: detail })})`;
        });
        return { message_id: messageId, kind, outcome: "recipient_unreachable", error: detail };
      }
      if (error.action === "token_invalid") {
        await markWhatsAppBroken(sql, job.client_id, error.message);
        throw new JobError(
          `WhatsApp refused the access token (${error.message}); the client's greetings are paused until ` +
            "WhatsApp is reconnected",
          { code: "whatsapp_token_invalid", permanent: true },
        );
      }
      throw new JobError(
        `WhatsApp refused the greeting: ${error.message}${error.details ? ` (${error.details})` : ""}`,
        {
          code: "whatsapp_refused",
          permanent: true,
        },
      );
    }
  }
}
