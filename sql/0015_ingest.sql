-- Lead ingestion in one statement per request: authenticate the API key, check scope, origin, client and
-- the key's rate limit, then insert every item (already validated and normalised by the ingest function)
-- idempotently on (client, source, external_ref). Deduplication and assignment happen in the leads
-- triggers. Returns {"error": ...} or {"client_id": ..., "key_id": ..., "results": [...], "rate_limit": ...},
-- one result per item.
--
-- security definer functions in this file and why:
--   app.ingest_leads()          reads the private key table and writes leads for a caller without a session
--   app.origin_allowed()        answers CORS preflights from the private key table
--
-- Neither is granted to any API role: only the ingest function, connected as the database owner, calls them.

-- Performance: the per-key rate-limit count and the key's last_used_at are the only rows every request of a
-- key writes, and row locks last until commit. Measured here with 20 connections sending single leads with one
-- key: one bucket row per key serialised the requests (220-390 requests/s, against 750-900 with no rate limit
-- at all). So the count is kept in 16 buckets per key ("key:<id>:<n>", n from the backend pid, so concurrent
-- connections rarely share one; 590-800 requests/s), read without locking first (the request is refused when
-- their sum is already at the limit) and incremented last. A burst of N simultaneous requests can overshoot
-- the limit by at most N - 1. last_used_at is written at most once a minute, also last.
create function app.ingest_leads(p_key_hash bytea, p_origin text, p_scope text, p_items jsonb) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key app.api_keys;
  v_window timestamptz := to_timestamp(floor(extract(epoch from now()) / 60) * 60);
  v_hits int;
  v_buckets text[];
  v_limit record;
  v_results jsonb;
