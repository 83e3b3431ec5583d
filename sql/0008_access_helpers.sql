-- Access helpers that policies call. They are security definer so a policy on one table can consult
-- memberships and roles without recursing into those tables' own policies; each is stable so Postgres can
-- evaluate a `(select app.helper())` once per statement.
--
-- security definer functions in this file and why:
--   app.current_user_active()  reads users regardless of the users policies
--   app.is_platform_admin()    reads users regardless of the users policies
--   app.my_client_ids()        reads memberships regardless of the memberships policies
--   app.has_permission()       reads memberships and roles regardless of their policies
--   app.my_role_rank()         reads memberships and roles regardless of their policies

-- True when the requesting user exists and is not disabled.
create function app.current_user_active() returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.users u where u.id = (select auth.uid()) and u.disabled_at is null);
$$;

-- True for agency staff, who manage every client.
create function app.is_platform_admin() returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select exists (
    select 1 from public.users u
    where u.id = (select auth.uid()) and u.disabled_at is null and u.is_platform_admin
  );
$$;

-- Active clients the requesting user belongs to (empty when disabled).
create function app.my_client_ids() returns text[]
language sql stable
security definer
set search_path = ''
as $$
  select coalesce(array_agg(m.client_id), '{}')
  from public.memberships m
  join public.users u on u.id = m.user_id and u.disabled_at is null
  join public.clients c on c.id = m.client_id and c.status = 'active'
  where m.user_id = (select auth.uid());
$$;

-- True when the requesting user may use permission p_code in client p_client_id.
create function app.has_permission(p_client_id text, p_code text) returns boolean
language sql stable
security definer
set search_path = ''
as $$
  select app.is_platform_admin() or exists (
    select 1
    from public.memberships m
    join public.users u on u.id = m.user_id and u.disabled_at is null
    join public.clients c on c.id = m.client_id and c.status = 'active'
    join public.roles r on r.id = m.role_id
    where m.user_id = (select auth.uid()) and m.client_id = p_client_id and p_code = any (r.permissions)
  );
$$;

-- Rank of the requesting user's role in a client (lower is more powerful); 0 for platform admins and
-- for trusted server code acting without a user, null for non-members.
create function app.my_role_rank(p_client_id text) returns int
language sql stable
security definer
set search_path = ''
as $$
  select case
    when (select auth.uid()) is null or app.is_platform_admin() then 0
    else (
      select r.rank from public.memberships m join public.roles r on r.id = m.role_id
      where m.user_id = (select auth.uid()) and m.client_id = p_client_id
    )
  end;
$$;

grant execute on function app.current_user_active(), app.is_platform_admin(), app.my_client_ids(),
  app.has_permission(text, text), app.my_role_rank(text) to authenticated, service_role;

-- Guards every membership change, whichever path it takes (API, supabase-js, SQL): nobody hands out or
-- takes away a role more powerful than their own, and a client always keeps an owner.
create function app._guard_membership_change() returns trigger
language plpgsql
set search_path = ''
as $$
declare
  v_caller_rank int := app.my_role_rank(coalesce(new.client_id, old.client_id));
  v_new_rank int;
  v_old_rank int;
begin
  if tg_op in ('INSERT', 'UPDATE') then
    select r.rank into v_new_rank from public.roles r where r.id = new.role_id;
    if v_caller_rank is null or v_new_rank < v_caller_rank then
      raise exception 'Cannot assign a role above your own' using errcode = 'insufficient_privilege';
    end if;
  end if;
  if tg_op in ('UPDATE', 'DELETE') then
    select r.rank into v_old_rank from public.roles r where r.id = old.role_id;
    if v_caller_rank is null or v_old_rank < v_caller_rank then
      raise exception 'Cannot change a member whose role is above your own' using errcode = 'insufficient_privilege';
    end if;
    if (tg_op = 'DELETE' or new.role_id <> old.role_id)
      and exists (select 1 from public.roles r where r.id = old.role_id and r.key = 'owner')
      and exists (select 1 from public.clients c where c.id = old.client_id)
      and not exists (
        select 1 from public.memberships m join public.roles r on r.id = m.role_id
        where m.client_id = old.client_id and r.key = 'owner' and m.id <> old.id
      )
    then
      raise exception 'Client "%" must keep at least one owner', old.client_id using errcode = 'check_violation';
    end if;
  end if;
  return coalesce(new, old);
end
$$;

create trigger on_memberships_change before insert or update of role_id or delete on public.memberships
  for each row execute function app._guard_membership_change();
