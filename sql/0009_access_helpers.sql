-- Access helpers that policies call, and the guards against privilege escalation.
--
-- The helpers are security definer so a policy on one table can consult memberships, roles and the
-- hierarchy without recursing into those tables' own policies; each is stable and takes no row argument
-- where possible, so a policy can wrap it as `(select app.helper())` and Postgres evaluates it once per
-- statement instead of once per row. The hot ones are PL/pgSQL rather than SQL: a SQL function with
-- `set search_path` is never inlined and is planned afresh on every call, while PL/pgSQL caches its plans
-- (measured: the manager's lead page fell from 1.8 ms to 0.8 ms). They read the database on every statement, so a role or hierarchy
-- change applies to the caller's very next request.
--
-- security definer functions in this file and why:
--   app.current_user_active()          reads users regardless of the users policies
--   app.is_platform_admin()            reads users regardless of the users policies
--   app.my_client_ids()                reads memberships regardless of their policies
--   app.my_full_scope_client_ids()     reads memberships and roles regardless of their policies
--   app.my_team_member_ids()           reads memberships, roles and the private closure table
--   app.has_permission()               reads memberships and roles regardless of their policies
--   app.my_permissions()               reads memberships, roles and the catalog
--   app.my_role_rank()                 reads memberships and roles regardless of their policies
--   app.my_scope()                     reads memberships and roles regardless of their policies
--   app.hierarchy_ancestors()          reads the private closure table, for members the caller can see
--   app.hierarchy_descendants()        reads the private closure table, for members the caller can see

-- True when the requesting user exists and is not disabled.
create function app.current_user_active() returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (select 1 from public.users u where u.id = (select auth.uid()) and u.disabled_at is null)
  );
end
$$;

-- True for agency staff, who manage every client.
create function app.is_platform_admin() returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select exists (
        select 1 from public.users u
        where u.id = (select auth.uid()) and u.disabled_at is null and u.is_platform_admin
      )
  );
end
$$;

-- The requesting user's memberships in active clients, with their role (empty when disabled).
create function app._my_memberships()
returns table (membership_id uuid, client_id text, scope text, rank int, permissions text[])
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return query
  select m.id, m.client_id, r.scope, r.rank, r.permissions
    from public.memberships m
    join public.users u on u.id = m.user_id and u.disabled_at is null
    join public.clients c on c.id = m.client_id and c.status = 'active'
    join public.roles r on r.id = m.role_id
    where m.user_id = (select auth.uid());
end
$$;

-- Active clients the requesting user belongs to.
create function app.my_client_ids() returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(client_id), '{}') from app._my_memberships()
  );
end
$$;

-- Clients where the requesting user's role has the `client` scope: every record of the client is visible.
create function app.my_full_scope_client_ids() returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(client_id), '{}') from app._my_memberships() where scope = 'client'
  );
end
$$;

-- Memberships visible through a `team` scope (the member and everyone below them) or an `own` scope (the
-- member alone), across all of the requesting user's clients.
create function app.my_team_member_ids() returns uuid[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(distinct c.descendant_id), '{}')
      from app._my_memberships() m
      join app.membership_closure c on c.ancestor_id = m.membership_id
      where m.scope = 'team' or (m.scope = 'own' and c.depth = 0)
  );
end
$$;

-- True when the requesting user may use permission p_code in client p_client_id.
create function app.has_permission(p_client_id text, p_code text) returns boolean
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select app.is_platform_admin()
        or exists (select 1 from app._my_memberships() m where m.client_id = p_client_id and p_code = any (m.permissions))
  );
end
$$;

-- The permissions the requesting user holds in a client (the whole catalog for platform administrators).
create function app.my_permissions(p_client_id text) returns text[]
language sql stable
security definer
set search_path = ''
as $$
  select case
    when app.is_platform_admin() then (select coalesce(array_agg(code), '{}') from public.permissions)
    else coalesce((select m.permissions from app._my_memberships() m where m.client_id = p_client_id), '{}')
  end;
