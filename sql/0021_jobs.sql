-- Durable job queue in ordinary logged tables (pg_net's queue is unlogged and keeps no retries). Workers
-- claim due jobs with FOR UPDATE SKIP LOCKED and a lease; a job whose lease runs out (its worker crashed) is
-- rescued by the next claim. Failures retry with the backoff the worker computes from config.toml; after the
-- last attempt a job is dead, keeping every error, until an admin retries or cancels it. A per-client cap on
-- running jobs keeps one noisy client from starving the rest.
--
-- Completion is fenced: only the worker holding the current lease (locked_by, attempts) may finish a job,
-- so a worker that lost its lease cannot overwrite the outcome of the one that took over.
--
-- These functions are called by the worker, connected as the database owner; none is granted to API roles.

create table app.jobs (
  id bigint generated always as identity primary key,
  client_id text not null references public.clients (id) on delete cascade,
  kind text not null,
  payload jsonb not null default '{}',
  -- One job per effect: "event:<outbox id>:<action>[:<target>]", or the caller's own key.
  idempotency_key text not null,
  status text not null default 'queued',
  attempts int not null default 0,
  max_attempts int not null,
  run_at timestamptz not null default now(),
  locked_by text,
  locked_until timestamptz,
  -- Every failed attempt: [{attempt, at, message, code?}], oldest first.
  errors jsonb not null default '[]',
  result jsonb,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  finished_at timestamptz,
  constraint jobs_idempotency_key_key unique (idempotency_key),
  constraint jobs_status_check check (status in ('queued', 'running', 'succeeded', 'dead', 'cancelled')),
  constraint jobs_max_attempts_check check (max_attempts between 1 and 100)
);
comment on table app.jobs is
  'Background work (greetings, sheet appends, webhooks, Meta fetches) with leases, retries and a dead state.';
create index jobs_client_id_run_at_idx on app.jobs (client_id, run_at, id) where status = 'queued';
create index jobs_locked_until_idx on app.jobs (locked_until) where status = 'running';
create index jobs_client_id_id_idx on app.jobs (client_id, id desc);
-- Every job is rewritten two or three times (claim, completion, retries), and claims walk the queued index:
-- vacuum early so dead entries do not pile up in it (measured: 20,000 dead rows cut claims to a sixth).
alter table app.jobs set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
  autovacuum_vacuum_cost_delay = 0);

create trigger on_jobs_touch before update on app.jobs
  for each row execute function app._touch_updated_at();

-- Kinds of a client's jobs that must not run for now (a dead WhatsApp token pauses only that client's
-- greetings; everything else keeps flowing). kind_pattern is a LIKE pattern: 'whatsapp.greeting', 'meta.%'.
create table app.job_pauses (
  client_id text not null references public.clients (id) on delete cascade,
  kind_pattern text not null,
  reason text not null,
  created_at timestamptz not null default now(),
  constraint job_pauses_pkey primary key (client_id, kind_pattern)
);
comment on table app.job_pauses is 'Job kinds held back per client, for example while a credential is broken.';

