-- A client's integrations as staff see them: WhatsApp and Google Sheets settings, connected Meta pages and
-- their lead forms. Readable with integrations.read, written with integrations.manage. The credentials live in
-- private tables (policies/private.sql) and are written only through the functions of
-- sql/0026_integration_secrets.sql. A form belongs to the client of its page.

alter table public.integrations enable row level security;
alter table public.meta_pages enable row level security;
alter table public.meta_forms enable row level security;
grant select, insert, update, delete on public.integrations to authenticated;
grant select, insert, update, delete on public.meta_pages to authenticated;
grant select, insert, update, delete on public.meta_forms to authenticated;

drop policy if exists "Integrations are viewable with integrations.read" on public.integrations;
create policy "Integrations are viewable with integrations.read" on public.integrations
  for select to authenticated
  using (client_id = any ((select app.clients_with_permission('integrations.read'))::text[])
    or (select app.is_platform_admin()));
drop policy if exists "Integrations are created with integrations.manage" on public.integrations;
create policy "Integrations are created with integrations.manage" on public.integrations
  for insert to authenticated with check (app.has_permission(client_id, 'integrations.manage'));
drop policy if exists "Integrations are updated with integrations.manage" on public.integrations;
create policy "Integrations are updated with integrations.manage" on public.integrations
  for update to authenticated
  using (app.has_permission(client_id, 'integrations.manage'))
  with check (app.has_permission(client_id, 'integrations.manage'));
drop policy if exists "Integrations are deleted with integrations.manage" on public.integrations;
create policy "Integrations are deleted with integrations.manage" on public.integrations
  for delete to authenticated using (app.has_permission(client_id, 'integrations.manage'));

drop policy if exists "Meta pages are viewable with integrations.read" on public.meta_pages;
create policy "Meta pages are viewable with integrations.read" on public.meta_pages
  for select to authenticated
  using (client_id = any ((select app.clients_with_permission('integrations.read'))::text[])
    or (select app.is_platform_admin()));
drop policy if exists "Meta pages are connected with integrations.manage" on public.meta_pages;
create policy "Meta pages are connected with integrations.manage" on public.meta_pages
  for insert to authenticated with check (app.has_permission(client_id, 'integrations.manage'));
drop policy if exists "Meta pages are updated with integrations.manage" on public.meta_pages;
create policy "Meta pages are updated with integrations.manage" on public.meta_pages
  for update to authenticated
  using (app.has_permission(client_id, 'integrations.manage'))
  with check (app.has_permission(client_id, 'integrations.manage'));
drop policy if exists "Meta pages are disconnected with integrations.manage" on public.meta_pages;
create policy "Meta pages are disconnected with integrations.manage" on public.meta_pages
  for delete to authenticated using (app.has_permission(client_id, 'integrations.manage'));

drop policy if exists "Meta forms are viewable with integrations.read" on public.meta_forms;
create policy "Meta forms are viewable with integrations.read" on public.meta_forms
  for select to authenticated
  using (client_id = any ((select app.clients_with_permission('integrations.read'))::text[])
    or (select app.is_platform_admin()));
drop policy if exists "Meta forms are mapped on the client's own pages with integrations.manage"
  on public.meta_forms;
create policy "Meta forms are mapped on the client's own pages with integrations.manage" on public.meta_forms
  for insert to authenticated
  with check (
    app.has_permission(client_id, 'integrations.manage')
    -- Subject to the meta_pages policies too: the page must be visible and belong to the same client.
    and exists (select 1 from public.meta_pages p where p.page_id = meta_forms.page_id
      and p.client_id = meta_forms.client_id)
  );
drop policy if exists "Meta forms are updated on the client's own pages with integrations.manage"
  on public.meta_forms;
create policy "Meta forms are updated on the client's own pages with integrations.manage" on public.meta_forms
  for update to authenticated
  using (app.has_permission(client_id, 'integrations.manage'))
  with check (
    app.has_permission(client_id, 'integrations.manage')
    and exists (select 1 from public.meta_pages p where p.page_id = meta_forms.page_id
      and p.client_id = meta_forms.client_id)
  );
drop policy if exists "Meta forms are unmapped with integrations.manage" on public.meta_forms;
create policy "Meta forms are unmapped with integrations.manage" on public.meta_forms
  for delete to authenticated using (app.has_permission(client_id, 'integrations.manage'));
