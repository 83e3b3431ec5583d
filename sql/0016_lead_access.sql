-- Helpers and guards for lead access. Policies on leads call clients_with_permission() without a row
-- argument, so it is evaluated once per statement like the other scope helpers.
--
-- security definer functions in this file and why:
--   app.clients_with_permission()    reads memberships and roles regardless of their policies
--   app.lead_id_for_external_ref()   finds a lead by its idempotency key even when the assignment rules gave
--                                    it to someone the caller cannot see

-- Active clients where the requesting user holds a permission (every client for platform administrators is
-- handled by the policies' own is_platform_admin() branch).
create function app.clients_with_permission(p_code text) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  return (
    select coalesce(array_agg(m.client_id), '{}') from app._my_memberships() m where p_code = any (m.permissions)
  );
end
$$;
grant execute on function app.clients_with_permission(text) to authenticated, service_role;

-- A lead created with an explicit owner (rather than by the assignment rules) must go to someone inside the
-- creator's scope, and only with leads.assign. It must fire before the routing trigger (on_leads_insert_route)
-- fills in the round-robin owner; same-event triggers fire in name order, so its name sorts first.
create function app._guard_lead_owner() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if app._is_api_user() and new.owner_membership_id is not null and not app.is_platform_admin() and (
    not app.has_permission(new.client_id, 'leads.assign')
    or not (new.client_id = any (app.my_full_scope_client_ids()) or new.owner_membership_id = any (app.my_team_member_ids()))
  ) then
    raise exception 'Cannot assign a lead outside your team' using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;

create trigger on_leads_insert_guard before insert on public.leads
  for each row execute function app._guard_lead_owner();

-- The id of a client's lead with this source and external_ref, for a caller who may create leads there: an
-- Idempotency-Key replay answers with the lead first created, even when the rules assigned it outside the
-- caller's scope (only the id is revealed, which the first response already showed).
create function app.lead_id_for_external_ref(p_client_id text, p_source text, p_external_ref text) returns uuid
language sql stable
security definer
set search_path = ''
as $$
  select l.id from public.leads l
  where l.client_id = p_client_id and l.source = p_source and l.external_ref = p_external_ref
    and app.has_permission(p_client_id, 'leads.create');
$$;
grant execute on function app.lead_id_for_external_ref(text, text, text) to authenticated;
