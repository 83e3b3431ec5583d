-- Cheaper lead visibility checks, for the lead list above all (the 50 newest visible leads in a client of
-- 10,000 members and 1,000,000 leads, `deno task bench` section C).
--
-- Where the time went (server CPU per statement, a manager seeing 208 members, 200,000 leads): the leads
-- select policy called three helpers, each reading the caller's memberships again (about 30 us a read), and
-- the team helper sorted its members for array_agg(distinct); app.visible_lead_page was a SQL function with
-- `set search_path`, which Postgres never inlines and plans afresh on every call (pgbench: 0.25 ms a call; 0.14 ms in PL/pgSQL).
-- (The list's other cost was planning: see listLeads() in functions/api/leads/leads.queries.ts.)
--
-- A per-transaction cache of the memberships was measured and left out: a value in a GUC that only
-- security definer code can vouch for (HMAC over the value, the transaction id and the claims, keyed by a
-- secret in a private table) costs 23 us a check (secret lookup, hmac(), parsing) against 30 us for reading
-- the memberships again, and would keep a role change from applying until the next transaction. Instead the
-- policies below call one helper per branch, the manager's branch first, so a statement reads the memberships
-- once per branch it needs; every helper still reads the database on every statement, so role, permission,
-- hierarchy and membership changes and disabled users apply to the caller's very next statement.
--
-- security definer functions in this file and why:
--   app.full_scope_client_ids_with()   reads memberships and roles regardless of their policies
--   app.team_member_ids_with()         reads memberships, roles and the private closure table
--   app.visible_lead_page()            reads the private visibility index for the caller's own membership

-- Clients where the requesting user's role has the `client` scope and holds permission p_code: every record
-- of the client is theirs for that permission.
create function app.full_scope_client_ids_with(p_code text) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return array(
    select m.client_id from app._my_memberships() m where m.scope = 'client' and p_code = any (m.permissions)
  );
end
$$;

-- Memberships whose records the requesting user may use with permission p_code through a `team` scope (the
-- member and everyone below them) or an `own` scope (the member alone). A member's subtree lies inside its
-- client (composite foreign keys), so a record owned by one of these ids belongs to a client where the
-- caller holds p_code. A user has one membership per client, so the subtrees never overlap.
create function app.team_member_ids_with(p_code text) returns uuid[]
language plpgsql stable
security definer
set search_path = ''
as $$
declare
  v_team uuid[];
  v_own uuid[];
begin
  select coalesce(array_agg(m.membership_id) filter (where m.scope = 'team'), '{}'),
         coalesce(array_agg(m.membership_id) filter (where m.scope = 'own'), '{}')
    into v_team, v_own
    from app._my_memberships() m
    where p_code = any (m.permissions);
  if cardinality(v_team) = 0 then
    return v_own;
  end if;
  -- An index-only range of the closure's primary key per manager: no join, no sort.
  return v_own || array(select c.descendant_id from app.membership_closure c where c.ancestor_id = any (v_team));
end
$$;

grant execute on function app.full_scope_client_ids_with(text), app.team_member_ids_with(text)
  to authenticated, service_role;

-- Same contract as in sql/0013_lead_routing.sql (the ids of one page of the newest leads a team- or
-- own-scoped member sees in a client; empty without leads.read; null for the client scope, platform
-- administrators and non-members), in PL/pgSQL: each kind of page (team or own, first or after a cursor)
-- is its own statement with a cached plan that reads one ordered index range.
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
begin
  select m.membership_id, m.scope, m.permissions into v_membership_id, v_scope, v_permissions
    from app._my_memberships() m
    where m.client_id = p_client_id;
  if not found or app.is_platform_admin() then
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
