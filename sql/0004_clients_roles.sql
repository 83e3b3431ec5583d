-- Clients (tenants) with client-provided, immutable ids; the permission catalog; per-client roles copied
-- from system templates.

create table public.clients (
  id text primary key,
  name text not null,
  status text not null default 'active',
  settings jsonb not null default '{}',
  created_by uuid references public.users (id) on delete set null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint clients_id_check check (id ~ '^[a-z0-9][a-z0-9_-]{1,62}[a-z0-9]$'),
  constraint clients_name_check check (char_length(name) between 1 and 200),
  constraint clients_status_check check (status in ('active', 'inactive')),
  constraint clients_settings_check check (jsonb_typeof(settings) = 'object')
);
comment on table public.clients is
  'Tenants. The id is chosen by the agency (a slug such as "acme-realty") and never changes.';

-- Other tables reference clients by id, so an id change would orphan or rewrite them; and activating or
-- deactivating a client is the agency's decision, not the client's own staff's.
create function app._guard_client_update() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.id <> old.id then
    raise exception 'Client id "%" is immutable', old.id using errcode = 'check_violation';
  end if;
  if new.status <> old.status and app._is_api_user() and not app.is_platform_admin() then
    raise exception 'Only platform administrators can change a client''s status'
      using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;

create trigger on_clients_update before update on public.clients
  for each row execute function app._guard_client_update();
create trigger on_clients_touch before update on public.clients
  for each row execute function app._touch_updated_at();

create table public.permissions (
  code text primary key,
  description text not null,
  constraint permissions_code_check check (code ~ '^[a-z_]+\.[a-z_]+$')
);
comment on table public.permissions is
  'Catalog of permission codes, synced from the API routes that require them (see app.sync_permissions).';

create table app.role_templates (
  key text primary key,
  name text not null,
  rank int not null,
  scope text not null,
  -- Patterns over the catalog: "*" is everything, "leads.*" a domain, "*.read" an action.
  permission_patterns text[] not null
);
comment on table app.role_templates is
  'System roles copied into every client; rank orders them (lower is more powerful).';

insert into app.role_templates (key, name, rank, scope, permission_patterns) values
  ('owner', 'Owner', 10, 'client', '{*}'),
  ('admin', 'Admin', 20, 'client', '{*}'),
  ('manager', 'Manager', 30, 'team', '{*.read,leads.*,members.read,hierarchy.read}'),
  ('agent', 'Agent', 40, 'own', '{*.read,leads.update,leads.notes}'),
  ('viewer', 'Viewer', 50, 'own', '{*.read}');

create table public.roles (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  key text not null,
  name text not null,
  rank int not null,
  scope text not null,
  permissions text[] not null default '{}',
  -- True while the role mirrors its template; editing a role detaches it.
  is_system boolean not null default false,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint roles_client_id_key_key unique (client_id, key),
  constraint roles_client_id_id_key unique (client_id, id),
  constraint roles_key_check check (key ~ '^[a-z][a-z0-9_-]{0,62}$'),
  constraint roles_name_check check (char_length(name) between 1 and 100),
  constraint roles_rank_check check (rank between 1 and 1000),
  constraint roles_scope_check check (scope in ('own', 'team', 'client'))
);
comment on table public.roles is
  'Per-client roles: a permission set and a data scope (own records, own team, whole client).';

create trigger on_roles_update before update on public.roles
  for each row execute function app._touch_updated_at();

-- Expands template patterns against the current catalog.
create function app._expand_permission_patterns(p_patterns text[]) returns text[]
language sql stable
set search_path = ''
as $$
  select coalesce(array_agg(p.code order by p.code), '{}')
  from public.permissions p
  where exists (
    select 1 from unnest(p_patterns) pattern
    where pattern = '*'
      or pattern = p.code
      or (pattern like '%.*' and split_part(p.code, '.', 1) = split_part(pattern, '.', 1))
      or (pattern like '*.%' and split_part(p.code, '.', 2) = split_part(pattern, '.', 2))
  );
$$;

-- Replaces the catalog with the codes the API routes declare and refreshes system roles, so code and
-- catalog never drift. p_codes is a JSON object {code: description}.
create function app.sync_permissions(p_codes jsonb) returns void
language plpgsql
set search_path = ''
as $$
begin
  insert into public.permissions (code, description)
  select key, value from jsonb_each_text(p_codes)
  on conflict (code) do update set description = excluded.description;

  delete from public.permissions where not (p_codes ? code);

  update public.roles r
  set permissions = app._expand_permission_patterns(t.permission_patterns)
  from app.role_templates t
  where r.is_system and r.key = t.key;
end
$$;

-- Copies the system role templates into a new client. Security definer: the creator cannot write
-- roles of a client that does not exist yet.
create function app._create_system_roles() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.roles (client_id, key, name, rank, scope, permissions, is_system)
  select new.id, t.key, t.name, t.rank, t.scope, app._expand_permission_patterns(t.permission_patterns), true
  from app.role_templates t;
  return new;
end
$$;

create trigger on_clients_insert after insert on public.clients
  for each row execute function app._create_system_roles();
