-- Notifications: written without foreign keys, and only as far up the reporting line as the client wants.
--
-- 1. Without foreign keys. Only the dispatcher (app._dispatch_outbox) and app.notify_admins_once() write
-- notifications, for a client, recipients and lead they have just read; yet each row had its three keys
-- checked again one by one: with two recipients per lead (an owner and one manager above), six row-lock
-- checks per lead, each a query of its own. Measured by calling the dispatcher with pgbench on one dispatch
-- of 300 lead events (590 notifications), rolled back each time, six alternating runs of 20: 26.0-31.5 ms
-- (median 30.8) with the keys, 19.0-23.8 ms (22.4) with the locks below instead, 16.5-20.5 ms (18.6) with
-- neither.
--
-- What the keys did is done here instead:
-- - The cascades: statement triggers delete the notifications of deleted leads (notifications_lead_id_idx),
--   users (notifications_user_id_created_at_idx) and clients (a scan, as the key's cascade did).
-- - Nothing written about a row being deleted: the dispatcher locks each lead as it reads it and the users it
--   notifies (FOR KEY SHARE, what a key check takes, but once per row instead of once per notification and
--   key, and without a query per check). A client's deletion deletes its leads, so the lead locks hold it off
--   too. app.notify_admins_once(), whose notices have no lead, locks its recipients' memberships, which
--   deleting a user or a client deletes.

alter table public.notifications
  drop constraint notifications_client_id_fkey,
  drop constraint notifications_user_id_fkey,
  drop constraint notifications_lead_id_fkey;

-- security definer: whoever deletes a lead, user or client need not have rights on other users'
-- notifications.
create function app._delete_notifications_of_removed() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  case tg_table_name
    when 'leads' then
      delete from public.notifications n using removed r where n.lead_id = r.id;
    when 'users' then
      delete from public.notifications n using removed r where n.user_id = r.id;
    when 'clients' then
      delete from public.notifications n using removed r where n.client_id = r.id;
  end case;
  return null;
end
$$;

create trigger on_leads_deleted_notifications after delete on public.leads
  referencing old table as removed
  for each statement execute function app._delete_notifications_of_removed();
create trigger on_users_deleted_notifications after delete on public.users
  referencing old table as removed
  for each statement execute function app._delete_notifications_of_removed();
create trigger on_clients_deleted_notifications after delete on public.clients
  referencing old table as removed
  for each statement execute function app._delete_notifications_of_removed();

-- 2. How far up the reporting line lead notifications go, per client: clients.settings.notify_manager_levels.
-- Every manager above a lead's owner was told of each of its lead events, so in a deep hierarchy the people
-- at the top received one notification for every lead of the client: noise for them, and one notification
-- row (five index entries) per level for every lead. Now a client may keep them to the owner (0), the owner
-- and their manager (1), and so on; without the setting (or with null) every manager is told, as before.
-- WhatsApp replies still go to the owner alone.

-- The API validates the setting too (functions/api/clients/clients.routes.ts); this holds it for every other
-- writer, such as supabase-js through the clients policies.
alter table public.clients add constraint clients_notify_manager_levels_check check (
  case coalesce(jsonb_typeof(settings -> 'notify_manager_levels'), 'null')
    when 'null' then true
    when 'number' then (settings ->> 'notify_manager_levels')::numeric between 0 and 100
      and (settings ->> 'notify_manager_levels')::numeric % 1 = 0
    else false
  end
);

-- The dispatcher of sql/0036_outbox_dispatch_speed.sql, locking the leads and users it writes about (1) and
-- reading the client's setting with its status (2). Each lead is locked in a lateral subquery of its event:
-- as a CTE joined back, the planner's one-row estimates for CTEs made the join a nested loop over both,
-- quadratic in the batch (60 ms for 300 events).
create or replace function app._dispatch_outbox(p_limit int, p_max_attempts int, p_ids bigint[]) returns int
language plpgsql
set search_path = ''
set jit = off
set enable_seqscan = off
set enable_bitmapscan = off
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
    select b.id as event_id, b.client_id, b.event, b.subject_id, b.data, b.created_at, cat.action,
      (cl.settings ->> 'notify_manager_levels')::numeric as manager_levels
    from batch b
    join public.clients cl on cl.id = b.client_id and cl.status = 'active'
    join app.automation_catalog cat on cat.event = b.event
    left join public.automations a on a.client_id = b.client_id and a.event = b.event and a.action = cat.action
    where coalesce(a.enabled, cat.default_enabled)
  ), snapshot as (
    -- The lead as it is when the event is dispatched (null once deleted); webhook_jobs reads the rest of it.
    -- Locked until commit: a lead deleted before this waits out is left out, one deleted after waits for the
    -- commit, and its trigger then deletes the notifications written here.
    select e.*, l.id as lead_id, l.full_name, l.email, l.phone
    from enabled e
    left join lateral (
      select l.id, l.full_name, l.email, l.phone from public.leads l
      where l.id = (e.data ->> 'lead_id')::uuid
      for key share
    ) l on true
  ), lead_jobs as (
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select s.client_id, replace(s.action, '_', '.'), jsonb_build_object('lead_id', s.data ->> 'lead_id',
        'event_id', s.event_id),
      format('event:%s:%s', s.event_id, s.action), p_max_attempts
    from snapshot s
    where s.action in ('whatsapp_greeting', 'sheets_append') and s.lead_id is not null
    on conflict (idempotency_key) do nothing
    returning 1
  ), webhook_jobs as (
    -- What receivers are told about the lead; built only for events some endpoint takes.
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select s.client_id, 'webhook.deliver',
      jsonb_build_object('endpoint_id', w.id, 'message_id', 'evt_' || s.event_id, 'event', s.event,
        'timestamp', s.created_at,
        'data', s.data || case when l.id is null then '{}'::jsonb else jsonb_build_object('lead', jsonb_build_object(
          'id', l.id, 'full_name', l.full_name, 'email', l.email, 'phone', l.phone, 'source', l.source,
          'status', l.status, 'product_id', l.product_id, 'owner_membership_id', l.owner_membership_id,
          'duplicate_of', l.duplicate_of, 'utm_source', l.utm_source, 'utm_medium', l.utm_medium,
          'utm_campaign', l.utm_campaign, 'custom', l.custom, 'created_at', l.created_at)) end),
      format('event:%s:webhook:%s', s.event_id, w.id), p_max_attempts
    from snapshot s
    join public.webhook_endpoints w on w.client_id = s.client_id and w.enabled
      and (s.event = any (w.events) or '*' = any (w.events))
    left join public.leads l on l.id = s.lead_id
    where s.action = 'webhook'
    on conflict (idempotency_key) do nothing
    returning 1
  ), recipients as (
    -- The owner and the managers above them, as far up as the client's setting says, for lead events; the
    -- owner alone for a message.
    select s.*, m.user_id, c.depth
    from snapshot s
    join app.membership_closure c on c.descendant_id = (s.data ->> 'owner_membership_id')::uuid
      and (s.event <> 'message.received' or c.depth = 0)
      and (s.manager_levels is null or c.depth <= s.manager_levels)
    join public.memberships m on m.id = c.ancestor_id
    join public.users u on u.id = m.user_id and u.disabled_at is null
    -- A lead deleted before its event was dispatched has nobody left to tell.
    where s.action = 'notify' and s.lead_id is not null
    for key share of u
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
      r.lead_id, r.data, r.event_id
    from recipients r
    on conflict (event_id, user_id) do nothing
    returning 1
  )
  select count(*) into v_count from batch;
  return v_count;
end
$$;

-- app.notify_admins_once() of sql/0023_automations.sql, locking its recipients' memberships.
create or replace function app.notify_admins_once(
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
    for key share of m
  ), sent as (
    insert into public.notifications (client_id, user_id, kind, title, body, data)
    select r.client_id, r.user_id, p_kind, p_title, p_body, p_data || jsonb_build_object('key', p_key)
    from recipients r
    returning 1
  )
  select count(*)::int from sent;
$$;
