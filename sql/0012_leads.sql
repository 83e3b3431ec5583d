-- Leads: known fields, client-defined custom fields and the untouched raw payload; a per-client status
-- pipeline; notes and an activity timeline. external_ref is unique per client and source, which makes every
-- source idempotent (a Meta leadgen id, a form submission id, an Idempotency-Key).

create table public.lead_statuses (
  client_id text not null references public.clients (id) on delete cascade,
  key text not null,
  name text not null,
  position int not null,
  is_closed boolean not null default false,
  constraint lead_statuses_pkey primary key (client_id, key),
  constraint lead_statuses_key_check check (key ~ '^[a-z][a-z0-9_]{0,39}$')
);
comment on table public.lead_statuses is 'Each client''s lead pipeline, in position order.';

create table public.leads (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  source text not null,
  external_ref text,
  full_name text,
  email text,
  phone text,
  product_id uuid,
  status text not null default 'new',
  owner_membership_id uuid,
  duplicate_of uuid references public.leads (id) on delete set null,
  utm_source text,
  utm_medium text,
  utm_campaign text,
  utm_term text,
  utm_content text,
  consent boolean not null default false,
  custom jsonb not null default '{}',
  raw_payload jsonb not null default '{}',
  -- Names, the email whole and in parts (john, example, com), and the phone with and without its "+", so
  -- staff find a lead however they type it.
  search tsvector generated always as (
    to_tsvector('simple', coalesce(full_name, '') || ' ' || coalesce(email, '') || ' '
      || coalesce(translate(email, '@.', '  '), '') || ' ' || coalesce(phone, '') || ' '
      || coalesce(ltrim(phone, '+'), ''))
  ) stored,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint leads_client_id_source_external_ref_key unique (client_id, source, external_ref),
  constraint leads_client_id_id_key unique (client_id, id),
  constraint leads_product_fkey foreign key (client_id, product_id)
    references public.client_products (client_id, product_id),
  constraint leads_owner_fkey foreign key (client_id, owner_membership_id)
    references public.memberships (client_id, id) on delete set null (owner_membership_id),
  constraint leads_status_fkey foreign key (client_id, status)
    references public.lead_statuses (client_id, key) on update cascade,
  constraint leads_source_check check (source in ('website', 'api', 'manual', 'meta', 'instagram', 'google_sheets', 'whatsapp')),
  constraint leads_contact_check check (email is not null or phone is not null),
  constraint leads_email_check check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  constraint leads_phone_check check (phone ~ '^\+[1-9][0-9]{6,14}$'),
  constraint leads_custom_check check (jsonb_typeof(custom) = 'object')
);
comment on table public.leads is
  'Leads of a client. duplicate_of links a lead to the original with the same phone or email.';

create index leads_client_id_created_at_idx on public.leads (client_id, created_at desc, id desc);
create index leads_owner_membership_id_created_at_idx on public.leads (owner_membership_id, created_at desc, id desc);
create index leads_client_id_email_idx on public.leads (client_id, email) where duplicate_of is null;
create index leads_client_id_phone_idx on public.leads (client_id, phone) where duplicate_of is null;
create index leads_search_idx on public.leads using gin (search);
create index leads_client_id_product_id_idx on public.leads (client_id, product_id) where product_id is not null;
create index leads_duplicate_of_idx on public.leads (duplicate_of) where duplicate_of is not null;

create trigger on_leads_touch before update on public.leads
  for each row execute function app._touch_updated_at();

create table public.lead_notes (
  id uuid primary key default gen_random_uuid(),
  client_id text not null,
  lead_id uuid not null,
  author_id uuid not null default auth.uid() references public.users (id),
  body text not null,
  created_at timestamptz not null default now(),
  constraint lead_notes_lead_fkey foreign key (client_id, lead_id) references public.leads (client_id, id) on delete cascade,
  constraint lead_notes_body_check check (char_length(body) between 1 and 10000)
);
comment on table public.lead_notes is 'Free-text notes staff add to a lead.';
create index lead_notes_lead_id_idx on public.lead_notes (lead_id, created_at);

create table public.lead_activities (
  id bigint generated always as identity primary key,
  client_id text not null,
  lead_id uuid not null,
  actor_id uuid references public.users (id),
  kind text not null,
  data jsonb not null default '{}',
  created_at timestamptz not null default now(),
  constraint lead_activities_lead_fkey foreign key (client_id, lead_id) references public.leads (client_id, id) on delete cascade,
  constraint lead_activities_kind_check check (kind ~ '^[a-z_]+$')
);
comment on table public.lead_activities is
  'A lead''s timeline: status changes, reassignments, duplicates received, notes; written by triggers.';
create index lead_activities_lead_id_idx on public.lead_activities (lead_id, id);

-- The default pipeline every client starts with.
create function app._create_default_statuses() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.lead_statuses (client_id, key, name, position, is_closed) values
    (new.id, 'new', 'New', 10, false),
    (new.id, 'contacted', 'Contacted', 20, false),
    (new.id, 'qualified', 'Qualified', 30, false),
    (new.id, 'won', 'Won', 40, true),
    (new.id, 'lost', 'Lost', 50, true);
  return new;
end
$$;

create trigger on_clients_insert_statuses after insert on public.clients
  for each row execute function app._create_default_statuses();

insert into public.lead_statuses (client_id, key, name, position, is_closed)
select c.id, s.key, s.name, s.position, s.is_closed
from public.clients c
cross join (values ('new', 'New', 10, false), ('contacted', 'Contacted', 20, false),
  ('qualified', 'Qualified', 30, false), ('won', 'Won', 40, true), ('lost', 'Lost', 50, true))
  as s (key, name, position, is_closed)
on conflict do nothing;
