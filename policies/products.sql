-- The product catalog is readable by every signed-in user and managed by platform administrators; a client's
-- enabled products are visible to its members and managed with products.manage.

alter table public.industries enable row level security;
alter table public.categories enable row level security;
alter table public.products enable row level security;
alter table public.client_products enable row level security;
grant select, insert, update, delete on public.industries, public.categories, public.products to authenticated;
grant select, insert, delete on public.client_products to authenticated;

drop policy if exists "Industries are viewable by signed-in users" on public.industries;
create policy "Industries are viewable by signed-in users" on public.industries
  for select to authenticated using ((select app.current_user_active()));
drop policy if exists "Industries are created by platform administrators" on public.industries;
create policy "Industries are created by platform administrators" on public.industries
  for insert to authenticated with check ((select app.is_platform_admin()));
drop policy if exists "Industries are updated by platform administrators" on public.industries;
create policy "Industries are updated by platform administrators" on public.industries
  for update to authenticated using ((select app.is_platform_admin())) with check ((select app.is_platform_admin()));
drop policy if exists "Industries are deleted by platform administrators" on public.industries;
create policy "Industries are deleted by platform administrators" on public.industries
  for delete to authenticated using ((select app.is_platform_admin()));

drop policy if exists "Categories are viewable by signed-in users" on public.categories;
create policy "Categories are viewable by signed-in users" on public.categories
  for select to authenticated using ((select app.current_user_active()));
drop policy if exists "Categories are created by platform administrators" on public.categories;
create policy "Categories are created by platform administrators" on public.categories
  for insert to authenticated with check ((select app.is_platform_admin()));
drop policy if exists "Categories are updated by platform administrators" on public.categories;
create policy "Categories are updated by platform administrators" on public.categories
  for update to authenticated using ((select app.is_platform_admin())) with check ((select app.is_platform_admin()));
drop policy if exists "Categories are deleted by platform administrators" on public.categories;
create policy "Categories are deleted by platform administrators" on public.categories
  for delete to authenticated using ((select app.is_platform_admin()));

drop policy if exists "Products are viewable by signed-in users" on public.products;
create policy "Products are viewable by signed-in users" on public.products
  for select to authenticated using ((select app.current_user_active()));
drop policy if exists "Products are created by platform administrators" on public.products;
create policy "Products are created by platform administrators" on public.products
  for insert to authenticated with check ((select app.is_platform_admin()));
drop policy if exists "Products are updated by platform administrators" on public.products;
create policy "Products are updated by platform administrators" on public.products
  for update to authenticated using ((select app.is_platform_admin())) with check ((select app.is_platform_admin()));
drop policy if exists "Products are deleted by platform administrators" on public.products;
create policy "Products are deleted by platform administrators" on public.products
  for delete to authenticated using ((select app.is_platform_admin()));

drop policy if exists "Client products are viewable by members of the client" on public.client_products;
create policy "Client products are viewable by members of the client" on public.client_products
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));
drop policy if exists "Client products are enabled by members with products.manage" on public.client_products;
create policy "Client products are enabled by members with products.manage" on public.client_products
  for insert to authenticated with check (app.has_permission(client_id, 'products.manage'));
drop policy if exists "Client products are disabled by members with products.manage" on public.client_products;
create policy "Client products are disabled by members with products.manage" on public.client_products
  for delete to authenticated using (app.has_permission(client_id, 'products.manage'));
