-- Roles and the permission catalog. Members read their client's roles; roles.manage edits them.
-- The catalog is readable by every signed-in user and written only by app.sync_permissions().

alter table public.roles enable row level security;
grant select, insert, update, delete on public.roles to authenticated;

drop policy if exists "Roles are viewable by members of the client" on public.roles;
create policy "Roles are viewable by members of the client" on public.roles
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));

drop policy if exists "Roles are created by members with roles.manage" on public.roles;
create policy "Roles are created by members with roles.manage" on public.roles
  for insert to authenticated
  with check (app.has_permission(client_id, 'roles.manage'));

drop policy if exists "Roles are updated by members with roles.manage" on public.roles;
create policy "Roles are updated by members with roles.manage" on public.roles
  for update to authenticated
  using (app.has_permission(client_id, 'roles.manage'))
  with check (app.has_permission(client_id, 'roles.manage'));

drop policy if exists "Roles are deleted by members with roles.manage" on public.roles;
create policy "Roles are deleted by members with roles.manage" on public.roles
  for delete to authenticated
  using (app.has_permission(client_id, 'roles.manage'));

alter table public.permissions enable row level security;
grant select on public.permissions to authenticated;

drop policy if exists "Permissions are viewable by signed-in users" on public.permissions;
create policy "Permissions are viewable by signed-in users" on public.permissions
  for select to authenticated
  using (true);
