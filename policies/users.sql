-- A user sees their own account, the accounts behind the memberships they can see (so hierarchy scoping
-- carries over), and, for platform administrators, everyone. Accounts are created by public.add_member();
-- only the owner of an account or a platform administrator updates it, and a trigger limits what
-- non-administrators may change.

alter table public.users enable row level security;
grant select, update on public.users to authenticated;

drop policy if exists "Users are viewable by themselves and their clients' members" on public.users;
drop policy if exists "Users are viewable by themselves and whoever sees their memberships" on public.users;
create policy "Users are viewable by themselves and whoever sees their memberships" on public.users
  for select to authenticated
  using (
    id = (select auth.uid()) and (select app.current_user_active())
    or (select app.is_platform_admin())
    -- Subject to the memberships policies, so this sees exactly the visible memberships.
    or exists (select 1 from public.memberships m where m.user_id = users.id)
  );

drop policy if exists "Users are editable by themselves and platform administrators" on public.users;
create policy "Users are editable by themselves and platform administrators" on public.users
  for update to authenticated
  using (id = (select auth.uid()) and (select app.current_user_active()) or (select app.is_platform_admin()))
  with check (id = (select auth.uid()) and (select app.current_user_active()) or (select app.is_platform_admin()));