$$;

-- Rank of the requesting user's role in a client (lower is more powerful); 0 for platform administrators,
-- null for non-members.
create function app.my_role_rank(p_client_id text) returns int
language sql stable
security definer
set search_path = ''
as $$
  select case
    when app.is_platform_admin() then 0
    else (select m.rank from app._my_memberships() m where m.client_id = p_client_id)
  end;
$$;

-- The data scope of the requesting user's role in a client ('client' for platform administrators).
create function app.my_scope(p_client_id text) returns text
language sql stable
security definer
set search_path = ''
as $$
  select case
    when app.is_platform_admin() then 'client'
    else (select m.scope from app._my_memberships() m where m.client_id = p_client_id)
  end;
$$;

-- Orders scopes from narrowest to widest.
create function app._scope_width(p_scope text) returns int
language sql immutable
set search_path = ''
as $$
  select case p_scope when 'own' then 1 when 'team' then 2 when 'client' then 3 else 0 end;
$$;

grant execute on function app.current_user_active(), app.is_platform_admin(), app.my_client_ids(),
  app.my_full_scope_client_ids(), app.my_team_member_ids(), app.has_permission(text, text),
  app.my_permissions(text), app.my_role_rank(text), app.my_scope(text), app._scope_width(text)
  to authenticated, service_role;

-- True when the statement runs for an API user (not trusted server code or a security definer function,
-- which run as the table owner and have checked rights themselves).
create function app._is_api_user() returns boolean
language sql stable
set search_path = ''
as $$
  select current_user in ('authenticated', 'anon');
$$;
grant execute on function app._is_api_user() to authenticated, anon, service_role;

-- Guards every membership change made by an API user, whichever path it takes (API, supabase-js): nobody
-- hands out a role above their own or with permissions they lack, nor changes someone ranked above them.
-- For everyone, a client always keeps an owner.
create function app._guard_membership_change() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_client_id text := coalesce(new.client_id, old.client_id);
  v_caller_rank int;
  v_role public.roles;
begin
  -- A membership is a user's seat in one client: moving it to another user or client would transfer
  -- its role past every check below.
  if tg_op = 'UPDATE' and (new.user_id <> old.user_id or new.client_id <> old.client_id) then
    raise exception 'A membership''s user and client cannot change' using errcode = 'check_violation';
  end if;
  if app._is_api_user() then
    v_caller_rank := app.my_role_rank(v_client_id);
    if tg_op in ('INSERT', 'UPDATE') then
      select * into v_role from public.roles r where r.id = new.role_id;
      if v_caller_rank is null or v_role.rank < v_caller_rank
        or not (v_role.permissions <@ app.my_permissions(v_client_id)) then
        raise exception 'Cannot assign a role above your own' using errcode = 'insufficient_privilege';
      end if;
    end if;
    if tg_op in ('UPDATE', 'DELETE') then
      select * into v_role from public.roles r where r.id = old.role_id;
      if v_caller_rank is null or v_role.rank < v_caller_rank then
        raise exception 'Cannot change a member whose role is above your own' using errcode = 'insufficient_privilege';
      end if;
    end if;
  end if;
  if tg_op in ('UPDATE', 'DELETE')
    and (tg_op = 'DELETE' or new.role_id <> old.role_id)
    and exists (select 1 from public.roles r where r.id = old.role_id and r.key = 'owner')
    and exists (select 1 from public.clients c where c.id = old.client_id)
  then
    -- Two owners removing each other at once must not both see the other as the remaining owner.
    perform pg_advisory_xact_lock(hashtextextended('owners:' || old.client_id, 0));
  end if;
  if tg_op in ('UPDATE', 'DELETE')
    and (tg_op = 'DELETE' or new.role_id <> old.role_id)
    and exists (select 1 from public.roles r where r.id = old.role_id and r.key = 'owner')
    and exists (select 1 from public.clients c where c.id = old.client_id)
    and not exists (
      select 1 from public.memberships m join public.roles r on r.id = m.role_id
      where m.client_id = old.client_id and r.key = 'owner' and m.id <> old.id
    )
  then
    raise exception 'Client "%" must keep at least one owner', old.client_id using errcode = 'check_violation';
  end if;
  return coalesce(new, old);
