-- Global user accounts (one person, one account, many clients) and their password credentials.
-- Emails are stored lower-cased so uniqueness is case-insensitive without relying on citext operators
-- being on the search_path.

create table public.users (
  id uuid primary key default gen_random_uuid(),
  email text not null,
  full_name text not null,
  is_platform_admin boolean not null default false,
  disabled_at timestamptz,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint users_email_key unique (email),
  constraint users_email_check check (email = lower(email) and email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  constraint users_full_name_check check (char_length(full_name) between 1 and 200)
);
comment on table public.users is
  'Global accounts. A user belongs to clients through memberships; is_platform_admin marks agency staff.';

create trigger on_users_update before update on public.users
  for each row execute function app._touch_updated_at();

create table app.credentials (
  user_id uuid primary key references public.users (id) on delete cascade,
  password_hash text not null,
  changed_at timestamptz not null default now()
);
comment on table app.credentials is 'bcrypt password hashes (pgcrypto crypt), never readable through the API.';

create table app.invitations (
  token_hash bytea primary key,
  user_id uuid not null references public.users (id) on delete cascade,
  invited_by uuid references public.users (id) on delete set null,
  expires_at timestamptz not null,
  accepted_at timestamptz
);
comment on table app.invitations is
  'One-time tokens (stored as SHA-256) with which an invited user sets a first password.';
create index invitations_user_id_idx on app.invitations (user_id);

-- Sets a password; the cost comes from config.toml through the caller.
create function app.set_password(p_user_id uuid, p_password text, p_cost int) returns void
language sql
set search_path = ''
as $$
  insert into app.credentials (user_id, password_hash)
  values (p_user_id, extensions.crypt(p_password, extensions.gen_salt('bf', p_cost)))
  on conflict (user_id) do update set password_hash = excluded.password_hash, changed_at = now();
$$;

-- Returns the user when the password matches, even if disabled, so the caller can tell
-- "disabled" apart from "wrong password" in its logs (but not in its response).
create function app.verify_password(p_email text, p_password text)
returns table (user_id uuid, disabled boolean, is_platform_admin boolean)
language sql stable
set search_path = ''
as $$
  select u.id, u.disabled_at is not null, u.is_platform_admin
  from public.users u
  join app.credentials c on c.user_id = u.id
  where u.email = lower(p_email)
    and c.password_hash = extensions.crypt(p_password, c.password_hash);
$$;
