-- app.ingest_requests returns the parts of its replies; the ingest function assembles them.
--
-- Its last step (sql/0047_rate_limit_reset_of_counted_window.sql) regrouped every item's result under its
-- request and rebuilt each request's reply as jsonb: three key deletions, two objects, a concatenation and a
-- sorted aggregate per request, each a copy of the value. That is presentation, and the database is the
-- dearest place to do it: measured with callgrind (instruction counts, steady state, one backend), a call of
-- 64 single-lead requests took 75.6M instructions with the step and 68.8M without it, 0.1M a request, about
-- 10% of the call; a JavaScript loop does the same for a few microseconds of the function's CPU.
--
-- Returns {"replies": one per request, in order: a refusal {"error", ...} as before, or the admitted
-- request's {"client_id", "key_id", "default_source", "rank", "limit"}; "results": every item's result with
-- its "request" and "index", in no order; "bases" and "resets": per key id, the count before this call and
-- the seconds to the end of the window it was counted in}. The rest of the function is as in sql/0047.
--
-- security definer functions in this file and why:
--   app.ingest_requests()   as in sql/0045_one_call_ingest.sql: reads the private key table, counts in the
--                           private rate-limit table and writes leads for callers without a session

create or replace function app.ingest_requests(p_requests jsonb, p_items text) returns jsonb
language plpgsql
security definer
set search_path = ''
-- The planner sees no row counts in jsonb and estimates big groups; compiling them with JIT cost ~130 ms a call.
set jit = off
set lock_timeout = '5s'
as $$
declare
  v_window timestamptz := to_timestamp(floor(extract(epoch from now()) / 60) * 60);
  v_reset int := greatest(1, ceil(extract(epoch from v_window + interval '60 seconds' - now())))::int;
  v_replies jsonb;
  v_counts jsonb;
  v_bases jsonb;
  v_resets jsonb;
  v_overrun boolean;
  v_accepted jsonb;
  v_results jsonb;
  v_pending jsonb;
  v_more jsonb;
