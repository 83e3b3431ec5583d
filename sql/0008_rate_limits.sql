-- Fixed-window request counters shared by every instance of every function. Unlogged: losing counters in a
-- crash only resets windows early, and skipping WAL keeps the per-request cost low.

create unlogged table app.rate_limits (
  key text primary key,
  window_start timestamptz not null,
  hits int not null
);
comment on table app.rate_limits is 'Rate-limit buckets keyed by "<kind>:<subject>", one row per subject.';

-- Counts one hit against a bucket and reports whether it is within the limit and when the window resets.
create function app.rate_limit_hit(p_key text, p_limit int, p_window_seconds int)
returns table (allowed boolean, remaining int, reset_seconds int)
language sql
set search_path = ''
as $$
  with bucket as (
    insert into app.rate_limits as r (key, window_start, hits)
    values (p_key, to_timestamp(floor(extract(epoch from now()) / p_window_seconds) * p_window_seconds), 1)
    on conflict (key) do update
      set hits = case when r.window_start = excluded.window_start then r.hits + 1 else 1 end,
          window_start = excluded.window_start
    returning hits, window_start
  )
  select hits <= p_limit,
         greatest(p_limit - hits, 0),
         greatest(1, ceil(extract(epoch from window_start + make_interval(secs => p_window_seconds) - now())))::int
  from bucket;
$$;