-- Enqueues a job once per idempotency key; returns its id (the existing job's for a repeated key).
create function app.enqueue_job(
  p_client_id text,
  p_kind text,
  p_payload jsonb,
  p_idempotency_key text,
  p_max_attempts int,
  p_run_at timestamptz default now()
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  v_id bigint;
begin
  insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts, run_at)
  values (p_client_id, p_kind, p_payload, p_idempotency_key, p_max_attempts, p_run_at)
  on conflict (idempotency_key) do nothing
  returning id into v_id;
  if v_id is null then
    select j.id into v_id from app.jobs j where j.idempotency_key = p_idempotency_key;
  end if;
  return v_id;
end
$$;

-- Claims up to p_limit due jobs for one worker: first rescues jobs whose lease expired (back to queued, or
-- dead when that was their last attempt), then takes the oldest due jobs of each client without paused
-- kinds, at most p_client_cap running per client, interleaving clients so each gets its turn. Only kinds in
-- p_kinds (the handlers the worker has) are taken, so a worker never dead-letters a job another one can run;
-- p_clients, when not null, dedicates the worker to those clients (e.g. a large client's own workers).
create function app.claim_jobs(
  p_worker text,
  p_limit int,
  p_lease_seconds int,
  p_client_cap int,
  p_kinds text[],
  p_clients text[] default null
)
returns setof app.jobs
language plpgsql
set search_path = ''
-- Measured on a 40,000-job queue: PL/pgSQL's generic plan (chosen after five calls) takes ~27 ms a claim
-- against ~2 ms for a plan made with the call's values, and JIT compilation adds ~20 ms; both are off.
set plan_cache_mode = force_custom_plan
set jit = off
as $$
begin
  update app.jobs j set
    status = case when j.attempts >= j.max_attempts then 'dead' else 'queued' end,
    finished_at = case when j.attempts >= j.max_attempts then now() end,
    run_at = now(),
    errors = j.errors || jsonb_build_array(jsonb_build_object('attempt', j.attempts, 'at', now(),
      'code', 'lease_expired',
      'message', format('Worker %s stopped before finishing (lease expired)', j.locked_by))),
    locked_by = null,
    locked_until = null
  where j.id in (
    select r.id from app.jobs r where r.status = 'running' and r.locked_until < now() for update skip locked
  );

  return query
  with recursive clients (client_id) as (
    -- Loose index scan: each client with queued jobs, without reading every queued row.
    (select j.client_id from app.jobs j where j.status = 'queued' order by j.client_id limit 1)
    union all
    select (select j.client_id from app.jobs j where j.status = 'queued' and j.client_id > c.client_id
            order by j.client_id limit 1)
    from clients c where c.client_id is not null
  ), running as (
    select j.client_id, count(*) as n from app.jobs j where j.status = 'running' group by j.client_id
  ), picked as (
    select p.id, p.run_at, row_number() over (partition by c.client_id order by p.run_at, p.id) as turn
    from clients c
    cross join lateral (
      select j.id, j.run_at from app.jobs j
      where j.client_id = c.client_id and j.status = 'queued' and j.run_at <= now() and j.kind = any (p_kinds)
        and not exists (
          select 1 from app.job_pauses p where p.client_id = j.client_id and j.kind like p.kind_pattern
        )
      order by j.run_at, j.id
      limit greatest(0, least(p_limit,
        p_client_cap - coalesce((select r.n from running r where r.client_id = c.client_id), 0)))
      for update of j skip locked
    ) p
    where c.client_id is not null and (p_clients is null or c.client_id = any (p_clients))
  ), chosen as (
    select pk.id from picked pk order by pk.turn, pk.run_at, pk.id limit p_limit
  )
  update app.jobs j set
    status = 'running',
    attempts = j.attempts + 1,
    locked_by = p_worker,
    locked_until = now() + make_interval(secs => p_lease_seconds)
  from chosen
  where j.id = chosen.id
  returning j.*;
end
$$;

-- Marks jobs done; only those still leased to this worker on the given attempt count. Returns their ids.
create function app.complete_jobs(p_worker text, p_jobs jsonb) returns setof bigint
language sql
set search_path = ''
set jit = off
as $$
  update app.jobs j set status = 'succeeded', result = d.result, finished_at = now(), locked_by = null,
    locked_until = null
  from jsonb_to_recordset(p_jobs) as d (id bigint, attempt int, result jsonb)
  where j.id = d.id and j.status = 'running' and j.locked_by = p_worker and j.attempts = d.attempt
  returning j.id;
$$;

-- Records a failed attempt: retried after p_retry_seconds, or dead when it was the last attempt or the error
-- is permanent. Returns the new status, or null when the job is no longer leased to this worker.
create function app.fail_job(
  p_worker text,
  p_id bigint,
  p_attempt int,
  p_error jsonb,
  p_retry_seconds numeric,
  p_permanent boolean
) returns text
language sql
set search_path = ''
set jit = off
as $$
  update app.jobs j set
    status = case when p_permanent or j.attempts >= j.max_attempts then 'dead' else 'queued' end,
    finished_at = case when p_permanent or j.attempts >= j.max_attempts then now() end,
    run_at = now() + make_interval(secs => p_retry_seconds),
    errors = j.errors || jsonb_build_array(p_error || jsonb_build_object('attempt', j.attempts, 'at', now())),
    locked_by = null,
    locked_until = null
  where j.id = p_id and j.status = 'running' and j.locked_by = p_worker and j.attempts = p_attempt
  returning j.status;
$$;

-- Gives unfinished jobs back on shutdown without counting the attempt.
create function app.release_jobs(p_worker text, p_ids bigint[]) returns int
language sql
set search_path = ''
as $$
  with released as (
    update app.jobs j set status = 'queued', attempts = j.attempts - 1, run_at = now(), locked_by = null,
      locked_until = null
    where j.id = any (p_ids) and j.status = 'running' and j.locked_by = p_worker
    returning 1
  )
  select count(*)::int from released;
$$;

-- An admin's retry: a dead or cancelled job (or a queued one waiting for its backoff) runs again now with a
-- fresh set of attempts; its error history stays. Returns the job's status afterwards, null when not found.
create function app.retry_job(p_client_id text, p_id bigint, p_max_attempts int) returns text
language sql
set search_path = ''
as $$
  update app.jobs j set status = 'queued', run_at = now(), finished_at = null,
    max_attempts = j.attempts + p_max_attempts
  where j.id = p_id and j.client_id = p_client_id and j.status in ('dead', 'cancelled', 'queued')
  returning j.status;
$$;

-- An admin's cancel of a job that has not finished and is not running.
create function app.cancel_job(p_client_id text, p_id bigint) returns text
language sql
set search_path = ''
as $$
  update app.jobs j set status = 'cancelled', finished_at = now()
  where j.id = p_id and j.client_id = p_client_id and j.status in ('queued', 'dead')
  returning j.status;
$$;
