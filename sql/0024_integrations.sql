-- Per-client third-party integrations: WhatsApp Cloud API, Google Sheets and Meta Lead Ads pages and forms,
-- and the durable inbox of Meta/WhatsApp webhook deliveries. Non-secret settings are readable by the client's
-- staff; secrets (tokens, service-account keys) are sealed with AES-256-GCM by the API before they reach the
-- database, kept in private tables and never returned.

create table public.integrations (
  client_id text not null references public.clients (id) on delete cascade,
  kind text not null,
  enabled boolean not null default true,
  -- whatsapp: {phone_number_id, template_name, template_language, greeting_text}
  -- google_sheets: {spreadsheet_id, sheet, columns: [{header, field}]}
  settings jsonb not null default '{}',
  -- ok, broken (a dead credential: its jobs pause), unknown (never checked).
  status text not null default 'unknown',
  status_detail text,
  checked_at timestamptz,
  token_expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint integrations_pkey primary key (client_id, kind),
  constraint integrations_kind_check check (kind in ('whatsapp', 'google_sheets')),
  constraint integrations_status_check check (status in ('unknown', 'ok', 'broken')),
  constraint integrations_settings_check check (jsonb_typeof(settings) = 'object')
);
comment on table public.integrations is 'A client''s WhatsApp and Google Sheets settings (secrets kept apart).';

create trigger on_integrations_touch before update on public.integrations
  for each row execute function app._touch_updated_at();

create table app.integration_secrets (
  client_id text not null,
  kind text not null,
  -- WhatsApp access token, or the Google service-account key JSON; sealed, bound to client and kind.
  secret_sealed text not null,
  updated_at timestamptz not null default now(),
  constraint integration_secrets_pkey primary key (client_id, kind),
  constraint integration_secrets_fkey foreign key (client_id, kind)
    references public.integrations (client_id, kind) on delete cascade
);
comment on table app.integration_secrets is 'Sealed credentials of client integrations (never returned).';

-- Facebook pages connected to a client; a page belongs to one client. Lead Ads webhooks arrive per page.
create table public.meta_pages (
  page_id text primary key,
  client_id text not null references public.clients (id) on delete cascade,
  name text not null default '',
  status text not null default 'unknown',
  status_detail text,
  checked_at timestamptz,
  token_expires_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint meta_pages_page_id_check check (page_id ~ '^[0-9]{1,30}$'),
  constraint meta_pages_status_check check (status in ('unknown', 'ok', 'broken'))
);
comment on table public.meta_pages is 'Facebook/Instagram pages whose Lead Ads feed a client.';
create index meta_pages_client_id_idx on public.meta_pages (client_id);

create trigger on_meta_pages_touch before update on public.meta_pages
  for each row execute function app._touch_updated_at();

create table app.meta_page_tokens (
  page_id text primary key references public.meta_pages (page_id) on delete cascade,
  token_sealed text not null,
  updated_at timestamptz not null default now()
);
comment on table app.meta_page_tokens is 'Sealed page access tokens (never returned).';

-- Lead forms of a page, each mapped to the product its leads are about (optional).
create table public.meta_forms (
  form_id text primary key,
  page_id text not null references public.meta_pages (page_id) on delete cascade,
  client_id text not null references public.clients (id) on delete cascade,
  product_id uuid,
  name text not null default '',
  -- The backfill reads leads created after this (the last successful read).
  backfilled_until timestamptz,
  created_at timestamptz not null default now(),
  constraint meta_forms_form_id_check check (form_id ~ '^[0-9]{1,30}$'),
  constraint meta_forms_product_fkey foreign key (client_id, product_id)
    references public.client_products (client_id, product_id) on delete set null (product_id)
);
comment on table public.meta_forms is 'Lead Ads forms mapped to a client and, optionally, a product.';
create index meta_forms_page_id_idx on public.meta_forms (page_id);
create index meta_forms_client_id_idx on public.meta_forms (client_id);

-- Every webhook delivery as received, stored before it is answered: the raw body (Meta signs the exact
-- bytes), then processed by a job. Deliveries for pages or numbers nobody connected are parked as
-- unroutable rather than dropped, and can be reprocessed once the page is connected.
create table app.webhook_inbox (
  id bigint generated always as identity primary key,
  provider text not null,
  body text not null,
  -- pending, processed, unroutable (no client for some entries), failed (kept with its error).
  status text not null default 'pending',
  error text,
  received_at timestamptz not null default now(),
  processed_at timestamptz,
  constraint webhook_inbox_provider_check check (provider in ('meta', 'whatsapp')),
  constraint webhook_inbox_status_check check (status in ('pending', 'processed', 'unroutable', 'failed'))
);
comment on table app.webhook_inbox is 'Raw Meta and WhatsApp webhook deliveries, stored before processing.';
create index webhook_inbox_status_idx on app.webhook_inbox (status, id) where status <> 'processed';
