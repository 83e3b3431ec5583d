-- Transactional outbox: every lead, message and membership event is written as a row in the same transaction
-- as the change itself, so an event exists exactly when its change committed. The dispatcher
-- (app.dispatch_events, sql/0022) turns these rows into jobs and notifications and deletes them.
--
-- No pg_notify here: measured on this machine, a NOTIFY in an insert trigger cut concurrent insert throughput
-- to 0.25-0.37x (NOTIFY serialises commits). Workers poll instead (BRIEF section 8).
--
-- The messages exchanged with a lead (WhatsApp, inbound and outbound) live here too: inbound messages are
-- events, and outbound ones are what the greeting jobs write.
--
-- security definer functions in this file and why:
--   app._outbox_*() trigger functions   write the private outbox whatever the writer's role

create table app.outbox (
  id bigint generated always as identity primary key,
  client_id text not null,
  event text not null,
  -- The lead, membership or message the event is about.
  subject_id uuid,
  data jsonb not null default '{}',
  created_at timestamptz not null default now(),
  -- Set when dispatching this event failed on its own (the rest of its batch went on); kept for inspection.
  failed_at timestamptz,
  error text
);
comment on table app.outbox is
  'Events not yet dispatched, written in the transaction of their change; deleted once turned into jobs.';
create index outbox_pending_idx on app.outbox (id) where failed_at is null;
-- A queue table: every row is deleted soon after it is written, so vacuum it early.
alter table app.outbox set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_vacuum_cost_delay = 0);

-- One outbox row per new lead: lead.created, or lead.duplicate for a lead that matched an earlier person.
-- Statement level, so a batch of 500 leads costs one trigger call and one insert.
create function app._outbox_leads_inserted() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into app.outbox (client_id, event, subject_id, data)
  select l.client_id, case when l.duplicate_of is null then 'lead.created' else 'lead.duplicate' end, l.id,
    jsonb_build_object('lead_id', l.id, 'owner_membership_id', l.owner_membership_id,
      'product_id', l.product_id, 'source', l.source, 'duplicate_of', l.duplicate_of)
  from inserted l;
  return null;
end
$$;

create trigger on_leads_inserted_outbox after insert on public.leads
  referencing new table as inserted
  for each statement execute function app._outbox_leads_inserted();

-- Reassignment and status changes.
create function app._outbox_leads_updated() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into app.outbox (client_id, event, subject_id, data)
  select n.client_id, 'lead.assigned', n.id,
    jsonb_build_object('lead_id', n.id, 'from', o.owner_membership_id, 'to', n.owner_membership_id,
      'owner_membership_id', n.owner_membership_id)
  from changed n join previous o on o.id = n.id
  where n.owner_membership_id is distinct from o.owner_membership_id and n.owner_membership_id is not null;
  insert into app.outbox (client_id, event, subject_id, data)
  select n.client_id, 'lead.status_changed', n.id,
    jsonb_build_object('lead_id', n.id, 'from', o.status, 'to', n.status,
      'owner_membership_id', n.owner_membership_id)
  from changed n join previous o on o.id = n.id
  where n.status <> o.status;
  return null;
end
$$;

create trigger on_leads_updated_outbox after update on public.leads
  referencing old table as previous new table as changed
  for each statement execute function app._outbox_leads_updated();

-- Members joining, leaving, changing role or manager.
create function app._outbox_membership_changed() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_row public.memberships := case when tg_op = 'DELETE' then old else new end;
begin
  if tg_op = 'UPDATE' and new.role_id is not distinct from old.role_id
      and new.reports_to is not distinct from old.reports_to then
    return null;
  end if;
  -- A member removed with their whole client leaves no event behind (nobody to tell).
  if tg_op = 'DELETE' and not exists (select 1 from public.clients c where c.id = old.client_id) then
    return null;
  end if;
  insert into app.outbox (client_id, event, subject_id, data)
  values (v_row.client_id,
    case tg_op when 'INSERT' then 'member.added' when 'DELETE' then 'member.removed' else 'member.changed' end,
    v_row.id,
    jsonb_build_object('membership_id', v_row.id, 'user_id', v_row.user_id, 'role_id', v_row.role_id,
      'reports_to', v_row.reports_to));
  return null;
end
$$;

create trigger on_memberships_outbox after insert or update or delete on public.memberships
  for each row execute function app._outbox_membership_changed();

-- Messages exchanged with a lead. Written by the platform (greeting jobs, the WhatsApp webhook), read by staff
-- who can see the lead. provider_message_id is the WhatsApp message id (wamid...), unique per channel, which
-- matches status updates to their message and makes inbound deliveries idempotent.
create table public.lead_messages (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  lead_id uuid not null references public.leads (id) on delete cascade,
  channel text not null default 'whatsapp',
  direction text not null,
  provider_message_id text,
  -- Outbound: queued, sent, delivered, read, failed (only ever forward); inbound: received.
  status text not null,
  kind text not null default 'text',
  body text,
  template_name text,
  error jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint lead_messages_channel_provider_message_id_key unique (channel, provider_message_id),
  constraint lead_messages_direction_check check (direction in ('inbound', 'outbound')),
  constraint lead_messages_status_check check (
    (direction = 'inbound' and status = 'received')
    or (direction = 'outbound' and status in ('queued', 'sent', 'delivered', 'read', 'failed'))
  ),
  constraint lead_messages_kind_check check (kind in ('text', 'template', 'media', 'interactive', 'other'))
);
comment on table public.lead_messages is
  'WhatsApp messages to and from a lead; outbound status only moves forward (sent, delivered, read).';
create index lead_messages_lead_id_created_at_idx on public.lead_messages (lead_id, created_at);
create index lead_messages_client_id_idx on public.lead_messages (client_id);

create trigger on_lead_messages_touch before update on public.lead_messages
  for each row execute function app._touch_updated_at();

create function app._outbox_message_received() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into app.outbox (client_id, event, subject_id, data)
  select m.client_id, 'message.received', m.id,
    jsonb_build_object('message_id', m.id, 'lead_id', m.lead_id, 'owner_membership_id', l.owner_membership_id,
      'channel', m.channel)
  from inserted m join public.leads l on l.id = m.lead_id
  where m.direction = 'inbound';
  return null;
end
$$;

create trigger on_lead_messages_inserted_outbox after insert on public.lead_messages
  referencing new table as inserted
  for each statement execute function app._outbox_message_received();
