-- Routing of stored Meta and WhatsApp webhook deliveries (app.webhook_inbox, sql/0024) into jobs. The webhooks
-- function only verifies the signature and stores the raw body; the worker calls app.route_webhook_inbox() each
-- round, which reads the body as jsonb (so Graph ids, decimal strings beyond 2^53, never pass through a
-- floating-point number), finds the client of every entry and enqueues one job per effect:
--
--   object "page" (Facebook and Instagram Lead Ads), field "leadgen"
--       page_id -> client (public.meta_pages), form_id -> product (public.meta_forms)
--       job meta.fetch_lead, key "leadgen:<leadgen_id>"
--   object "whatsapp_business_account", field "messages"
--       metadata.phone_number_id -> client (public.integrations, kind whatsapp)
--       each message: job whatsapp.inbound, key "wa-in:<message id>"
--       each status:  job whatsapp.status, key "wa-status:<message id>:<status>"
--
-- Jobs are inserted like app.enqueue_job() does (ON CONFLICT on the key), set-based. The keys make Meta's redeliveries (it retries until it gets a 200, and may deliver one event twice) and
-- concurrent deliveries of the same event one job. A delivery with an entry whose page or number no client
-- connected is parked as 'unroutable' with those entries listed in `error` (its routable entries still get
-- their jobs); setting it back to 'pending' once the page is connected routes it again, and the keys keep the
-- entries routed the first time from running twice. A body that is not a JSON object is 'failed'.
--
-- Called by the worker, connected as the database owner; not granted to any API role.

-- WhatsApp deliveries find their client by phone number id.
create index integrations_whatsapp_phone_number_id_idx on public.integrations ((settings ->> 'phone_number_id'))
  where kind = 'whatsapp';

-- Routes up to p_limit pending deliveries (oldest first, skipping those another worker holds); jobs get
-- p_max_attempts attempts. Returns how many deliveries it consumed.
create function app.route_webhook_inbox(p_limit int, p_max_attempts int) returns int
language plpgsql
set search_path = ''
set jit = off
as $$
declare
  v_row record;
  v_body jsonb;
  v_unroutable text[];
  v_count int := 0;
begin
  for v_row in
    select i.id, i.body from app.webhook_inbox i
    where i.status = 'pending'
    order by i.id
    limit p_limit
    for update skip locked
  loop
    v_count := v_count + 1;
    begin
      v_body := v_row.body::jsonb;
      if jsonb_typeof(v_body) <> 'object' then
        raise exception 'The delivery is not a JSON object' using errcode = 'invalid_parameter_value';
      end if;

      with changes as (
        select v_body ->> 'object' as object, e.value as entry, c.value ->> 'field' as field,
          c.value -> 'value' as value
        from jsonb_array_elements(case when jsonb_typeof(v_body -> 'entry') = 'array'
            then v_body -> 'entry' else '[]' end) e
        cross join lateral jsonb_array_elements(case when jsonb_typeof(e.value -> 'changes') = 'array'
            then e.value -> 'changes' else '[]' end) c
        where jsonb_typeof(c.value -> 'value') = 'object'
      ), leadgen as (
        select coalesce(ch.value ->> 'page_id', ch.entry ->> 'id') as page_id, ch.value ->> 'form_id' as form_id,
          ch.value ->> 'leadgen_id' as leadgen_id, ch.value -> 'created_time' as created_time
        from changes ch
        where ch.object in ('page', 'instagram') and ch.field = 'leadgen'
      ), wa as (
        select ch.value -> 'metadata' ->> 'phone_number_id' as phone_number_id, ch.value
        from changes ch
        where ch.object = 'whatsapp_business_account' and ch.field = 'messages'
      ), wa_routed as (
        select w.*, (
          select i.client_id from public.integrations i
          where i.kind = 'whatsapp' and i.settings ->> 'phone_number_id' = w.phone_number_id
          order by i.enabled desc, i.client_id
          limit 1
        ) as client_id
        from wa w
      ), lead_jobs as (
        insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
        select p.client_id, 'meta.fetch_lead',
          jsonb_build_object('leadgen_id', l.leadgen_id, 'page_id', l.page_id, 'form_id', l.form_id,
            'product_id', f.product_id, 'created_time', l.created_time),
          'leadgen:' || l.leadgen_id, p_max_attempts
        from leadgen l
        join public.meta_pages p on p.page_id = l.page_id
        left join public.meta_forms f on f.form_id = l.form_id and f.client_id = p.client_id
        where l.leadgen_id is not null
        on conflict (idempotency_key) do nothing
      ), inbound_jobs as (
        insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
        select w.client_id, 'whatsapp.inbound',
          jsonb_build_object('phone_number_id', w.phone_number_id, 'message', m.value,
            'contact', (select c.value from jsonb_array_elements(case when jsonb_typeof(w.value -> 'contacts')
                = 'array' then w.value -> 'contacts' else '[]' end) c
              where c.value ->> 'wa_id' = m.value ->> 'from' limit 1)),
          'wa-in:' || (m.value ->> 'id'), p_max_attempts
        from wa_routed w
        cross join lateral jsonb_array_elements(case when jsonb_typeof(w.value -> 'messages') = 'array'
            then w.value -> 'messages' else '[]' end) m
        where w.client_id is not null and m.value ->> 'id' is not null
        on conflict (idempotency_key) do nothing
      ), status_jobs as (
        insert into app.jobs (client_id, kind, payload, idempotency_key, max_attempts)
        select w.client_id, 'whatsapp.status',
          jsonb_build_object('phone_number_id', w.phone_number_id, 'status', s.value),
          'wa-status:' || (s.value ->> 'id') || ':' || (s.value ->> 'status'), p_max_attempts
        from wa_routed w
        cross join lateral jsonb_array_elements(case when jsonb_typeof(w.value -> 'statuses') = 'array'
            then w.value -> 'statuses' else '[]' end) s
        where w.client_id is not null and s.value ->> 'id' is not null and s.value ->> 'status' is not null
        on conflict (idempotency_key) do nothing
      ), unroutable as (
        select case when l.leadgen_id is null then 'leadgen change without a leadgen_id'
          else format('page %s not connected (leadgen %s)', coalesce(l.page_id, '?'), l.leadgen_id) end as reason
        from leadgen l
        where l.leadgen_id is null or not exists (select 1 from public.meta_pages p where p.page_id = l.page_id)
        union all
        select format('WhatsApp phone number %s not connected', coalesce(w.phone_number_id, '?'))
        from wa_routed w
        where w.client_id is null
      )
      -- Data-modifying CTEs always run to completion, referenced or not: every job above is enqueued.
      select array_agg(u.reason) into v_unroutable from unroutable u;

      update app.webhook_inbox i set
        status = case when v_unroutable is null then 'processed' else 'unroutable' end,
        error = array_to_string(v_unroutable, '; '),
        processed_at = now()
      where i.id = v_row.id;
    exception when others then
      -- A body jsonb refuses (say a \u0000 escape) or a bug: kept with its error, the rest still routed.
      update app.webhook_inbox i set status = 'failed', error = left(sqlerrm, 1000), processed_at = now()
      where i.id = v_row.id;
    end;
  end loop;
  return v_count;
end
$$;
comment on function app.route_webhook_inbox(int, int) is
  'Turns pending Meta/WhatsApp webhook deliveries into idempotent jobs; unknown pages and numbers are parked.';
