/**
 * The WhatsApp webhook jobs (enqueued by app.route_webhook_inbox):
 *
 * - `whatsapp.inbound`: a message someone sent to the client's number. It is stored on the client's lead with
 *   that phone (E.164 "+" + wa_id, found through the contacts the routing triggers keep), with a timeline
 *   entry; the lead_messages insert writes the `message.received` outbox event that notifies the lead's
 *   owner. The WhatsApp message id is unique per channel, so a redelivery changes nothing. A sender who is
 *   no client lead creates nothing (result `{skipped: "no_lead"}`): WhatsApp numbers also hear from
 *   existing customers, staff and spam, which must not become leads and greetings; the raw delivery stays in
 *   app.webhook_inbox.
 * - `whatsapp.status`: a sent/delivered/read/failed report about a message the platform sent. Statuses only
 *   move forward (queued < sent < delivered < read; failed only from queued or sent), in one conditional
 *   UPDATE, so repeated and out-of-order reports are harmless; `failed` keeps WhatsApp's error. A report
 *   whose wamid is unknown but whose biz_opaque_callback_data names one of our messages that has no wamid
 *   yet confirms a send that got no answer (whatsapp_greeting.ts): the message takes the wamid.
 */
import type { Job } from "./queue.ts";
import { type JobContext, JobError } from "./worker.ts";

type Message = Record<string, unknown> & { id?: string; from?: string; timestamp?: string; type?: string };

const E164 = /^\+[1-9]\d{6,14}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const MEDIA = new Set(["image", "audio", "video", "document", "sticker"]);
const PREVIEW_CHARS = 200;

function field(value: unknown, ...path: string[]): string | undefined {
  let current = value;
  for (const key of path) {
    if (typeof current !== "object" || current === null) return undefined;
    current = (current as Record<string, unknown>)[key];
  }
  return typeof current === "string" ? current : undefined;
}

/** lead_messages.kind for a WhatsApp message type. */
function kindOf(type: string | undefined): string {
  if (type === "text") return "text";
  if (type && MEDIA.has(type)) return "media";
  if (type === "interactive" || type === "button") return "interactive";
  return "other";
}

/** The readable part of a message: its text, a caption, the button or list choice, a place or a reaction. */
function bodyOf(message: Message): string | null {
  const type = message.type ?? "";
  return field(message, "text", "body") ??
    (MEDIA.has(type) ? field(message, type, "caption") : undefined) ??
    field(message, "button", "text") ??
    field(message, "interactive", "button_reply", "title") ??
    field(message, "interactive", "list_reply", "title") ??
    field(message, "location", "name") ??
    field(message, "reaction", "emoji") ??
    null;
}

export async function receiveWhatsAppMessage(job: Job, { sql }: JobContext): Promise<unknown> {
  const message = (job.payload.message ?? {}) as Message;
  const wamid = message.id;
  const phone = `+${message.from ?? ""}`;
  if (!wamid) throw new JobError("The message has no id", { code: "invalid_message", permanent: true });
  if (!E164.test(phone)) return { skipped: "invalid_sender" };
  const body = bodyOf(message);
  const seconds = Number(message.timestamp);
  const sentAt = Number.isFinite(seconds) && seconds > 0 ? new Date(seconds * 1000).toISOString() : null;
  const [row] = await sql<{ lead_id: string | null; message_id: string | null }[]>`
    with person as (
      (select l.id from app.lead_contacts c join public.leads l on l.id = c.lead_id
       where c.client_id = ${job.client_id} and c.contact = 'phone:' || ${phone})
      union all
      (select l.id from public.leads l
       where l.client_id = ${job.client_id} and l.phone = ${phone} and l.duplicate_of is null
       order by l.created_at, l.id limit 1)
      limit 1
    ), stored as (
      insert into public.lead_messages (client_id, lead_id, channel, direction, provider_message_id, status,
        kind, body, created_at)
      select ${job.client_id}, p.id, 'whatsapp', 'inbound', ${wamid}, 'received', ${kindOf(message.type)},
        ${body}, coalesce(${sentAt}::timestamptz, now())
      from person p
      on conflict (channel, provider_message_id) do nothing
      returning id, lead_id
    ), timeline as (
      insert into public.lead_activities (client_id, lead_id, kind, data)
      select ${job.client_id}, s.lead_id, 'message_received', jsonb_build_object('message_id', s.id,
        'channel', 'whatsapp', 'provider_message_id', ${wamid}::text, 'type', ${message.type ?? null}::text,
        'preview', left(${body}::text, ${PREVIEW_CHARS}), 'sent_at', ${sentAt}::timestamptz)
      from stored s
    )
    select (select p.id from person p) as lead_id, (select s.id from stored s) as message_id`;
  if (!row.lead_id) return { skipped: "no_lead" };
  return {
    lead_id: row.lead_id,
    message_id: row.message_id,
    outcome: row.message_id ? "stored" : "existing",
  };
}

