-- Periodic work: the hourly credential health check of every client with a WhatsApp integration or a Meta
-- page, and the Meta Lead Ads backfill of every connected form every 15 minutes (leads whose webhook never
-- arrived). Workers call app.schedule_periodic_jobs() at most once a minute each; the idempotency keys carry
-- the period ("health:<client>:<yyyy-mm-dd-hh>", "backfill:<form>:<yyyy-mm-ddThh:mi>" of the quarter hour),
-- so any number of workers enqueue each job once per period.
--
-- A credential is first checked about an hour after it was connected (the connect flow checks it itself),
-- and a form is first backfilled 15 minutes after it was connected; nothing is enqueued for inactive
-- clients, for forms whose Meta jobs are paused (a broken page token: the health check lifts the pause once
-- the page works again) or that still have a backfill waiting, so paused work does not pile up.
--
-- On Supabase, pg_cron calls the worker function every minute through pg_net (see the end of this file);
-- on plain PostgreSQL that part is skipped and the local stack's worker polls.
--
-- Called by the worker, connected as the database owner; none of these functions is granted to API roles.

-- Enqueues the periodic jobs due now; returns how many were new (0 when another worker was first).
create function app.schedule_periodic_jobs(p_max_attempts int) returns int
language plpgsql
set search_path = ''
as $$
declare
  v_hour text := to_char(now() at time zone 'utc', 'YYYY-MM-DD-HH24');
  v_quarter text := to_char(
    date_bin('15 minutes', now() at time zone 'utc', timestamp '2000-01-01'), 'YYYY-MM-DD"T"HH24:MI');
  v_health int;
  v_backfill int;
begin
  with due as (
    select i.client_id from public.integrations i
    where i.kind = 'whatsapp' and i.enabled
      and coalesce(i.checked_at, i.created_at) <= now() - interval '55 minutes'
    union
    select p.client_id from public.meta_pages p
    where coalesce(p.checked_at, p.created_at) <= now() - interval '55 minutes'
  ), inserted as (
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select d.client_id, 'integrations.health', '{}'::jsonb, format('health:%s:%s', d.client_id, v_hour),
      p_max_attempts
    from due d
    join public.clients c on c.id = d.client_id and c.status = 'active'
    on conflict (idempotency_key) do nothing
    returning 1
  )
  select count(*) into v_health from inserted;

  with inserted as (
    insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
    select f.client_id, 'meta.backfill', jsonb_build_object('form_id', f.form_id),
      format('backfill:%s:%s', f.form_id, v_quarter), p_max_attempts
    from public.meta_forms f
    join public.meta_pages p on p.page_id = f.page_id and p.client_id = f.client_id
    join public.clients c on c.id = f.client_id and c.status = 'active'
    where f.created_at <= now() - interval '15 minutes'
      and not exists (
        select 1 from app.job_pauses jp where jp.client_id = f.client_id and 'meta.backfill' like jp.kind_pattern
      )
      and not exists (
        select 1 from app.jobs j
        where j.client_id = f.client_id and j.status in ('queued', 'running') and j.kind = 'meta.backfill'
          and j.payload ->> 'form_id' = f.form_id
      )
    on conflict (idempotency_key) do nothing
    returning 1
  )
  select count(*) into v_backfill from inserted;
  return v_health + v_backfill;
end
$$;
comment on function app.schedule_periodic_jobs(int) is
  'Enqueues the hourly credential checks and the quarter-hourly Meta backfills, once per period.';

-- Supabase: pg_cron runs the worker function every minute through pg_net (pg_net's requests are fire and
-- forget, which is fine here: the jobs themselves are durable and the next minute calls again). The URL and
-- the worker secret come from Supabase Vault, read when the cron job runs, so no secret is in this file:
--
--   select vault.create_secret('https://<project-ref>.supabase.co/functions/v1/worker', 'lap_worker_url');
--   select vault.create_secret('<WORKER_SECRET>', 'lap_worker_secret');
--
-- Scheduled here only when pg_cron, pg_net and both secrets exist; after creating the secrets later, run
-- `select app.schedule_worker_cron();` once. On plain PostgreSQL nothing happens.
create function app.schedule_worker_cron() returns boolean
language plpgsql
set search_path = ''
as $$
begin
  if not exists (select 1 from pg_extension where extname = 'pg_cron')
      or not exists (select 1 from pg_extension where extname = 'pg_net')
      or to_regclass('vault.decrypted_secrets') is null then
    return false;
  end if;
  if (select count(*) from vault.decrypted_secrets where name in ('lap_worker_url', 'lap_worker_secret')) < 2 then
    return false;
  end if;
  -- cron.schedule replaces a job of the same name, so calling this again is harmless.
  perform cron.schedule('lap-worker', '* * * * *', $cmd$
    select net.http_post(
      url := (select decrypted_secret from vault.decrypted_secrets where name = 'lap_worker_url'),
      headers := jsonb_build_object('content-type', 'application/json', 'x-worker-secret',
        (select decrypted_secret from vault.decrypted_secrets where name = 'lap_worker_secret')),
      body := '{}'::jsonb,
      timeout_milliseconds := 30000)
  $cmd$);
  return true;
end
$$;

do $$
begin
  perform app.schedule_worker_cron();
end
$$;
