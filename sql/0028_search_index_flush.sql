-- The lead search index (GIN over leads.search) takes new entries into a pending list (fastupdate) and
-- merges the list into its tree in bulk once it outgrows gin_pending_list_limit (4 MB). That merge ran inside
-- whichever insert crossed the limit: measured by deno task bench with 64 connections, one group of 22 leads
-- took 370 ms and wrote 15 MB of WAL every ~10,000 leads, which set the ingest p99 (250 ms against a p50 of
-- 26 ms). Turning fastupdate off removes the merge but costs ~0.2 ms more per lead (a 32-lead group: 16 ms
-- instead of 9.5). So the list stays, and the worker merges it in the background every
-- [queue] search_flush_interval_ms; an insert then meets a full list only when no worker runs.
--
-- security definer because gin_clean_pending_list() needs the index's owner; the worker calls it, no API
-- role may (functions in app are not executable by public, sql/0002_app_schema.sql).

-- Merges the pending entries of the lead search index; returns how many pending pages it emptied. One merge
-- at a time: a worker that finds another one merging skips its turn rather than queue behind it.
create function app.flush_lead_search_index() returns bigint
language sql
security definer
set search_path = ''
as $$
  select case when pg_try_advisory_xact_lock(hashtextextended('lead_search_flush', 0))
    then gin_clean_pending_list('public.leads_search_idx'::regclass) else 0 end
$$;
