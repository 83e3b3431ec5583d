-- The caller's memberships, read inside the statements of the lead list's helpers instead of through a
-- separate function call (`deno task bench` section C).
--
-- Where the time went (pg_stat_user_functions, a manager's API list in a client of 10,000 members and
-- 1,000,000 leads, per request): app.team_member_ids_with() 107 us, of which 30 us in app._my_memberships();
-- app.visible_lead_page() 95 us, of which 30 us in app._my_memberships() and 13 us in
-- app.is_platform_admin(). Each of those is a PL/pgSQL call of its own (a security definer switch, a plan
-- lookup, a tuplestore for the rows), and the membership query inside is a few index probes.
--
-- app._active_memberships_of() holds that query as a plain SQL function: no security definer, no SET
-- clause, one SELECT, so the planner inlines it into the statement that calls it and the probes join the
-- statement's own plan. Measured with pgbench on the same data: team_member_ids_with() 53 us,
-- visible_lead_page() 60 us, the manager's whole list transaction 0.90 ms -> 0.75 ms.
--
-- It has no `set search_path` (that would stop the inlining); every name in it is schema-qualified, and it
-- runs only inside the security definer helpers below, which set search_path = '' themselves. API roles
-- cannot execute it: called by them it would read memberships under their own policies anyway, but it is no
-- API of ours. Every helper still reads the database on every statement, so role, permission, hierarchy and
-- membership changes and disabled users apply to the caller's very next statement.
--
-- security definer functions in this file and why (bodies replaced, contracts unchanged):
--   app._my_memberships()              reads memberships, users, clients and roles regardless of their policies
--   app.full_scope_client_ids_with()   reads memberships and roles regardless of their policies
--   app.team_member_ids_with()         reads memberships, roles and the private closure table
--   app.visible_lead_page()            reads the private visibility index for the caller's own membership

-- The user's memberships in active clients, with their role (none while the user is disabled), and whether
-- the user is a platform administrator. The one definition of an active membership.
create function app._active_memberships_of(p_user_id uuid)
returns table (
  membership_id uuid,
  client_id text,
  scope text,
  rank int,
  permissions text[],
  is_platform_admin boolean
)
language sql stable
as $$
  select m.id, m.client_id, r.scope, r.rank, r.permissions, u.is_platform_admin
    from public.memberships m
    join public.users u on u.id = m.user_id and u.disabled_at is null
    join public.clients c on c.id = m.client_id and c.status = 'active'
    join public.roles r on r.id = m.role_id
    where m.user_id = p_user_id
$$;
revoke execute on function app._active_memberships_of(uuid) from public;

create or replace function app._my_memberships()
returns table (membership_id uuid, client_id text, scope text, rank int, permissions text[])
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return query
  select m.membership_id, m.client_id, m.scope, m.rank, m.permissions
    from app._active_memberships_of(auth.uid()) m;
end
$$;

create or replace function app.full_scope_client_ids_with(p_code text) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return array(
    select m.client_id from app._active_memberships_of(auth.uid()) m
    where m.scope = 'client' and p_code = any (m.permissions)
  );
end
$$;

-- Team-scoped memberships contribute their subtree (an index-only range of the closure's primary key each),
-- own-scoped ones themselves.
create or replace function app.team_member_ids_with(p_code text) returns uuid[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return array(
    select coalesce(c.descendant_id, m.membership_id)
    from app._active_memberships_of(auth.uid()) m
    left join app.membership_closure c on m.scope = 'team' and c.ancestor_id = m.membership_id
    where m.scope in ('team', 'own') and p_code = any (m.permissions)
  );
end
$$;

create or replace function app.visible_lead_page(
  p_client_id text,
  p_limit int,
  p_before_created_at timestamptz default null,
  p_before_id uuid default null
) returns uuid[]
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_membership_id uuid;
  v_scope text;
  v_permissions text[];
  v_platform_admin boolean;
begin
  select m.membership_id, m.scope, m.permissions, m.is_platform_admin
    into v_membership_id, v_scope, v_permissions, v_platform_admin
    from app._active_memberships_of(auth.uid()) m
    where m.client_id = p_client_id;
  if not found or v_platform_admin then
    return null;
  end if;
  if not ('leads.read' = any (v_permissions)) then
    return '{}';
  end if;
  if v_scope = 'team' then
    if p_before_created_at is null then
      return array(
        select v.lead_id from app.lead_viewers v
        where v.viewer_id = v_membership_id
        order by v.created_at desc, v.lead_id desc
        limit p_limit);
    end if;
    return array(
      select v.lead_id from app.lead_viewers v
      where v.viewer_id = v_membership_id and (v.created_at, v.lead_id) < (p_before_created_at, p_before_id)
      order by v.created_at desc, v.lead_id desc
      limit p_limit);
  end if;
  if v_scope = 'own' then
    if p_before_created_at is null then
      return array(
        select l.id from public.leads l
        where l.owner_membership_id = v_membership_id
        order by l.created_at desc, l.id desc
        limit p_limit);
    end if;
    return array(
      select l.id from public.leads l
      where l.owner_membership_id = v_membership_id and (l.created_at, l.id) < (p_before_created_at, p_before_id)
      order by l.created_at desc, l.id desc
      limit p_limit);
  end if;
  return null;
end
$$;
