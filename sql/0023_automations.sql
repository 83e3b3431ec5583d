-- What happens after an event: each client's automation settings (which actions run for which events),
-- in-app notifications, and the dispatcher that turns outbox events into jobs and notifications.
--
-- Notifications are written by the dispatcher itself, in the transaction that consumes the event: they are a
-- local insert with nothing to retry, so a job per notification would only add latency.
--
-- security definer functions in this file and why:
--   app.dispatch_events()    called by the worker (database owner); not granted to API roles

-- Every (event, action) pair the platform can automate, with its default for clients that never changed it.
create table app.automation_catalog (
  event text not null,
  action text not null,
  default_enabled boolean not null,
  description text not null,
  constraint automation_catalog_pkey primary key (event, action)
);
comment on table app.automation_catalog is 'The automations that exist, and whether each is on by default.';

insert into app.automation_catalog (event, action, default_enabled, description) values
  ('lead.created', 'notify', true, 'Notify the lead''s owner and their managers in the app'),
  ('lead.created', 'whatsapp_greeting', false, 'Greet the lead on WhatsApp with the client''s template'),
  ('lead.created', 'sheets_append', false, 'Append the lead to the client''s Google Sheet'),
  ('lead.created', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('lead.duplicate', 'notify', true, 'Notify the owner that a known person came back'),
  ('lead.duplicate', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('lead.assigned', 'notify', true, 'Notify the new owner and their managers in the app'),
  ('lead.assigned', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('lead.status_changed', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('message.received', 'notify', true, 'Notify the lead''s owner of a WhatsApp reply'),
  ('message.received', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('member.added', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('member.changed', 'webhook', true, 'Deliver the event to the client''s webhook endpoints'),
  ('member.removed', 'webhook', true, 'Deliver the event to the client''s webhook endpoints');

-- A client's changes to the defaults; a pair without a row follows the catalog.
create table public.automations (
  client_id text not null references public.clients (id) on delete cascade,
  event text not null,
  action text not null,
  enabled boolean not null,
  updated_by uuid references public.users (id) on delete set null,
  updated_at timestamptz not null default now(),
  constraint automations_pkey primary key (client_id, event, action),
  constraint automations_event_action_fkey foreign key (event, action)
    references app.automation_catalog (event, action) on delete cascade
);
comment on table public.automations is 'Per-client automation switches overriding the catalog defaults.';

create trigger on_automations_touch before update on public.automations
  for each row execute function app._touch_updated_at();

-- In-app notifications. Only the recipient reads them (and marks them read); supabase-js clients subscribe
-- through Supabase Realtime, which applies the same policies.
create table public.notifications (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  user_id uuid not null references public.users (id) on delete cascade,
  kind text not null,
  title text not null,
  body text not null default '',
  lead_id uuid references public.leads (id) on delete cascade,
  data jsonb not null default '{}',
  -- The outbox event it came from: one notification per event and recipient, however often dispatched.
  event_id bigint,
  created_at timestamptz not null default now(),
  read_at timestamptz,
  constraint notifications_event_id_user_id_key unique (event_id, user_id)
);
comment on table public.notifications is 'In-app notifications; each row is visible to its recipient only.';
create index notifications_user_id_created_at_idx on public.notifications (user_id, created_at desc, id desc);
create index notifications_user_id_unread_idx on public.notifications (user_id) where read_at is null;

-- Supabase Realtime streams changes of tables in its publication; on plain PostgreSQL there is none.
do $$
begin
  if exists (select 1 from pg_publication where pubname = 'supabase_realtime') then
    alter publication supabase_realtime add table public.notifications;
  end if;
end
$$;

-- Notifies a client's owners and admins unless they were told the same thing (kind and data.key) within
-- p_interval: a credential expiring in a few days is announced once a day, not on every hourly check; a
-- broken integration or a disabled webhook endpoint once, however many jobs notice it.
create function app.notify_admins_once(
  p_client_id text,
  p_kind text,
  p_key text,
  p_title text,
  p_body text,
  p_data jsonb,
  p_interval interval
) returns int
language sql
set search_path = ''
as $$
  with recipients as (
    select m.client_id, m.user_id
    from public.memberships m
    join public.roles r on r.id = m.role_id
    join public.users u on u.id = m.user_id and u.disabled_at is null
    where m.client_id = p_client_id and r.key in ('owner', 'admin')
      and not exists (
        select 1 from public.notifications n
        where n.user_id = m.user_id and n.client_id = p_client_id and n.kind = p_kind
          and n.data ->> 'key' = p_key and n.created_at > now() - p_interval
      )
  ), sent as (
    insert into public.notifications (client_id, user_id, kind, title, body, data)
    select r.client_id, r.user_id, p_kind, p_title, p_body, p_data || jsonb_build_object('key', p_key)
    from recipients r
    returning 1
  )
  select count(*)::int from sent;
$$;

-- Consumes outbox events (the oldest p_limit, skipping those another dispatcher holds, or exactly p_ids) in
-- one statement: enqueues a job per enabled external action (one per endpoint for webhooks), writes the
-- notifications, and deletes the events. A crash before commit leaves the events for the next dispatch; job
-- idempotency keys and the notifications' (event, user) key make a repeated dispatch harmless.
create function app._dispatch_outbox(p_limit int, p_max_attempts int, p_ids bigint[]) returns int
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_count int;
begin
  with batch as (
    delete from app.outbox o
    where o.id in (
      select b.id from app.outbox b
      where b.failed_at is null and (p_ids is null or b.id = any (p_ids))
      order by b.id limit p_limit for update skip locked
    )
    returning o.*
  ), enabled as (
    select b.id as event_id, b.client_id, b.event, b.subject_id, b.data, b.created_at, cat.action
    from batch b
    join app.automation_catalog cat on cat.event = b.event
    left join public.automations a on a.client_id = b.client_id and a.event = b.event and a.action = cat.action
    where coalesce(a.enabled, cat.default_enabled)
      and exists (select 1 from public.clients c where c.id = b.client_id and c.status = 'active')
  ), snapshot as (
    -- What receivers and notifications say about the lead, as it is when the event is dispatched.
    select e.*, l.full_name, l.email, l.phone,
      case when l.id is null then null else jsonb_build_object('id', l.id, 'full_name', l.full_name,
        'email', l.email, 'phone', l.phone, 'source', l.source, 'status', l.status, 'product_id', l.product_id,
        'owner_membership_id', l.owner_membership_id, 'duplicate_of', l.duplicate_of, 'utm_source', l.utm_source,
        'utm_medium', l.utm_medium, 'utm_campaign', l.utm_campaign, 'custom', l.custom,
        'created_at', l.created_at) end as lead
    from enabled e
    left join public.leads l on l.id = (e.data ->> 'lead_id')::uuid
  ), lead_jobs as (
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select s.client_id, replace(s.action, '_', '.'), jsonb_build_object('lead_id', s.data ->> 'lead_id',
        'event_id', s.event_id),
      format('event:%s:%s', s.event_id, s.action), p_max_attempts
    from snapshot s
    where s.action in ('whatsapp_greeting', 'sheets_append') and s.lead is not null
    on conflict (idempotency_key) do nothing
    returning 1
  ), webhook_jobs as (
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select s.client_id, 'webhook.deliver',
      jsonb_build_object('endpoint_id', w.id, 'message_id', 'evt_' || s.event_id, 'event', s.event,
        'timestamp', s.created_at,
        'data', s.data || case when s.lead is null then '{}'::jsonb else jsonb_build_object('lead', s.lead) end),
      format('event:%s:webhook:%s', s.event_id, w.id), p_max_attempts
    from snapshot s
    join public.webhook_endpoints w on w.client_id = s.client_id and w.enabled
      and (s.event = any (w.events) or '*' = any (w.events))
    where s.action = 'webhook'
    on conflict (idempotency_key) do nothing
    returning 1
  ), recipients as (
    -- The owner and every manager above them for lead events; the owner alone for a message.
    select s.*, m.user_id, c.depth
    from snapshot s
    join app.membership_closure c on c.descendant_id = (s.data ->> 'owner_membership_id')::uuid
      and (s.event <> 'message.received' or c.depth = 0)
    join public.memberships m on m.id = c.ancestor_id
    join public.users u on u.id = m.user_id and u.disabled_at is null
    -- A lead deleted before its event was dispatched has nobody left to tell.
    where s.action = 'notify' and s.lead is not null
  ), notified as (
    insert into public.notifications (client_id, user_id, kind, title, body, lead_id, data, event_id)
    select r.client_id, r.user_id, r.event,
      case r.event
        when 'lead.created' then case when r.depth = 0 then 'New lead assigned to you' else 'New lead in your team' end
        when 'lead.duplicate' then 'A known lead got in touch again'
        when 'lead.assigned' then case when r.depth = 0 then 'Lead assigned to you' else 'Lead assigned in your team' end
        when 'message.received' then 'New WhatsApp message'
        else r.event
      end,
      coalesce(r.full_name, r.email, r.phone, ''),
      (r.lead ->> 'id')::uuid, r.data, r.event_id
    from recipients r
    on conflict (event_id, user_id) do nothing
    returning 1
  )
  select count(*) into v_count from batch;
  return v_count;
end
$$;

-- The dispatcher the worker calls. When a batch fails (an event that cannot be dispatched, e.g. its lead or
-- client vanished mid-way), its events are retried one by one and only the failing ones are parked with
-- their error, so one bad event never holds back the others.
create function app.dispatch_events(p_limit int, p_max_attempts int) returns int
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_count int := 0;
  v_id bigint;
begin
  begin
    return app._dispatch_outbox(p_limit, p_max_attempts, null);
  exception when others then
    for v_id in
      select o.id from app.outbox o where o.failed_at is null order by o.id limit p_limit for update skip locked
    loop
      begin
        v_count := v_count + app._dispatch_outbox(1, p_max_attempts, array[v_id]);
      exception when others then
        update app.outbox set failed_at = now(), error = sqlerrm where id = v_id;
      end;
    end loop;
    return v_count;
  end;
end
$$;
