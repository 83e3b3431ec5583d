-- Thin functions for the multi-table operations of the client and user services. Each checks the
-- caller's rights itself (raising insufficient_privilege) and is exposed so supabase-js frontends can
-- call them as RPCs exactly like the API does.
--
-- security definer functions in this file and why:
--   public.create_client()      inserts the creator's owner membership into a client they cannot see yet
--   app._ensure_user()          creates the global user row (and invitation) when the email is new
--   public.set_user_disabled()  updates a user who may belong to clients the caller cannot see

-- Creates a client with a client-provided id (platform administrators only); the creator becomes owner.
create function public.create_client(p_id text, p_name text, p_settings jsonb default '{}')
returns public.clients
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_client public.clients;
begin
  if not app.is_platform_admin() then
    raise exception 'Only platform administrators can create clients' using errcode = 'insufficient_privilege';
  end if;
  insert into public.clients (id, name, settings, created_by)
  values (p_id, p_name, coalesce(p_settings, '{}'), auth.uid())
  returning * into v_client;
  insert into public.memberships (client_id, user_id, role_id)
  select v_client.id, auth.uid(), r.id from public.roles r where r.client_id = v_client.id and r.key = 'owner';
  return v_client;
end
$$;
grant execute on function public.create_client(text, text, jsonb) to authenticated;

-- Finds or creates the global account for an email, for a caller allowed to manage members of the client.
-- A new account gets an invitation whose token hash the caller supplies (the caller shows the token once).
create function app._ensure_user(
  p_client_id text,
  p_email text,
  p_full_name text,
  p_invitation_hash bytea,
  p_invitation_ttl_seconds int
)
returns table (user_id uuid, user_created boolean)
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not app.has_permission(p_client_id, 'members.manage') then
    raise exception 'Missing permission members.manage' using errcode = 'insufficient_privilege';
  end if;
  user_created := false;
  select u.id into user_id from public.users u where u.email = lower(p_email);
  if user_id is null then
    insert into public.users (email, full_name) values (lower(p_email), p_full_name) returning id into user_id;
    user_created := true;
    if p_invitation_hash is not null then
      insert into app.invitations (token_hash, user_id, invited_by, expires_at)
      values (p_invitation_hash, user_id, auth.uid(), now() + make_interval(secs => p_invitation_ttl_seconds));
    end if;
  end if;
  return next;
end
$$;
grant execute on function app._ensure_user(text, text, text, bytea, int) to authenticated;

-- Adds a person to a client by email, creating their global account when the email is new. Runs with the
-- caller's rights, so the membership insert passes the memberships policies and escalation guard.
-- Returns the membership and whether the account was created (the caller then hands out the invitation).
create function public.add_member(
  p_client_id text,
  p_email text,
  p_full_name text,
  p_role_key text,
  p_reports_to uuid default null,
  p_invitation_hash bytea default null,
  p_invitation_ttl_seconds int default 604800
)
returns table (membership_id uuid, user_id uuid, user_created boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_role_id uuid;
begin
  select r.id into v_role_id from public.roles r where r.client_id = p_client_id and r.key = p_role_key;
  if v_role_id is null then
    raise exception 'Role "%" does not exist in this client', p_role_key using errcode = 'foreign_key_violation';
  end if;
  select e.user_id, e.user_created into user_id, user_created
  from app._ensure_user(p_client_id, p_email, p_full_name, p_invitation_hash, p_invitation_ttl_seconds) e;
  -- No RETURNING: it would require the new row to pass the read policy before the hierarchy trigger has
  -- placed it in the caller's team.
  membership_id := gen_random_uuid();
  insert into public.memberships (id, client_id, user_id, role_id, reports_to)
  values (membership_id, p_client_id, user_id, v_role_id, p_reports_to);
  return next;
end
$$;
grant execute on function public.add_member(text, text, text, text, uuid, bytea, int) to authenticated;

-- Disables or re-enables an account. Allowed for platform administrators, and for a caller holding
-- members.manage in every client the user belongs to, with a role at least as high as the user's there
-- (so no client admin can lock out another client's staff, their superiors or agency staff). Disabling
-- also revokes every session.
create function public.set_user_disabled(p_user_id uuid, p_disabled boolean)
returns public.users
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_user public.users;
begin
  if p_user_id = auth.uid() then
    raise exception 'You cannot disable your own account' using errcode = 'check_violation';
  end if;
  if not app.is_platform_admin() and (
    exists (select 1 from public.users u where u.id = p_user_id and u.is_platform_admin)
    or not exists (select 1 from public.memberships m where m.user_id = p_user_id)
    or exists (
      select 1 from public.memberships m
      where m.user_id = p_user_id and not app.has_permission(m.client_id, 'members.manage')
    )
    or exists (
      select 1 from public.memberships m join public.roles r on r.id = m.role_id
      where m.user_id = p_user_id and r.rank < app.my_role_rank(m.client_id)
    )
    or exists (
      select 1 from public.memberships m
      where m.user_id = p_user_id
        and not (m.client_id = any (app.my_full_scope_client_ids()) or m.id = any (app.my_team_member_ids()))
    )
  ) then
    raise exception 'Not allowed to disable this user' using errcode = 'insufficient_privilege';
  end if;
  update public.users u
  set disabled_at = case when p_disabled then coalesce(u.disabled_at, now()) end
  where u.id = p_user_id
  returning * into v_user;
  if v_user.id is null then
    raise exception 'User not found' using errcode = 'no_data_found';
  end if;
  if p_disabled then
    update app.sessions s set revoked_at = now(), revoked_reason = 'user_disabled'
    where s.user_id = p_user_id and s.revoked_at is null;
  end if;
  return v_user;
end
$$;
grant execute on function public.set_user_disabled(uuid, boolean) to authenticated;

-- Non-administrators may only change their own display name; email, admin flag and disabled state go
-- through the functions above.
create function app._guard_user_update() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  -- current_user is the API role only for direct writes; definer functions run as their owner.
  if app._is_api_user() and not app.is_platform_admin()
    and (new.email <> old.email or new.is_platform_admin <> old.is_platform_admin
      or new.disabled_at is distinct from old.disabled_at)
  then
    raise exception 'Only platform administrators can change this field' using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;

create trigger on_users_guard before update on public.users
  for each row execute function app._guard_user_update();