begin
  select * into v_key from app.api_keys k where k.key_hash = p_key_hash;
  if not found then
    return jsonb_build_object('error', 'key_invalid');
  elsif v_key.revoked_at is not null then
    return jsonb_build_object('error', 'key_revoked');
  elsif v_key.expires_at is not null and v_key.expires_at <= now() then
    return jsonb_build_object('error', 'key_expired');
  elsif not (p_scope = any (v_key.scopes)) then
    return jsonb_build_object('error', 'scope_missing', 'scope', p_scope);
  elsif p_origin is not null and not (p_origin = any (v_key.allowed_origins)) then
    return jsonb_build_object('error', 'origin_not_allowed');
  elsif not exists (select 1 from public.clients c where c.id = v_key.client_id and c.status = 'active') then
    return jsonb_build_object('error', 'client_inactive', 'client_id', v_key.client_id);
  end if;

  v_buckets := array(select 'key:' || v_key.id || ':' || n from generate_series(0, 15) n);
  select coalesce(sum(r.hits), 0) into v_hits from app.rate_limits r
  where r.key = any (v_buckets) and r.window_start = v_window;
  if v_hits >= v_key.rate_limit_per_minute then
    return jsonb_build_object('error', 'rate_limited', 'client_id', v_key.client_id,
      'limit', v_key.rate_limit_per_minute,
      'retry_after', greatest(1, ceil(extract(epoch from v_window + interval '60 seconds' - now())))::int);
  end if;

  -- The insert trigger claims each lead's email, then its phone (app._claim_contact, sql/0013); two batches
  -- sharing people in different orders would deadlock on those claims. Batches of one client therefore take
  -- turns (one lock, not one per contact, so a batch of 500 needs one lock-table slot). Single leads claim
  -- in the trigger's fixed order and skip it; the ingest function retries the rare deadlock left between a
  -- single lead and a batch.
  if jsonb_array_length(p_items) > 1 then
    perform pg_advisory_xact_lock(hashtextextended('ingest-batch:' || v_key.client_id, 0));
  end if;

  with input as materialized (
    select (item ->> 'index')::int as index, gen_random_uuid() as id, item
    from jsonb_array_elements(p_items) item
  ), items as (
    select i.index, i.id, coalesce(i.item ->> 'source', v_key.default_source) as source,
           i.item ->> 'external_ref' as external_ref, (i.item ->> 'product_id')::uuid as product_id, i.item
    from input i
  ), checked as (
    select it.*,
      it.product_id is null or exists (
        select 1 from public.client_products cp where cp.client_id = v_key.client_id and cp.product_id = it.product_id
      ) as product_ok,
      e.id as existing_id, e.duplicate_of as existing_duplicate_of
    from items it
    left join lateral (
      select l.id, l.duplicate_of from public.leads l
      where it.external_ref is not null
        and l.client_id = v_key.client_id and l.source = it.source and l.external_ref = it.external_ref
    ) e on true
  ), inserted as (
    insert into public.leads (id, client_id, source, external_ref, full_name, email, phone, product_id,
      utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom, raw_payload)
    select c.id, v_key.client_id, c.source, c.external_ref, c.item ->> 'full_name', c.item ->> 'email',
      c.item ->> 'phone', c.product_id, c.item ->> 'utm_source', c.item ->> 'utm_medium',
      c.item ->> 'utm_campaign', c.item ->> 'utm_term', c.item ->> 'utm_content',
      coalesce((c.item ->> 'consent')::boolean, false), coalesce(c.item -> 'custom', '{}'),
      coalesce(c.item -> 'raw_payload', '{}')
    from checked c
    where c.product_ok and c.existing_id is null
    order by c.index
    on conflict (client_id, source, external_ref) do nothing
    returning id, duplicate_of, owner_membership_id
  )
  select jsonb_agg(
    case
      when not c.product_ok then jsonb_build_object('index', c.index, 'outcome', 'invalid', 'errors',
        jsonb_build_array(jsonb_build_object('path', 'product_id', 'code', 'product_not_enabled',
          'message', 'This product is not enabled for the client')))
      when c.existing_id is not null then jsonb_build_object('index', c.index, 'outcome', 'existing',
        'lead_id', c.existing_id, 'duplicate_of', c.existing_duplicate_of)
      when ins.id is null then jsonb_build_object('index', c.index, 'outcome', 'existing', 'lead_id', null,
        'source', c.source, 'external_ref', c.external_ref)
      else jsonb_build_object('index', c.index, 'lead_id', ins.id, 'outcome',
        case when ins.duplicate_of is null then 'created' else 'duplicate' end,
        'duplicate_of', ins.duplicate_of, 'assigned_to', ins.owner_membership_id)
    end order by c.index)
  into v_results
  from checked c left join inserted ins on ins.id = c.id;

  -- Lost an idempotency race: a concurrent request (or an earlier item of this batch) stored the same
  -- external_ref after this statement's snapshot. That row is committed or our own now, so look it up.
  if v_results @? '$[*] ? (@.lead_id == null && @.outcome == "existing")' then
    select jsonb_agg(
      case when r ->> 'outcome' = 'existing' and r -> 'lead_id' = 'null'::jsonb then coalesce((
        select jsonb_build_object('index', r -> 'index', 'outcome', 'existing', 'lead_id', l.id,
          'duplicate_of', l.duplicate_of)
        from public.leads l
        where l.client_id = v_key.client_id and l.source = r ->> 'source' and l.external_ref = r ->> 'external_ref'),
        r - 'source' - 'external_ref')
      else r end order by (r ->> 'index')::int)
    into v_results
    from jsonb_array_elements(v_results) r;
  end if;

  select * into v_limit from app.rate_limit_hit(v_buckets[1 + pg_backend_pid() % 16], v_key.rate_limit_per_minute, 60);
  -- At most one write a minute per key.
  update app.api_keys k set last_used_at = now()
  where k.id = v_key.id and (k.last_used_at is null or k.last_used_at < now() - interval '1 minute');

  return jsonb_build_object('client_id', v_key.client_id, 'key_id', v_key.id,
    'results', coalesce(v_results, '[]'::jsonb),
    'rate_limit', jsonb_build_object('limit', v_key.rate_limit_per_minute,
      'remaining', greatest(v_key.rate_limit_per_minute - v_hits - 1, 0), 'reset', v_limit.reset_seconds));
end
$$;

-- True when some active key accepts browser requests from this origin (CORS preflights carry no key).
create function app.origin_allowed(p_origin text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from app.api_keys k
    where k.revoked_at is null and k.allowed_origins @> array[p_origin]
      and (k.expires_at is null or k.expires_at > now())
  );
$$;