end
$$;

create trigger on_memberships_change before insert or update of role_id, user_id, client_id or delete
  on public.memberships
  for each row execute function app._guard_membership_change();

-- Guards every role change made by an API user: roles only use catalog permissions; nobody creates or
-- edits a role ranked above their own or grants a permission they do not hold; the owner role is fixed.
-- Editing a system role detaches it from its template.
create function app._guard_role_change() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_client_id text := coalesce(new.client_id, old.client_id);
  v_caller_rank int;
begin
  if tg_op in ('INSERT', 'UPDATE') then
    if exists (
      select 1 from unnest(new.permissions) as granted (code)
      where not exists (select 1 from public.permissions p where p.code = granted.code)
    ) then
      raise exception 'Unknown permission in role "%"', new.key using errcode = 'check_violation';
    end if;
    -- Stored sorted and without duplicates, so equal sets compare equal.
    new.permissions := array(select distinct unnest(new.permissions) order by 1);
  end if;
  if not app._is_api_user() then
    return coalesce(new, old);
  end if;
  v_caller_rank := app.my_role_rank(v_client_id);
  if tg_op in ('UPDATE', 'DELETE') and (old.key = 'owner' or v_caller_rank is null or old.rank < v_caller_rank) then
    raise exception 'Cannot change role "%"', old.key using errcode = 'insufficient_privilege';
  end if;
  if tg_op in ('INSERT', 'UPDATE') then
    if new.key = 'owner' or v_caller_rank is null or new.rank < v_caller_rank then
      raise exception 'Cannot create a role above your own' using errcode = 'insufficient_privilege';
    end if;
    if not (new.permissions <@ app.my_permissions(v_client_id)) then
      raise exception 'Cannot grant permissions you do not hold' using errcode = 'insufficient_privilege';
    end if;
    if app._scope_width(new.scope) > app._scope_width(app.my_scope(v_client_id)) then
      raise exception 'Cannot give a role a wider data scope than your own' using errcode = 'insufficient_privilege';
    end if;
    new.is_system := tg_op = 'UPDATE' and old.is_system
      and new.permissions = old.permissions and new.rank = old.rank and new.scope = old.scope;
  end if;
  return coalesce(new, old);
end
$$;

create trigger on_roles_change before insert or update or delete on public.roles
  for each row execute function app._guard_role_change();


-- Managers above a member (nearest first) and members below one (with depth), for callers who can see
-- that member. Callers join the result with public.memberships, whose policies then hide anyone outside
-- their scope.
create function app.hierarchy_ancestors(p_membership_id uuid)
returns table (membership_id uuid, depth int)
language sql stable
security definer
set search_path = ''
as $$
  select c.ancestor_id, c.depth from app.membership_closure c
  join public.memberships m on m.id = p_membership_id
  where c.descendant_id = p_membership_id and c.depth > 0
    and (m.client_id = any (app.my_full_scope_client_ids()) or p_membership_id = any (app.my_team_member_ids())
      or app.is_platform_admin())
  order by c.depth;
$$;

create function app.hierarchy_descendants(p_membership_id uuid)
returns table (membership_id uuid, depth int)
language sql stable
security definer
set search_path = ''
as $$
  select c.descendant_id, c.depth from app.membership_closure c
  join public.memberships m on m.id = p_membership_id
  where c.ancestor_id = p_membership_id and c.depth > 0
    and (m.client_id = any (app.my_full_scope_client_ids()) or p_membership_id = any (app.my_team_member_ids())
      or app.is_platform_admin())
  order by c.depth, c.descendant_id;
$$;

grant execute on function app.hierarchy_ancestors(uuid), app.hierarchy_descendants(uuid) to authenticated;
