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
-- A Supabase project adds one more way in: its schema public grants every function its owner creates to
-- anon, authenticated and service_role by name (default privileges set before any migration of ours).
--
-- Now PUBLIC loses EXECUTE on every function of app and public that belongs to the platform (not to an
-- extension), and anon on those of public; the grants each function was given explicitly by our migrations
-- stay, so the roles that need a function keep it. The defaults below keep functions made by later
-- migrations private until they are granted: PUBLIC's everywhere, anon's in public.

do $$
declare
  v_function regprocedure;
  v_public boolean;
begin
  for v_function, v_public in
    select p.oid::regprocedure, p.pronamespace = 'public'::regnamespace from pg_proc p
    where p.pronamespace in ('app'::regnamespace, 'public'::regnamespace)
      and not exists (
        select 1 from pg_depend d
        where d.classid = 'pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
      )
  loop
    execute format('revoke execute on function %s from public', v_function);
    if v_public then
      execute format('revoke execute on function %s from anon', v_function);
    end if;
  end loop;
end
$$;

alter default privileges revoke execute on functions from public;
alter default privileges in schema public revoke execute on functions from anon;
