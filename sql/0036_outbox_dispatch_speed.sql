-- The dispatcher (app._dispatch_outbox, sql/0023_automations.sql) at 64 connections of single-lead ingest.
--
-- 1. It claims pending events through outbox_pending_idx in id order, whatever the table's statistics say.
--    The outbox is a queue: under load thousands of rows a second are written and deleted, and autovacuum
--    analyzes it at moments when it holds a handful of rows. With such statistics the planner read the claim
--    (`order by id limit n for update skip locked` inside `delete ... where id in (...)`) with a bitmap heap
--    scan and a sort, or with a sequential scan. Both visit every deleted row the index or the heap still
--    holds until vacuum: about 29,000 dead index entries and 1,000 heap pages for 97 live events, 4 ms of a
--    27 ms dispatch. A plain index scan marks the dead entries it passes, so the next claim skips them. The other
--    tables the statement reads are reached through their indexes either way (plain index scans now instead
--    of some bitmap ones), so the settings cost the rest of the plan nothing.
-- 2. The lead's JSON for webhook receivers is built only for events that some endpoint takes; it was built
--    for every (event, action) pair, notifications included.
--
-- Measured with the benchmark's platform and worker (wrk, 64 connections, 10 s, three interleaved runs), as
-- the dispatcher backend's CPU per lead: 0.137-0.141 ms with the function of sql/0023, 0.101-0.104 ms with
-- this one (0.130 in a run where everything was slower); all of PostgreSQL's 0.343-0.352 ms became
-- 0.307-0.309 ms. The claim's plan alone accounted for about half of that.
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
    select b.id as event_id, b.client_id, b.event, b.subject_id, b.data, b.created_at, cat.action
    from batch b
    join app.automation_catalog cat on cat.event = b.event
    left join public.automations a on a.client_id = b.client_id and a.event = b.event and a.action = cat.action
    where coalesce(a.enabled, cat.default_enabled)
      and exists (select 1 from public.clients c where c.id = b.client_id and c.status = 'active')
  ), snapshot as (
    -- The lead as it is when the event is dispatched (null once deleted); webhook_jobs reads the rest of it.
    select e.*, l.id as lead_id, l.full_name, l.email, l.phone
    from enabled e
    left join public.leads l on l.id = (e.data ->> 'lead_id')::uuid
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
    -- The owner and every manager above them for lead events; the owner alone for a message.
    select s.*, m.user_id, c.depth
    from snapshot s
    join app.membership_closure c on c.descendant_id = (s.data ->> 'owner_membership_id')::uuid
      and (s.event <> 'message.received' or c.depth = 0)
    join public.memberships m on m.id = c.ancestor_id
    join public.users u on u.id = m.user_id and u.disabled_at is null
    -- A lead deleted before its event was dispatched has nobody left to tell.
    where s.action = 'notify' and s.lead_id is not null
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
