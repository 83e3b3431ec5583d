-- Outbound webhooks: each client's own endpoints, the events they subscribe to, and a log of every delivery
-- attempt. Deliveries are signed with the Standard Webhooks scheme (webhook-id, webhook-timestamp,
-- webhook-signature over "id.timestamp.body"); the signing secret is sealed with AES-256-GCM by the API
-- before it reaches the database and kept apart from the endpoint in a private table.
--
-- security definer functions in this file and why:
--   app.set_webhook_secret()   writes the private secret table for a caller allowed to manage the endpoint

create table public.webhook_endpoints (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  url text not null,
  description text not null default '',
  -- Event names ("lead.created") or "*" for every event.
  events text[] not null default '{*}',
  enabled boolean not null default true,
  disabled_reason text,
  -- Start of the current run of failures; cleared by a success. Endpoints failing for days are disabled.
  failing_since timestamptz,
  last_success_at timestamptz,
  last_failure_at timestamptz,
  created_by uuid references public.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint webhook_endpoints_url_check check (url ~ '^https?://' and char_length(url) <= 2000),
  constraint webhook_endpoints_events_check check (cardinality(events) between 1 and 50)
);
comment on table public.webhook_endpoints is
  'A client''s HTTPS endpoints that receive signed lead, message and member events.';
create index webhook_endpoints_client_id_idx on public.webhook_endpoints (client_id);

-- Every event fans out one job per subscribed endpoint, so a client keeps a bounded number of them.
create function app._limit_webhook_endpoints() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock(hashtextextended('webhook-endpoints:' || new.client_id, 0));
  if (select count(*) from public.webhook_endpoints e where e.client_id = new.client_id) >= 20 then
    raise exception 'A client can have at most 20 webhook endpoints' using errcode = 'check_violation';
  end if;
  return new;
end
$$;

create trigger on_webhook_endpoints_insert before insert on public.webhook_endpoints
  for each row execute function app._limit_webhook_endpoints();

create trigger on_webhook_endpoints_touch before update on public.webhook_endpoints
  for each row execute function app._touch_updated_at();

create table app.webhook_secrets (
  endpoint_id uuid primary key references public.webhook_endpoints (id) on delete cascade,
  -- "v1.<iv>.<ciphertext>" from the secret box, bound to the endpoint id.
  secret_sealed text not null,
  created_at timestamptz not null default now()
);
comment on table app.webhook_secrets is 'Sealed signing secrets of webhook endpoints (never returned).';

-- Stores an endpoint's sealed secret when the caller may manage that endpoint's client (checked through the
-- endpoint's own policies: the caller must see it).
create function app.set_webhook_secret(p_endpoint_id uuid, p_secret_sealed text) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_client text;
begin
  select e.client_id into v_client from public.webhook_endpoints e where e.id = p_endpoint_id;
  if v_client is null or not (app.has_permission(v_client, 'webhooks.manage') or app.is_platform_admin()) then
    return false;
  end if;
  insert into app.webhook_secrets (endpoint_id, secret_sealed) values (p_endpoint_id, p_secret_sealed)
  on conflict (endpoint_id) do update set secret_sealed = excluded.secret_sealed, created_at = now();
  return true;
end
$$;
grant execute on function app.set_webhook_secret(uuid, text) to authenticated;

-- Every delivery attempt, for the endpoint's delivery log. message_id is the webhook-id receivers dedupe on;
-- it stays the same on every retry and replay of one event.
create table public.webhook_deliveries (
  id bigint generated always as identity primary key,
  client_id text not null references public.clients (id) on delete cascade,
  endpoint_id uuid not null references public.webhook_endpoints (id) on delete cascade,
  job_id bigint,
  message_id text not null,
  event text not null,
  attempt int not null,
  succeeded boolean not null,
  status_code int,
  duration_ms int,
  error text,
  response_excerpt text,
  created_at timestamptz not null default now()
);
comment on table public.webhook_deliveries is 'One row per webhook delivery attempt: status, timing and error.';
create index webhook_deliveries_endpoint_id_id_idx on public.webhook_deliveries (endpoint_id, id desc);
create index webhook_deliveries_client_id_idx on public.webhook_deliveries (client_id);

-- Successful deliveries are logged when their jobs complete: the worker completes jobs in batches, so this
-- costs one insert per batch instead of one transaction per delivery (measured: the per-delivery write was
-- the worker's main cost). The endpoint's health is touched only when it was failing or its last success is
-- over a minute old, so concurrent workers do not queue on the endpoint's row. Failures are logged by the
-- worker as they happen.
create function app._log_webhook_successes() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  with delivered as (
    select d.id as job_id, d.client_id, d.attempts, d.result -> 'delivery' as delivery
    from done d
    where d.kind = 'webhook.deliver' and d.status = 'succeeded' and d.result ? 'delivery'
  ), logged as (
    insert into public.webhook_deliveries (client_id, endpoint_id, job_id, message_id, event, attempt, succeeded,
      status_code, duration_ms, response_excerpt)
    select v.client_id, e.id, v.job_id, v.delivery ->> 'message_id', v.delivery ->> 'event', v.attempts, true,
      (v.delivery ->> 'status_code')::int, (v.delivery ->> 'duration_ms')::int, v.delivery ->> 'response_excerpt'
    from delivered v join public.webhook_endpoints e on e.id = (v.delivery ->> 'endpoint_id')::uuid
  )
  update public.webhook_endpoints e set failing_since = null, last_success_at = now()
  where e.id in (select distinct (v.delivery ->> 'endpoint_id')::uuid from delivered v)
    and (e.failing_since is not null or e.last_success_at is null or e.last_success_at < now() - interval '1 minute');
  return null;
end
$$;

create trigger on_jobs_webhook_delivered after update on app.jobs
  referencing new table as done
  for each statement execute function app._log_webhook_successes();
