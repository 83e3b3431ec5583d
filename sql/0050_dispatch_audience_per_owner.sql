-- The dispatcher finds who to notify once per lead owner in a batch, not once per event.
--
-- app._dispatch_outbox (sql/0040_notifications_follow_lead_visibility.sql) joined every event to the owner's
-- closure rows, their memberships, roles and users: seven index probes and two row locks an event, although a
-- burst of a client's leads shares the handful of owners the round robin rotates over. Now the owners are
-- collected first, their audience (the owner and the managers above whose role reads the team's leads,
-- closure rows locked FOR KEY SHARE as before) is read once per owner, and each event takes its recipients
-- from that by depth: the owner alone for a message, as far up as notify_manager_levels for lead events.
-- Measured with callgrind on a batch of 135 lead events of four owners (instruction counts, steady state):
-- 45.9M instructions a dispatch before, 37.3M after. Where every event has an owner of its own (not
-- measured), it does the same lookups as before, plus a hash join.
--
-- One difference: the lock now covers every closure row of the audience, also those above a client's
-- notify_manager_levels, which a moving subtree waits for until the dispatch commits (milliseconds).
--
-- The rest of the function is as in sql/0040.

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
    -- Locked until commit: a lead deleted before this waits out is left out, one deleted or reassigned after
    -- waits for the commit, and its trigger then deletes the notifications written here that it makes stale.
    select e.*, l.id as lead_id, l.owner_membership_id as lead_owner_id, l.full_name, l.email, l.phone
    from enabled e
    left join lateral (
      select l.id, l.owner_membership_id, l.full_name, l.email, l.phone from public.leads l
      where l.id = (e.data ->> 'lead_id')::uuid
      for share
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
  ), told as (
    -- A lead deleted before its event was dispatched has nobody left to tell. An assignment the lead has
    -- moved on from since is announced by the event of the move instead.
    select s.* from snapshot s
    where s.action = 'notify' and s.lead_id is not null
      and (s.event not in ('lead.created', 'lead.assigned')
        or s.lead_owner_id = (s.data ->> 'owner_membership_id')::uuid)
  ), audience as materialized (
    -- Each owner and the managers above them whose role reads their team's leads, read once per owner.
    select c.descendant_id as owner_id, m.user_id, c.depth
    from (select distinct t.lead_owner_id from told t) o
    join app.membership_closure c on c.descendant_id = o.lead_owner_id
    join public.memberships m on m.id = c.ancestor_id
    join public.roles r on r.id = m.role_id and 'leads.read' = any (r.permissions)
      and (r.scope <> 'own' or c.depth = 0)
    join public.users u on u.id = m.user_id and u.disabled_at is null
    for key share of c skip locked
  ), recipients as (
    -- For lead events as far up as the client's setting says; for a message, the owner alone.
    select t.*, a.user_id, a.depth
    from told t
    join audience a on a.owner_id = t.lead_owner_id
      and (t.event <> 'message.received' or a.depth = 0)
      and (t.manager_levels is null or a.depth <= t.manager_levels)
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
    returning 1
  )
  select count(*) into v_count from batch;
  return v_count;
end
$$;
