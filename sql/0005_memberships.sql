-- Memberships link users to clients (many-to-many) with a role and a reports_to manager in the same client.
-- Composite foreign keys make a role or manager from another client impossible, whatever the caller.

create table public.memberships (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  user_id uuid not null references public.users (id) on delete cascade,
  role_id uuid not null,
  reports_to uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint memberships_client_id_user_id_key unique (client_id, user_id),
  constraint memberships_client_id_id_key unique (client_id, id),
  constraint memberships_role_id_fkey foreign key (client_id, role_id)
    references public.roles (client_id, id),
  constraint memberships_reports_to_fkey foreign key (client_id, reports_to)
    references public.memberships (client_id, id),
  constraint memberships_reports_to_check check (reports_to <> id)
);
comment on table public.memberships is
  'A user''s place in a client: role and manager (reports_to). Removing one ends access on the next request.';

create index memberships_user_id_idx on public.memberships (user_id);
create index memberships_reports_to_idx on public.memberships (reports_to);
create index memberships_role_id_idx on public.memberships (client_id, role_id);

create trigger on_memberships_update before update on public.memberships
  for each row execute function app._touch_updated_at();

-- A removed member's reports move up to the removed member's own manager instead of losing their place.
create function app._reattach_reports() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.memberships set reports_to = old.reports_to
  where client_id = old.client_id and reports_to = old.id;
  return old;
end
$$;

create trigger on_memberships_delete before delete on public.memberships
  for each row execute function app._reattach_reports();
