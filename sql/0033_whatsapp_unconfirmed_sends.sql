-- A greeting whose send got no answer (a timeout, a reply lost on the way back, a worker that crashed during
-- the call) may or may not have reached the lead: the Cloud API takes no idempotency key, so sending again at
-- once could greet them twice. The greeting job now records when each send of a queued message starts, and
-- sends with biz_opaque_callback_data = the message's id, which every status webhook of that message echoes.
-- A retry that finds a send started and never answered waits ([whatsapp] unconfirmed_send_wait_seconds) for
-- such a status to confirm it (app.route_webhook_inbox -> whatsapp.status, which then records the message as
-- sent) and sends again only if none came.

alter table public.lead_messages add column send_started_at timestamptz;
comment on column public.lead_messages.send_started_at is
  'Outbound, queued: when a send began that WhatsApp has not answered yet (null once it answered or refused).';