/** The statuses a message may be in before it moves to each status. */
const FORWARD_FROM: Record<string, string[]> = {
  sent: ["queued"],
  delivered: ["queued", "sent"],
  read: ["queued", "sent", "delivered"],
  failed: ["queued", "sent"],
};
/** Status reports for a message not recorded yet (its send is still committing) are retried this often. */
const UNKNOWN_MESSAGE_ATTEMPTS = 3;

export async function updateWhatsAppStatus(job: Job, { sql }: JobContext): Promise<unknown> {
  const report = (job.payload.status ?? {}) as Record<string, unknown>;
  const wamid = field(report, "id");
  const status = field(report, "status") ?? "";
  if (!wamid) throw new JobError("The status has no message id", { code: "invalid_status", permanent: true });
  const from = FORWARD_FROM[status];
  if (!from) return { skipped: "unknown_status", status };
  const first = Array.isArray(report.errors) ? report.errors[0] as Record<string, unknown> : undefined;
  const error = status === "failed"
    ? {
      source: "whatsapp",
      code: typeof first?.code === "number" || typeof first?.code === "string" ? first.code : null,
      title: field(first, "title") ?? null,
      message: field(first, "message") ?? null,
      details: field(first, "error_data", "details") ?? null,
    }
    : null;
  const callback = field(report, "biz_opaque_callback_data");
  const ownId = callback !== undefined && UUID.test(callback) ? callback : null;
  // The message by its wamid, or by our own id while its send is unanswered (no wamid recorded).
  const [row] = await sql<{ id: string | null; updated: boolean; status: string | null }[]>`
    with changed as (
      update public.lead_messages m set status = ${status},
        provider_message_id = ${wamid}, send_started_at = null,
        error = case when ${status} = 'failed' then ${error === null ? null : sql.json(error)}::jsonb
          when m.provider_message_id is null then null else m.error end
      where m.client_id = ${job.client_id} and m.channel = 'whatsapp' and m.direction = 'outbound'
        and (m.provider_message_id = ${wamid} or (m.provider_message_id is null and m.id = ${ownId}::uuid))
        and m.status = any (${from}::text[])
      returning m.id, m.status
    )
    select coalesce((select c.id from changed c), m.id) as id, exists (select 1 from changed) as updated,
      coalesce((select c.status from changed c), m.status) as status
    from (select 1) one
    left join public.lead_messages m on m.client_id = ${job.client_id} and m.channel = 'whatsapp'
      and m.direction = 'outbound'
      and (m.provider_message_id = ${wamid} or (m.provider_message_id is null and m.id = ${ownId}::uuid))`;
  if (row.id === null) {
    if (job.attempts < UNKNOWN_MESSAGE_ATTEMPTS) {
      throw new JobError(`No outbound message ${wamid} is recorded yet`, {
        code: "message_unknown",
        retryAfterSeconds: 15 * job.attempts,
      });
    }
    // Sent outside the platform (the WhatsApp Business app, another tool on the same number).
    return { skipped: "unknown_message" };
  }
  return { message_id: row.id, status: row.status, outcome: row.updated ? "updated" : "unchanged" };
}
