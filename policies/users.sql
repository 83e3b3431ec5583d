-- A user sees their own account, the accounts of people in their clients, and (platform
-- administrators) everyone. Accounts are created by public.add_member(); only the owner of an account or a
-- platform administrator updates it, and a trigger limits what non-administrators may change.

alter table public.users enable row level security;
grant select, update on public.users to authenticated;

drop policy if exists "Users are viewable by themselves and their clients' members" on public.users;
create policy "Users are viewable by themselves and their clients' members" on public.users
  for select to authenticated
  using (
    id = (select auth.uid())
    or (select app.is_platform_admin())
    or exists (
      select 1 from public.memberships m
      where m.user_id = users.id and m.client_id = any ((select app.my_client_ids())::text[])
    )
  );

drop policy if exists "Users are editable by themselves and platform administrators" on public.users;
create policy "Users are editable by themselves and platform administrators" on public.users
  for update to authenticated
  using (id = (select auth.uid()) and (select app.current_user_active()) or (select app.is_platform_admin()))
  with check (id = (select auth.uid()) and (select app.current_user_active()) or (select app.is_platform_admin()));
