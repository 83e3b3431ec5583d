-- Retention of read notifications: a notification read retention.read_notifications_days ago goes with the
-- retention pass (sql/0037_retention.sql), at most a batch at a time like every table it prunes. Notifications
-- are an inbox, not the record of a lead (that is its activity timeline, which stays): a read one has served
-- its purpose, and every lead event adds one per recipient, so they grew with the leads forever. Unread ones
-- stay until their recipient reads them.
--
-- The pass reads the oldest read notifications through this index. Inserts leave it alone (a notification is
-- written unread); marking one read adds its entry.
create index notifications_read_at_idx on public.notifications (read_at) where read_at is not null;

-- app.prune_expired() of sql/0037_retention.sql with the age of read notifications as a new last argument;
-- the old signature goes, so a worker of an older release fails loudly instead of skipping them.
drop function app.prune_expired(int, int, int, int, int, int, int);

create function app.prune_expired(
  p_every_seconds int,
  p_batch int,
  p_jobs_days int,
  p_dead_days int,
  p_inbox_days int,
  p_deliveries_days int,
  p_sessions_days int,
  p_read_notifications_days int
) returns jsonb
language plpgsql
set search_path = ''
as $$
declare
  v_state app.retention_state;
  v_pruned jsonb;
begin
  if not pg_try_advisory_xact_lock(hashtextextended('prune_expired', 0)) then
    return null;
  end if;
  select * into v_state from app.retention_state;
  if found and not (v_state.pruned ->> 'more')::boolean
    and v_state.last_run_at > now() - make_interval(secs => p_every_seconds) then
    return null;
  end if;

  with jobs as (
    delete from app.jobs j where j.id in (
      select k.id from app.jobs k
      where k.finished_at < now() - make_interval(days => p_jobs_days)
        and (k.status <> 'dead' or k.finished_at < now() - make_interval(days => p_dead_days))
      order by k.finished_at limit p_batch)
    returning 1
  ), inbox as (
    delete from app.webhook_inbox i where i.id in (
      select w.id from app.webhook_inbox w
      where w.received_at < now() - make_interval(days => p_inbox_days)
        and (w.status = 'processed'
          or w.status in ('unroutable', 'failed') and w.received_at < now() - make_interval(days => p_dead_days))
      order by w.received_at limit p_batch)
    returning 1
  ), deliveries as (
    -- Ids grow with created_at, so the oldest attempts are the first ids: reading only the first p_batch of
    -- them finds every row due without an index on created_at.
    delete from public.webhook_deliveries d where d.id in (
      select f.id from (
        select x.id, x.created_at from public.webhook_deliveries x order by x.id limit p_batch
      ) f
      where f.created_at < now() - make_interval(days => p_deliveries_days))
    returning 1
  ), failed_events as (
    delete from app.outbox o where o.id in (
      select e.id from app.outbox e
      where e.failed_at < now() - make_interval(days => p_dead_days)
      order by e.failed_at limit p_batch)
    returning 1
  ), sessions as (
    delete from app.sessions s where s.id in (
      select x.id from app.sessions x
      where x.created_at < now() - make_interval(days => p_sessions_days)
        and (x.revoked_at < now() - make_interval(days => p_sessions_days)
          or x.revoked_at is null and not exists (
            select 1 from app.refresh_tokens t
            where t.session_id = x.id and t.expires_at >= now() - make_interval(days => p_sessions_days)))
      limit p_batch)
    returning s.id
  ), refresh_tokens as (
    -- Tokens of the sessions deleted above go with them (on delete cascade) and are not counted here.
    delete from app.refresh_tokens t where t.token_hash in (
      select r.token_hash from app.refresh_tokens r
      where r.expires_at < now() - make_interval(days => p_sessions_days)
        and r.session_id not in (select g.id from sessions g)
      order by r.expires_at limit p_batch)
    returning 1
  ), invitations as (
    delete from app.invitations i where i.token_hash in (
      select v.token_hash from app.invitations v
      where v.expires_at < now() - make_interval(days => p_sessions_days)
      limit p_batch)
    returning 1
  ), read_notifications as (
    delete from public.notifications n where n.id in (
      select r.id from public.notifications r
      where r.read_at < now() - make_interval(days => p_read_notifications_days)
      order by r.read_at limit p_batch)
    returning 1
  ), rate_limits as (
    delete from app.rate_limits r where r.key in (
      select l.key from app.rate_limits l where l.window_start < now() - interval '1 day' limit p_batch)
    returning 1
  )
  select jsonb_build_object(
    'jobs', (select count(*) from jobs),
    'webhook_inbox', (select count(*) from inbox),
    'webhook_deliveries', (select count(*) from deliveries),
    'failed_events', (select count(*) from failed_events),
    'sessions', (select count(*) from sessions),
    'refresh_tokens', (select count(*) from refresh_tokens),
    'invitations', (select count(*) from invitations),
    'rate_limits', (select count(*) from rate_limits),
    'read_notifications', (select count(*) from read_notifications))
  into v_pruned;
  -- A table that gave a whole batch may hold more: the next check runs a pass at once.
  v_pruned := v_pruned || jsonb_build_object('more',
    exists (select 1 from jsonb_each(v_pruned) e where e.value::int >= p_batch));

  insert into app.retention_state (id, last_run_at, pruned) values (true, now(), v_pruned)
  on conflict (id) do update set last_run_at = excluded.last_run_at, pruned = excluded.pruned;
  return v_pruned;
end
$$;
comment on function app.prune_expired(int, int, int, int, int, int, int, int) is
  'Deletes operational records and read notifications past their retention (sql/0037, sql/0041) when a pass is due.';
