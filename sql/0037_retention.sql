-- Retention: operational records are deleted once they have served their purpose, so the queue, inbox,
-- delivery-log and sign-in tables keep the size of their window instead of growing with every lead and every
-- login forever (nothing pruned them before).
--
-- The worker calls app.prune_expired() with its periodic jobs, at most once a minute per worker. The function
-- decides whether a pass is due: p_every_seconds after the last pass, or at once when the last one stopped at
-- its batch size. One pass runs at a time across all workers. A pass deletes at most p_batch rows of each
-- table, so a backlog (the first pass on a large database) is worked off in short transactions.
--
-- What goes, and when (the ages come from config.toml [retention]):
--   app.jobs                   succeeded and cancelled jobs p_jobs_days after they finished; dead ones after
--                              p_dead_days (an operator may still want to read or replay them)
--   app.webhook_inbox          processed Meta and WhatsApp deliveries p_inbox_days after they arrived;
--                              unroutable and failed ones after p_dead_days; pending ones never
--   public.webhook_deliveries  the delivery log clients read, p_deliveries_days after each attempt
--   app.outbox                 events whose dispatch failed on its own (kept for inspection), after p_dead_days
--   app.sessions               revoked ones p_sessions_days after revocation; the others p_sessions_days after
--                              their newest refresh token expired, when nobody can use them any more. Their
--                              refresh tokens go with them (on delete cascade)
--   app.refresh_tokens         of sessions still in use, p_sessions_days after they expired: an expired token is
--                              refused whether or not its row is left
--   app.invitations            p_sessions_days after they expired
--   app.rate_limits            counters whose window began over a day ago. Every window is minutes long, and
--                              a missing row counts as a fresh window, which is what an ended one is
-- Leads and all that hangs off them (activities, notes, messages, notifications) are the clients' data and are
-- never pruned here.

-- The last pass: when it ran, what it deleted, and whether it stopped at its batch size.
create table app.retention_state (
  id boolean primary key default true check (id),
  last_run_at timestamptz not null,
  pruned jsonb not null
);
comment on table app.retention_state is 'The last retention pass (app.prune_expired): when, and how many rows went.';

-- The tables that grow with traffic are read oldest first through an index, so a pass costs the same whatever
-- their size (the delivery log through its ids, below); sessions, invitations and rate-limit counters are
-- read whole, once a pass. finished_at is set only on a job's last state (succeeded, dead, cancelled).
create index jobs_finished_at_idx on app.jobs (finished_at) where finished_at is not null;
create index webhook_inbox_received_at_idx on app.webhook_inbox (received_at);
create index refresh_tokens_expires_at_idx on app.refresh_tokens (expires_at);
-- Only failed events have an entry, so writing and dispatching the others costs this index nothing.
create index outbox_failed_at_idx on app.outbox (failed_at) where failed_at is not null;

-- Runs a retention pass when one is due; returns what it deleted per table and "more" (some table still had
-- rows to delete), or null when no pass was due or another one is running.
create function app.prune_expired(
  p_every_seconds int,
  p_batch int,
  p_jobs_days int,
  p_dead_days int,
  p_inbox_days int,
  p_deliveries_days int,
  p_sessions_days int
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
    'rate_limits', (select count(*) from rate_limits))
  into v_pruned;
  -- A table that gave a whole batch may hold more: the next check runs a pass at once.
  v_pruned := v_pruned || jsonb_build_object('more',
    exists (select 1 from jsonb_each(v_pruned) e where e.value::int >= p_batch));

  insert into app.retention_state (id, last_run_at, pruned) values (true, now(), v_pruned)
  on conflict (id) do update set last_run_at = excluded.last_run_at, pruned = excluded.pruned;
  return v_pruned;
end
$$;
comment on function app.prune_expired(int, int, int, int, int, int, int) is
  'Deletes operational records past their retention (sql/0037_retention.sql) when a pass is due.';
