-- Hierarchical lead visibility: with leads.read, a `client`-scoped role sees every lead of the client, a
-- `team`-scoped role the leads owned by itself and everyone below it, an `own`-scoped role its own leads.
-- Unassigned leads are visible to client scope only. Writes stay inside the same visible part; notes and the
-- timeline follow the visibility of their lead. Leads are never deleted through the API roles.
--
-- Each branch is one helper holding the permission and the scope together (sql/0017_lead_list_speed.sql), so
-- a statement reads the caller's memberships once per branch it needs. The team branch comes first (a
-- manager's rows need only it), the client scope second, the platform-admin branch last: a helper runs only
-- when a row reaches its branch.

alter table public.leads enable row level security;
alter table public.lead_notes enable row level security;
alter table public.lead_activities enable row level security;
alter table public.lead_statuses enable row level security;
alter table public.assignment_rules enable row level security;
grant select, insert, update on public.leads to authenticated;
grant select, insert on public.lead_notes to authenticated;
grant select on public.lead_activities to authenticated;
grant select, insert, update, delete on public.lead_statuses to authenticated;
grant select, insert, update, delete on public.assignment_rules to authenticated;

drop policy if exists "Leads are viewable within the caller's scope" on public.leads;
create policy "Leads are viewable within the caller's scope" on public.leads
  for select to authenticated
  using (
    owner_membership_id = any ((select app.team_member_ids_with('leads.read'))::uuid[])
    or client_id = any ((select app.full_scope_client_ids_with('leads.read'))::text[])
    or (select app.is_platform_admin())
  );

drop policy if exists "Leads are created by members with leads.create" on public.leads;
create policy "Leads are created by members with leads.create" on public.leads
  for insert to authenticated
  with check (
    client_id = any ((select app.clients_with_permission('leads.create'))::text[])
    or (select app.is_platform_admin())
  );

drop policy if exists "Leads are updated within the caller's scope with leads.update" on public.leads;
create policy "Leads are updated within the caller's scope with leads.update" on public.leads
  for update to authenticated
  using (
    owner_membership_id = any ((select app.team_member_ids_with('leads.update'))::uuid[])
    or client_id = any ((select app.full_scope_client_ids_with('leads.update'))::text[])
    or (select app.is_platform_admin())
  )
  with check (
    owner_membership_id = any ((select app.team_member_ids_with('leads.update'))::uuid[])
    or client_id = any ((select app.full_scope_client_ids_with('leads.update'))::text[])
    or (select app.is_platform_admin())
  );

drop policy if exists "Lead notes are viewable with their lead" on public.lead_notes;
create policy "Lead notes are viewable with their lead" on public.lead_notes
  for select to authenticated
  -- Subject to the leads policies: a note is visible exactly when its lead is.
  using (exists (select 1 from public.leads l where l.id = lead_id));

drop policy if exists "Lead notes are written by their author with leads.notes" on public.lead_notes;
create policy "Lead notes are written by their author with leads.notes" on public.lead_notes
  for insert to authenticated
  with check (
    author_id = (select auth.uid())
    and client_id = any ((select app.clients_with_permission('leads.notes'))::text[])
    and exists (select 1 from public.leads l where l.id = lead_id)
  );

drop policy if exists "Lead activities are viewable with their lead" on public.lead_activities;
create policy "Lead activities are viewable with their lead" on public.lead_activities
  for select to authenticated
  using (exists (select 1 from public.leads l where l.id = lead_id));

drop policy if exists "Lead statuses are viewable by members of the client" on public.lead_statuses;
create policy "Lead statuses are viewable by members of the client" on public.lead_statuses
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));
drop policy if exists "Lead statuses are created with pipeline.manage" on public.lead_statuses;
create policy "Lead statuses are created with pipeline.manage" on public.lead_statuses
  for insert to authenticated with check (app.has_permission(client_id, 'pipeline.manage'));
drop policy if exists "Lead statuses are updated with pipeline.manage" on public.lead_statuses;
create policy "Lead statuses are updated with pipeline.manage" on public.lead_statuses
  for update to authenticated
  using (app.has_permission(client_id, 'pipeline.manage')) with check (app.has_permission(client_id, 'pipeline.manage'));
drop policy if exists "Lead statuses are deleted with pipeline.manage" on public.lead_statuses;
create policy "Lead statuses are deleted with pipeline.manage" on public.lead_statuses
  for delete to authenticated using (app.has_permission(client_id, 'pipeline.manage'));

drop policy if exists "Assignment rules are viewable by members of the client" on public.assignment_rules;
create policy "Assignment rules are viewable by members of the client" on public.assignment_rules
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));
drop policy if exists "Assignment rules are created with assignment.manage" on public.assignment_rules;
create policy "Assignment rules are created with assignment.manage" on public.assignment_rules
  for insert to authenticated with check (app.has_permission(client_id, 'assignment.manage'));
drop policy if exists "Assignment rules are updated with assignment.manage" on public.assignment_rules;
create policy "Assignment rules are updated with assignment.manage" on public.assignment_rules
  for update to authenticated
  using (app.has_permission(client_id, 'assignment.manage'))
  with check (app.has_permission(client_id, 'assignment.manage'));
drop policy if exists "Assignment rules are deleted with assignment.manage" on public.assignment_rules;
create policy "Assignment rules are deleted with assignment.manage" on public.assignment_rules
  for delete to authenticated using (app.has_permission(client_id, 'assignment.manage'));
