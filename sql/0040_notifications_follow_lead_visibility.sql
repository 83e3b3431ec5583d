-- A lead notification lasts only while its recipient's role in the client lets them see the lead; and the
-- notifications lose their (event, user) key, which no dispatch needs (at the end of this file).
--
-- Each lead notification names its lead (name, email or phone). Its recipient kept it after the lead was
-- reassigned away from them, after they or a member above the lead's owner moved in the hierarchy, and after
-- their role stopped reading the lead; the dispatcher also told members above the owner whose role does not
-- read their team's leads at all (an `own` scope, or no leads.read).
--
-- The rule, the leads select policy's for one member m and one lead: m's role holds leads.read and has the
-- `client` scope, or the `team` scope with m among the lead's viewers (app.lead_viewers: its owner and every
-- manager above), or the `own` scope with m its owner. Platform administrators read every lead without a
-- membership (the policy's last branch); they are told, and keep what they were told, by their memberships'
-- roles like anyone else.
--
-- - The dispatcher tells only the members the rule lets see the lead: its current owner and the managers
--   above them whose role reads their team's leads. A lead.created or lead.assigned event whose owner the
--   lead no longer has tells nobody: the event of the later assignment tells its new owner, once. It locks the lead FOR SHARE, so a reassignment waits for
--   the dispatch (and then forgets what the dispatch wrote for the members it takes the lead from), and one
--   committed first is the owner the dispatch reads. It locks the chain's closure rows (FOR KEY SHARE, once
--   per manager and owner rather than per notification), which a move deletes, and so does removing a member
--   or deleting a user (the closure's cascades), so it no longer locks memberships: a change committed first
--   leaves the member out, one that comes during the dispatch waits for it. A row such a change has deleted
--   but not committed is skipped, not waited for: the member is about to lose the lead, and a dispatcher that
--   waited could deadlock with a change of several rows.
--   Measured on one dispatch of 300 lead events (900 notifications), rolled back, alternating with the
--   dispatcher of sql/0039 (27-31 ms): locking each (member, lead) row of app.lead_viewers instead cost 4-7 ms
--   more; these locks and the role check cost 1.5-3 ms more.
-- - Reassignment re-indexes only the viewers that change (a manager above both the old and the new owner keeps
--   their row) and forgets the lost viewers' notifications of the lead; so does a move, for the managers the
--   moved subtree leaves.
-- - A member's new role, and a role's new scope or permissions, re-check the member's (or the role's
--   members') lead notifications against the rule, after locking their closure rows as managers: a dispatch in
--   flight holds some of them, so the re-check waits for it, and a dispatch that comes during the change skips
--   the members (while their role changes, they are not told).

-- Forgets the notifications of the given (viewer membership, lead) pairs, viewers who no longer see the lead
-- through the hierarchy, unless their role reads every lead of the client.
create function app._forget_lost_viewers_notifications(p_viewer_ids uuid[], p_lead_ids uuid[]) returns void
language sql
set search_path = ''
as $$
  delete from public.notifications n
  using unnest(p_viewer_ids, p_lead_ids) lost (viewer_id, lead_id), public.memberships m, public.roles r
  where m.id = lost.viewer_id and r.id = m.role_id
    and n.lead_id = lost.lead_id and n.user_id = m.user_id and n.client_id = m.client_id
    and not (r.scope = 'client' and 'leads.read' = any (r.permissions))
$$;

create or replace function app._reindex_reassigned_leads() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_clients text[];
  v_lost_viewers uuid[];
  v_lost_leads uuid[];
begin
  select array_agg(distinct n.client_id) into v_clients
  from changed n join previous o on o.id = n.id
  where n.owner_membership_id is distinct from o.owner_membership_id or n.created_at <> o.created_at;
  if v_clients is null then
    return null;
  end if;
  perform app._share_hierarchy(v_clients);
  update app.lead_viewers v set created_at = n.created_at
  from changed n join previous o on o.id = n.id
  where v.lead_id = n.id and n.created_at <> o.created_at;
  with lost as (
    delete from app.lead_viewers v
    using changed n join previous o on o.id = n.id
    where v.lead_id = n.id and n.owner_membership_id is distinct from o.owner_membership_id
      and not exists (
        select 1 from app.membership_closure c
        where c.descendant_id = n.owner_membership_id and c.ancestor_id = v.viewer_id
      )
    returning v.viewer_id, v.lead_id
  )
  select array_agg(lost.viewer_id), array_agg(lost.lead_id) into v_lost_viewers, v_lost_leads from lost;
  perform app._forget_lost_viewers_notifications(v_lost_viewers, v_lost_leads);
  insert into app.lead_viewers (viewer_id, created_at, lead_id)
  select c.ancestor_id, n.created_at, n.id
  from changed n join previous o on o.id = n.id
  join app.membership_closure c on c.descendant_id = n.owner_membership_id
  where n.owner_membership_id is distinct from o.owner_membership_id
  on conflict do nothing;
  return null;
end
$$;

create or replace function app._reindex_moved_subtree() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_lost_viewers uuid[];
  v_lost_leads uuid[];
begin
  with lost as (
    delete from app.lead_viewers v
    using app.membership_closure s, public.leads l, app.membership_closure lost
    where s.ancestor_id = new.id and l.owner_membership_id = s.descendant_id
      and lost.descendant_id = old.reports_to
      and not exists (
        select 1 from app.membership_closure kept
        where kept.descendant_id = new.reports_to and kept.ancestor_id = lost.ancestor_id
      )
      and v.viewer_id = lost.ancestor_id and v.created_at = l.created_at and v.lead_id = l.id
    returning v.viewer_id, v.lead_id
  )
  select array_agg(lost.viewer_id), array_agg(lost.lead_id) into v_lost_viewers, v_lost_leads from lost;
  perform app._forget_lost_viewers_notifications(v_lost_viewers, v_lost_leads);
  insert into app.lead_viewers (viewer_id, created_at, lead_id)
  select gained.ancestor_id, l.created_at, l.id
  from app.membership_closure s
  join public.leads l on l.owner_membership_id = s.descendant_id
  join app.membership_closure gained on gained.descendant_id = new.reports_to
  where s.ancestor_id = new.id
    and not exists (
      select 1 from app.membership_closure kept
      where kept.descendant_id = old.reports_to and kept.ancestor_id = gained.ancestor_id
    )
  on conflict do nothing;
  return null;
end
$$;

-- security definer: whoever changes a role need not have rights on its members' notifications.
create function app._forget_notifications_out_of_sight() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_members uuid[] := array(
    select m.id from public.memberships m
    where case tg_table_name when 'memberships' then m.id = new.id else m.role_id = new.id end
  );
begin
  -- The members' closure rows as managers, which a dispatch in flight holds for them: this waits for it (and
  -- the delete below, a statement of its own, sees what it wrote), and a dispatch that comes now skips them.
  perform 1 from app.membership_closure c where c.ancestor_id = any (v_members) for update;
  delete from public.notifications n
  using public.memberships m join public.roles r on r.id = m.role_id
  where m.id = any (v_members)
    and n.user_id = m.user_id and n.client_id = m.client_id and n.lead_id is not null
    and not ('leads.read' = any (r.permissions) and (
      r.scope = 'client'
      or (r.scope = 'team' and exists (
        select 1 from app.lead_viewers v where v.lead_id = n.lead_id and v.viewer_id = m.id
      ))
      or (r.scope = 'own' and exists (
        select 1 from public.leads l where l.id = n.lead_id and l.owner_membership_id = m.id
      ))
    ));
  return null;