begin
  -- Step 0: admission. Each counted request's place is the window's committed count plus its rank.
  with req as (
    select (t.ord - 1)::int as request, decode(t.r ->> 'key_hash', 'hex') as key_hash, t.r ->> 'origin' as origin,
           t.r ->> 'scope' as scope
    from jsonb_array_elements(p_requests) with ordinality t (r, ord)
  ), keyed as materialized (
    select q.request, q.scope, k.id as key_id, k.client_id, k.default_source, k.rate_limit_per_minute as lim,
      case
        when k.id is null then 'key_invalid'
        when k.revoked_at is not null then 'key_revoked'
        when k.expires_at is not null and k.expires_at <= now() then 'key_expired'
        when not (q.scope = any (k.scopes)) then 'scope_missing'
        when q.origin is not null and not (q.origin = any (k.allowed_origins)) then 'origin_not_allowed'
        when not exists (select 1 from public.clients c where c.id = k.client_id and c.status = 'active')
          then 'client_inactive'
      end as error
    from req q left join app.api_keys k on k.key_hash = q.key_hash
  ), standing as materialized (
    select kd.request, kd.key_id, kd.lim,
      -- A newer window than this call's (a call that started later counted first) takes these requests too.
      coalesce(r.hits, 0) as base,
      v_reset + coalesce(extract(epoch from r.window_start - v_window)::int, 0) as reset,
      row_number() over (partition by kd.key_id order by kd.request) as rank
    from keyed kd
    -- A lookup by key per request (the limit keeps it a nested loop), as the scalar subquery was.
    left join lateral (
      select r.hits, r.window_start from app.rate_limits r
      where r.key = 'key:' || kd.key_id and r.window_start >= v_window
      limit 1
    ) r on true
    where kd.error is null
  )
  select
    (select jsonb_agg(
      case
        when kd.error = 'scope_missing' then jsonb_build_object('error', kd.error, 'scope', kd.scope)
        when kd.error = 'client_inactive' then jsonb_build_object('error', kd.error, 'client_id', kd.client_id)
        when kd.error is not null then jsonb_build_object('error', kd.error)
        when s.base + s.rank - 1 >= kd.lim then jsonb_build_object('error', 'rate_limited',
          'client_id', kd.client_id, 'limit', kd.lim, 'retry_after', s.reset)
        else jsonb_build_object('client_id', kd.client_id, 'key_id', kd.key_id,
          'default_source', kd.default_source, 'rank', s.rank, 'limit', kd.lim)
      end order by kd.request)
    from keyed kd left join standing s on s.request = kd.request),
    (select jsonb_agg(jsonb_build_object('key_id', g.key_id, 'limit', g.lim, 'added', g.added, 'admitted', g.admitted))
    from (
      select s.key_id, min(s.lim) as lim, count(*) as added,
        count(*) filter (where s.base + s.rank - 1 < s.lim) as admitted
      from standing s group by s.key_id
    ) g)
  into v_replies, v_counts;

  select jsonb_object_agg(t.ord - 1, t.reply) into v_accepted
  from jsonb_array_elements(v_replies) with ordinality t (reply, ord)
  where t.reply ? 'key_id';

  if v_accepted is not null then
    -- Steps 1 and 2: claim contacts, route and insert the new people; collect everything else.
    perform set_config('app.leads_routed', 'on', true);
    with items as materialized (
      select (t.ord - 1)::int as request, (i.item ->> 'index')::int as index, app.uuid_v7() as id,
        a.value ->> 'client_id' as client_id, coalesce(i.item ->> 'source', a.value ->> 'default_source') as source,
        i.item ->> 'external_ref' as external_ref, (i.item ->> 'product_id')::uuid as product_id,
        nullif(lower(btrim(i.item ->> 'email')), '') as email, nullif(btrim(i.item ->> 'phone'), '') as phone,
        i.item
      from jsonb_array_elements(p_items::jsonb) with ordinality t (r, ord)
      join jsonb_each(v_accepted) a on a.key = (t.ord - 1)::text
      cross join lateral jsonb_array_elements(t.r) i (item)
    ), checked as materialized (
      select it.*,
        it.product_id is null or exists (
          select 1 from public.client_products cp where cp.client_id = it.client_id and cp.product_id = it.product_id
        ) as product_ok,
        e.id as existing_id, e.duplicate_of as existing_duplicate_of,
        e.raw_payload is distinct from coalesce(it.item -> 'raw_payload', '{}') as existing_reused
      from items it
      left join lateral (
        select l.id, l.duplicate_of, l.raw_payload from public.leads l
        where it.external_ref is not null
          and l.client_id = it.client_id and l.source = it.source and l.external_ref = it.external_ref
        limit 1
      ) e on true
    ), wanted as (
      select c.client_id, x.contact, c.id, c.request, c.index
      from checked c
      cross join lateral (values ('email:' || c.email), ('phone:' || c.phone)) x (contact)
      where c.product_ok and c.existing_id is null and x.contact is not null
    ), claimed as (
      insert into app.lead_contacts (client_id, contact, lead_id)
      select d.client_id, d.contact, d.id
      from (
        select distinct on (w.client_id, w.contact) w.client_id, w.contact, w.id
        from wanted w
        order by w.client_id, w.contact, w.request, w.index
      ) d
      order by d.client_id, d.contact
      on conflict do nothing
      returning client_id, contact, lead_id
    ), fresh as (
      select w.id
      from wanted w left join claimed cl on cl.client_id = w.client_id and cl.contact = w.contact and cl.lead_id = w.id
      group by w.id
      having bool_and(cl.lead_id is not null)
    ), pools as (
      select g.client_id, g.product_id, ru.turn_sequence, (
        select array_agg(m.id order by m.id)
        from public.memberships m
        join public.users u on u.id = m.user_id and u.disabled_at is null
        join public.roles ro on ro.id = m.role_id
        where m.client_id = g.client_id and m.available
          and (ro.key = any (ru.role_keys) or m.id = any (ru.membership_ids))
      ) as pool
      from (select distinct c.client_id, c.product_id from checked c join fresh f on f.id = c.id) g
      cross join lateral (
        select r.turn_sequence, r.role_keys, r.membership_ids from public.assignment_rules r
        where r.client_id = g.client_id and r.enabled and (r.product_id = g.product_id or r.product_id is null)
        order by r.product_id nulls last
        limit 1
      ) ru
    ), routed as materialized (
      select c.*,
        case when p.pool is not null
          then p.pool[1 + (nextval(p.turn_sequence::regclass) - 1) % cardinality(p.pool)] end as owner_id
      from checked c
      join fresh f on f.id = c.id
      left join pools p on p.client_id = c.client_id and p.product_id is not distinct from c.product_id
    ), inserted as (
      insert into public.leads (id, client_id, source, external_ref, full_name, email, phone, product_id,
        owner_membership_id, utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom,
        raw_payload)
      select r.id, r.client_id, r.source, r.external_ref, r.item ->> 'full_name', r.email, r.phone, r.product_id,
        r.owner_id, r.item ->> 'utm_source', r.item ->> 'utm_medium', r.item ->> 'utm_campaign',
        r.item ->> 'utm_term', r.item ->> 'utm_content', coalesce((r.item ->> 'consent')::boolean, false),
        coalesce(r.item -> 'custom', '{}'), coalesce(r.item -> 'raw_payload', '{}')
      from routed r
      order by r.request, r.index
      on conflict (client_id, source, external_ref) do nothing
      returning id
    )
    select
      jsonb_agg(
        case
          when not c.product_ok then jsonb_build_object('request', c.request, 'index', c.index, 'outcome', 'invalid',
            'errors', jsonb_build_array(jsonb_build_object('path', 'product_id', 'code', 'product_not_enabled',
              'message', 'This product is not enabled for the client')))
          when c.existing_id is not null then jsonb_build_object('request', c.request, 'index', c.index,
            'outcome', 'existing', 'lead_id', c.existing_id, 'duplicate_of', c.existing_duplicate_of,
            'reused', c.existing_reused)
          when ins.id is not null then jsonb_build_object('request', c.request, 'index', c.index, 'lead_id', ins.id,
            'outcome', 'created', 'duplicate_of', null)
          else jsonb_build_object('request', c.request, 'index', c.index, 'outcome', 'existing', 'lead_id', null,
            'client_id', c.client_id, 'source', c.source, 'external_ref', c.external_ref,
            'raw', coalesce(c.item -> 'raw_payload', '{}'))
        end)
        filter (where not c.product_ok or c.existing_id is not null or r.id is not null),
      jsonb_agg(jsonb_build_object('request', c.request, 'index', c.index, 'id', c.id, 'client_id', c.client_id,
          'source', c.source, 'external_ref', c.external_ref, 'product_id', c.product_id, 'email', c.email,
          'phone', c.phone, 'item', c.item) order by c.request, c.index)
        filter (where c.product_ok and c.existing_id is null and r.id is null)
    into v_results, v_pending
    from checked c
    left join routed r on r.id = c.id
    left join inserted ins on ins.id = c.id;
    perform set_config('app.leads_routed', 'off', true);

    -- Step 3: a contact seen before: the routing trigger links each lead to its original, in order.
    if v_pending is not null then
      with pending as (
        select (p ->> 'request')::int as request, (p ->> 'index')::int as index, (p ->> 'id')::uuid as id,
          p ->> 'client_id' as client_id, p ->> 'source' as source, p ->> 'external_ref' as external_ref,
          (p ->> 'product_id')::uuid as product_id, p ->> 'email' as email, p ->> 'phone' as phone, p -> 'item' as item
        from jsonb_array_elements(v_pending) p
      ), inserted as (
        insert into public.leads (id, client_id, source, external_ref, full_name, email, phone, product_id,
          utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom, raw_payload)
        select p.id, p.client_id, p.source, p.external_ref, p.item ->> 'full_name', p.email, p.phone, p.product_id,
          p.item ->> 'utm_source', p.item ->> 'utm_medium', p.item ->> 'utm_campaign', p.item ->> 'utm_term',
          p.item ->> 'utm_content', coalesce((p.item ->> 'consent')::boolean, false),
          coalesce(p.item -> 'custom', '{}'), coalesce(p.item -> 'raw_payload', '{}')
        from pending p
        order by p.request, p.index
        on conflict (client_id, source, external_ref) do nothing
        returning id, duplicate_of, owner_membership_id
      )
      select jsonb_agg(
        case when ins.id is null then jsonb_build_object('request', p.request, 'index', p.index, 'outcome', 'existing',
            'lead_id', null, 'client_id', p.client_id, 'source', p.source, 'external_ref', p.external_ref,
            'raw', coalesce(p.item -> 'raw_payload', '{}'))
          else jsonb_build_object('request', p.request, 'index', p.index, 'lead_id', ins.id,
            'outcome', case when ins.duplicate_of is null then 'created' else 'duplicate' end,
            'duplicate_of', ins.duplicate_of)
        end)
      into v_more
      from pending p left join inserted ins on ins.id = p.id;
      v_results := coalesce(v_results, '[]'::jsonb) || v_more;
    end if;

    -- Lost an idempotency race: a concurrent request (or an earlier item of the group) stored the same
    -- external_ref after this statement's snapshot. That row is committed or our own now, so look it up.
    if v_results @? '$[*] ? (@.lead_id == null && @.outcome == "existing")' then
      select jsonb_agg(
        case when r ->> 'outcome' = 'existing' and r -> 'lead_id' = 'null'::jsonb then coalesce((
          select jsonb_build_object('request', r -> 'request', 'index', r -> 'index', 'outcome', 'existing',
            'lead_id', l.id, 'duplicate_of', l.duplicate_of, 'reused', l.raw_payload is distinct from r -> 'raw')
          from public.leads l
          where l.client_id = r ->> 'client_id' and l.source = r ->> 'source'
            and l.external_ref = r ->> 'external_ref'),
          r - 'client_id' - 'source' - 'external_ref' - 'raw')
        else r end)
      into v_results
      from jsonb_array_elements(v_results) r;
    end if;

    -- At most one write a minute per key.
    update app.api_keys k set last_used_at = now()
    where k.id in (select (a.value ->> 'key_id')::uuid from jsonb_each(v_accepted) a)
      and (k.last_used_at is null or k.last_used_at < now() - interval '1 minute');
  end if;

  -- Step 4: count, last, so the counter's row lock is held only until this transaction commits; in key
  -- order, so calls counting several keys take the counters' locks in one order.
  if v_counts is not null then
    with counts as (
      select x ->> 'key_id' as key_id, (x ->> 'limit')::int as lim, (x ->> 'added')::int as added,
        (x ->> 'admitted')::int as admitted
      from jsonb_array_elements(v_counts) x
    ), counted as (
      insert into app.rate_limits as r (key, window_start, hits)
      select 'key:' || c.key_id, v_window, c.added from counts c
      order by 1
      on conflict (key) do update
        set hits = case when r.window_start < excluded.window_start then excluded.hits else r.hits + excluded.hits end,
            window_start = greatest(r.window_start, excluded.window_start)
      returning r.key, r.hits, r.window_start
    )
    select jsonb_object_agg(c.key_id, cd.hits - c.added),
      jsonb_object_agg(c.key_id, v_reset + extract(epoch from cd.window_start - v_window)::int),
      coalesce(bool_or(c.admitted > 0 and cd.hits - c.added + c.admitted - 1 >= c.lim), false)
    into v_bases, v_resets, v_overrun
    from counts c join counted cd on cd.key = 'key:' || c.key_id;
    if v_overrun then
      raise exception 'Another call took this call''s last places under an API key''s rate limit; retry'
        using errcode = 'serialization_failure';
    end if;
  end if;

  -- The caller assembles each request's reply from these (functions/ingest/ingest.replies.ts).
  return jsonb_build_object('replies', v_replies, 'results', coalesce(v_results, '[]'::jsonb),
    'bases', coalesce(v_bases, '{}'::jsonb), 'resets', coalesce(v_resets, '{}'::jsonb));
end
$$;
