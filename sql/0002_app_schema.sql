-- Private schema for tables and helpers that the Supabase Data API must not expose (credentials,
-- sessions, rate-limit buckets) and deny-by-default function privileges: every function below is
-- granted explicitly after it is created.

create schema if not exists app;
comment on schema app is 'Private platform internals; not exposed through the Supabase Data API.';
revoke all on schema app from public;
-- Policies call app.* helpers as the requesting role, so those roles may use (not read) the schema.
grant usage on schema app to authenticated, service_role;

alter default privileges in schema app revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from public;

-- Keeps updated_at current on every update; attached to each mutable table.
create function app._touch_updated_at() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  new.updated_at := now();
  return new;
end
$$;
