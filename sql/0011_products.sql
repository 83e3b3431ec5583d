-- The global product catalog (Industry -> Category -> Product, managed by platform administrators) and the
-- products each client sells. A lead may only reference a product its client has enabled.
--
-- Names are unique per parent regardless of case ("Solar panels" and "solar panels" are one product), so
-- those keys are unique indexes on lower(name); the same name under two parents is fine. Every foreign key
-- restricts deletes: an industry with categories, a category with products and a product a client has
-- enabled cannot be deleted, and a client's enabled product cannot be disabled while its leads use it.

create table public.industries (
  id uuid primary key default gen_random_uuid(),
  name text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint industries_name_check check (char_length(name) between 1 and 200 and name = btrim(name))
);
comment on table public.industries is 'Top level of the product catalog (e.g. Real estate).';
create unique index industries_lower_name_key on public.industries (lower(name));
create trigger on_industries_touch before update on public.industries
  for each row execute function app._touch_updated_at();

create table public.categories (
  id uuid primary key default gen_random_uuid(),
  industry_id uuid not null references public.industries (id) on delete restrict,
  name text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint categories_name_check check (char_length(name) between 1 and 200 and name = btrim(name))
);
comment on table public.categories is 'Second level of the product catalog; every category belongs to one industry.';
-- Also serves the industry_id foreign key's lookups.
create unique index categories_industry_id_lower_name_key on public.categories (industry_id, lower(name));
create trigger on_categories_touch before update on public.categories
  for each row execute function app._touch_updated_at();

create table public.products (
  id uuid primary key default gen_random_uuid(),
  category_id uuid not null references public.categories (id) on delete restrict,
  name text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint products_name_check check (char_length(name) between 1 and 200 and name = btrim(name))
);
comment on table public.products is 'What clients sell; every product belongs to one category.';
-- Also serves the category_id foreign key's lookups.
create unique index products_category_id_lower_name_key on public.products (category_id, lower(name));
create trigger on_products_touch before update on public.products
  for each row execute function app._touch_updated_at();

create table public.client_products (
  client_id text not null references public.clients (id) on delete cascade,
  product_id uuid not null references public.products (id) on delete restrict,
  enabled_at timestamptz not null default now(),
  constraint client_products_pkey primary key (client_id, product_id)
);
comment on table public.client_products is 'Products a client has enabled; leads may reference only these.';
create index client_products_product_id_idx on public.client_products (product_id);
