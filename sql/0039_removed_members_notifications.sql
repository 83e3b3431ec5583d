-- A member removed from a client kept the notifications they had of it, and read them through the API: each
-- names a lead of the client (its name, email or phone) that the former member may no longer see.
--
-- 1. Removing a member (deleting their membership) deletes their notifications of that client, as deleting
--    the user or the client already did (sql/0038_notifications.sql).
-- 2. The dispatcher locks each recipient's membership instead of their user (FOR KEY SHARE), so a removal
--    committed while a dispatch waits leaves the member out, and one that comes during a dispatch waits for
--    it and then deletes what it wrote. Deleting a user deletes their memberships, so this lock also holds
--    off a user's deletion, which the user lock did before; it is still one lock per recipient.

-- The deletion trigger function of sql/0038_notifications.sql, with a case for memberships.
create or replace function app._delete_notifications_of_removed() returns trigger
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
    when 'memberships' then
      delete from public.notifications n using removed r
      where n.user_id = r.user_id and n.client_id = r.client_id;
  end case;
  return null;
end
$$;

create trigger on_memberships_deleted_notifications after delete on public.memberships
  referencing old table as removed
  for each statement execute function app._delete_notifications_of_removed();

-- The dispatcher of sql/0038_notifications.sql with the membership lock of (2).
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
    for key share of m
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