end
$$;

create trigger on_memberships_role_changed_notifications after update of role_id on public.memberships
  for each row when (new.role_id is distinct from old.role_id)
  execute function app._forget_notifications_out_of_sight();
-- Only a new scope or a lost leads.read can narrow what a role's members see.
create trigger on_roles_changed_notifications after update of scope, permissions on public.roles
  for each row when (
    new.scope is distinct from old.scope
    or ('leads.read' = any (old.permissions) and not ('leads.read' = any (new.permissions)))
  )
  execute function app._forget_notifications_out_of_sight();

-- Without the (event, user) key. It made a repeated dispatch of an event harmless, but none can happen: the
-- dispatcher deletes each event in the statement that writes its notifications (a failed dispatch writes
-- nothing), and an event has one recipient row per manager (one closure row each, and one membership per
-- user and client). The key cost every notification an index entry: on the dispatch measured above, 28 ms
-- (median of 20) with it against 23 ms without, alternating.
alter table public.notifications drop constraint notifications_event_id_user_id_key;
comment on column public.notifications.event_id is
  'The outbox event it came from; each event is dispatched once, in the transaction that deletes it.';

-- The dispatcher of sql/0039_removed_members_notifications.sql, telling only the members the rule above lets
-- see the lead, locking as described above, and without the key.
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
  ), recipients as (
    -- The lead's owner and the managers above them whose role reads their team's leads, as far up as the
    -- client's setting says, for lead events; the owner alone for a message.
    select s.*, m.user_id, c.depth
    from snapshot s
    join app.membership_closure c on c.descendant_id = s.lead_owner_id
      and (s.event <> 'message.received' or c.depth = 0)
      and (s.manager_levels is null or c.depth <= s.manager_levels)
    join public.memberships m on m.id = c.ancestor_id
    join public.roles r on r.id = m.role_id and 'leads.read' = any (r.permissions)
      and (r.scope <> 'own' or c.depth = 0)
    join public.users u on u.id = m.user_id and u.disabled_at is null
    -- A lead deleted before its event was dispatched has nobody left to tell. An assignment the lead has
    -- moved on from since is announced by the event of the move instead.
    where s.action = 'notify' and s.lead_id is not null
      and (s.event not in ('lead.created', 'lead.assigned')
        or s.lead_owner_id = (s.data ->> 'owner_membership_id')::uuid)
    for key share of c skip locked
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
