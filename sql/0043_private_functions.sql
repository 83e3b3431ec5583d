-- Deny-by-default function privileges, as sql/0002_app_schema.sql meant them.
--
-- Its `alter default privileges in schema app|public revoke execute on functions from public` did nothing:
-- PostgreSQL gives PUBLIC the right to execute every new function through its global defaults, and a default
-- set for one schema can only add to those, never take away (ALTER DEFAULT PRIVILEGES, Notes). So every
-- function without an explicit grant stayed executable by every role:
--   - anon could call the Data API's RPC functions (public.create_api_key() and the rest). Each refused it
--     inside, by its own permission check, but anon should not reach them at all;
--   - authenticated, which may use schema app because its policies call app.* helpers, could call internals
--     such as app.ingest_requests(), which stores leads for whatever client its arguments name. The Data API
--     does not expose schema app, so no request could reach them; a database role should not either.
--
-- Now PUBLIC loses EXECUTE on every function of app and public that belongs to the platform (not to an
-- extension). The grants each function was given explicitly stay, so the roles that need a function keep it,
-- and the global default below keeps functions made by later migrations private until they are granted.

do $$
declare
  v_function regprocedure;
begin
  for v_function in
    select p.oid::regprocedure from pg_proc p
    where p.pronamespace in ('app'::regnamespace, 'public'::regnamespace)
      and not exists (
        select 1 from pg_depend d
        where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
      )
  loop
    execute format('revoke execute on function %s from public', v_function);
  end loop;
end
$$;

alter default privileges revoke execute on functions from public;
