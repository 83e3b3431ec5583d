-- Client scoping: a user sees the active clients they belong to; platform administrators see every client.
-- Clients are created through public.create_client(), which also makes the creator the owner.

alter table public.clients enable row level security;
grant select, update on public.clients to authenticated;

drop policy if exists "Clients are viewable by their members" on public.clients;
create policy "Clients are viewable by their members" on public.clients
  for select to authenticated
  using (id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));

drop policy if exists "Clients are editable by members with clients.update" on public.clients;
create policy "Clients are editable by members with clients.update" on public.clients
  for update to authenticated
  using (app.has_permission(id, 'clients.update'))
  with check (app.has_permission(id, 'clients.update'));
