-- Members of a client see that client's memberships; members.manage adds, changes and removes them.
-- Role escalation and the last-owner rule are enforced by a trigger (app._guard_membership_change).

alter table public.memberships enable row level security;
grant select, insert, update, delete on public.memberships to authenticated;

drop policy if exists "Memberships are viewable by members of the client" on public.memberships;
create policy "Memberships are viewable by members of the client" on public.memberships
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));

drop policy if exists "Memberships are created by members with members.manage" on public.memberships;
create policy "Memberships are created by members with members.manage" on public.memberships
  for insert to authenticated
  with check (app.has_permission(client_id, 'members.manage'));

drop policy if exists "Memberships are updated by members with members.manage" on public.memberships;
create policy "Memberships are updated by members with members.manage" on public.memberships
  for update to authenticated
  using (app.has_permission(client_id, 'members.manage'))
  with check (app.has_permission(client_id, 'members.manage'));

drop policy if exists "Memberships are removed by members with members.manage" on public.memberships;
create policy "Memberships are removed by members with members.manage" on public.memberships
  for delete to authenticated
  using (app.has_permission(client_id, 'members.manage'));
