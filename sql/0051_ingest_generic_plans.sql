-- app.ingest_requests keeps one plan per statement instead of planning its statements on every call.
--
-- Its statements take only the call's jsonb and text, whose contents the planner cannot see, so a plan made
-- for one call's values is the plan for any other. PostgreSQL 15 settles on the generic plans by itself;
-- PostgreSQL 17 (the embedded server, and new Supabase projects) kept making custom plans: measured with
-- `deno task bench:instructions` (callgrind, PostgreSQL 17), planning was 14M of the 86.8M instructions of a
-- call of 64 single-lead requests, every call.
alter function app.ingest_requests(jsonb, text) set plan_cache_mode = force_generic_plan;
