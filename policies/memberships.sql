-- Hierarchical visibility of memberships: a role with the `client` scope sees every member of the client,
-- `team` sees the member and everyone below them, `own` sees only the member. members.manage adds, moves and
-- removes members within that visible part; a team-scoped manager can only place people inside their team.
-- Escalation and the last-owner rule are enforced by a trigger (app._guard_membership_change).

alter table public.memberships enable row level security;
grant select, insert, update, delete on public.memberships to authenticated;

drop policy if exists "Memberships are viewable within the caller's scope" on public.memberships;
create policy "Memberships are viewable within the caller's scope" on public.memberships
  for select to authenticated
  using (
    client_id = any ((select app.my_full_scope_client_ids())::text[])
    or id = any ((select app.my_team_member_ids())::uuid[])
    or (select app.is_platform_admin())
  );

drop policy if exists "Memberships are created inside the caller's scope with members.manage" on public.memberships;
create policy "Memberships are created inside the caller's scope with members.manage" on public.memberships
  for insert to authenticated
  with check (
    app.has_permission(client_id, 'members.manage')
    and (
      client_id = any ((select app.my_full_scope_client_ids())::text[])
      or reports_to = any ((select app.my_team_member_ids())::uuid[])
      or (select app.is_platform_admin())
    )
  );

drop policy if exists "Memberships are updated inside the caller's scope with members.manage" on public.memberships;
create policy "Memberships are updated inside the caller's scope with members.manage" on public.memberships
  for update to authenticated
  using (
    app.has_permission(client_id, 'members.manage')
    and (
      client_id = any ((select app.my_full_scope_client_ids())::text[])
      or id = any ((select app.my_team_member_ids())::uuid[])
      or (select app.is_platform_admin())
    )
  )
  with check (
    app.has_permission(client_id, 'members.manage')
    and (
      client_id = any ((select app.my_full_scope_client_ids())::text[])
      or reports_to = any ((select app.my_team_member_ids())::uuid[])
      or (select app.is_platform_admin())
    )
  );

drop policy if exists "Memberships are removed inside the caller's scope with members.manage" on public.memberships;
create policy "Memberships are removed inside the caller's scope with members.manage" on public.memberships
  for delete to authenticated
  using (
    app.has_permission(client_id, 'members.manage')
    and (
      client_id = any ((select app.my_full_scope_client_ids())::text[])
      or id = any ((select app.my_team_member_ids())::uuid[])
      or (select app.is_platform_admin())
    )
  );
