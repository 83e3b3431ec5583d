-- Client API keys for lead ingestion (website forms, server-to-server). A key looks like
-- lap_<environment>_<prefix>_<secret>; it is shown once and stored only as SHA-256. Keys are scoped,
-- optionally expiring, revocable, rotatable, rate limited per key and, for browser forms, tied to origins.
--
-- security definer functions in this file and why (each checks api_keys.manage itself):
--   public.create_api_key(), public.list_api_keys(), public.revoke_api_key(), public.rotate_api_key()
--     manage rows of the private app.api_keys table, whose hashes no API role may read
--
-- The key itself is made by the caller (functions/api/keys): the database only ever sees its SHA-256.

create table app.api_keys (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  name text not null,
  environment text not null default 'live',
  prefix text not null,
  key_hash bytea not null,
  scopes text[] not null default '{ingest:single,ingest:batch}',
  allowed_origins text[] not null default '{}',
  rate_limit_per_minute int not null default 600,
  default_source text not null default 'website',
  expires_at timestamptz,
  revoked_at timestamptz,
  last_used_at timestamptz,
  replaced_by uuid references app.api_keys (id),
  created_by uuid references public.users (id) on delete set null,
  created_at timestamptz not null default now(),
  constraint api_keys_prefix_key unique (prefix),
  constraint api_keys_key_hash_key unique (key_hash),
  constraint api_keys_name_check check (char_length(name) between 1 and 100),
  constraint api_keys_environment_check check (environment in ('live', 'test')),
  constraint api_keys_scopes_check check (scopes <@ '{ingest:single,ingest:batch}' and cardinality(scopes) > 0),
  constraint api_keys_rate_limit_check check (rate_limit_per_minute between 1 and 1000000),
  constraint api_keys_default_source_check check (default_source in ('website', 'api', 'manual')),
  constraint api_keys_allowed_origins_check check (cardinality(allowed_origins) <= 50)
);
comment on table app.api_keys is 'Ingestion keys (hashes only); managed through the api_keys functions.';
create index api_keys_client_id_idx on app.api_keys (client_id);
create index api_keys_allowed_origins_idx on app.api_keys using gin (allowed_origins) where revoked_at is null;

-- The public face of a key: everything but the hash.
create function app._api_key_json(k app.api_keys) returns jsonb
language sql stable
set search_path = ''
as $$
  select jsonb_build_object(
    'id', k.id, 'client_id', k.client_id, 'name', k.name, 'environment', k.environment, 'prefix', k.prefix,
    'scopes', k.scopes, 'allowed_origins', k.allowed_origins, 'rate_limit_per_minute', k.rate_limit_per_minute,
    'default_source', k.default_source, 'expires_at', k.expires_at, 'revoked_at', k.revoked_at,
    'last_used_at', k.last_used_at, 'replaced_by', k.replaced_by, 'created_at', k.created_at,
    'status', case
      when k.revoked_at is not null then 'revoked'
      when k.expires_at is not null and k.expires_at <= now() then 'expired'
      else 'active' end
  );
$$;

create function app._require_api_key_manager(p_client_id text) returns void
language plpgsql stable
set search_path = ''
as $$
begin
  if not app.has_permission(p_client_id, 'api_keys.manage') then
    raise exception 'Missing permission api_keys.manage' using errcode = 'insufficient_privilege';
  end if;
end
$$;

create function public.create_api_key(
  p_client_id text,
  p_name text,
  p_environment text,
  p_prefix text,
  p_key_hash bytea,
  p_scopes text[],
  p_allowed_origins text[],
  p_rate_limit_per_minute int,
  p_default_source text,
  p_expires_at timestamptz
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key app.api_keys;
begin
  perform app._require_api_key_manager(p_client_id);
  insert into app.api_keys (client_id, name, environment, prefix, key_hash, scopes, allowed_origins,
    rate_limit_per_minute, default_source, expires_at, created_by)
  values (p_client_id, p_name, p_environment, p_prefix, p_key_hash, p_scopes, p_allowed_origins,
    p_rate_limit_per_minute, p_default_source, p_expires_at, auth.uid())
  returning * into v_key;
  return app._api_key_json(v_key);
end
$$;

create function public.list_api_keys(p_client_id text) returns setof jsonb
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  perform app._require_api_key_manager(p_client_id);
  return query select app._api_key_json(k) from app.api_keys k where k.client_id = p_client_id
    order by k.created_at desc, k.id;
end
$$;

create function public.revoke_api_key(p_client_id text, p_key_id uuid) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_key app.api_keys;
begin
  perform app._require_api_key_manager(p_client_id);
  update app.api_keys k set revoked_at = coalesce(k.revoked_at, now())
  where k.id = p_key_id and k.client_id = p_client_id
  returning * into v_key;
  return case when v_key.id is null then null else app._api_key_json(v_key) end;
end
$$;

-- Issues a replacement with the same settings; the old key keeps working for p_grace_seconds so forms
-- can be redeployed without losing submissions (0 ends it at once). Returns {"key": new, "previous": old},
-- null when the client has no such key, and refuses (errcode 55000, the reason in the hint) keys that are
-- revoked, expired or already replaced: rotate the replacement instead, so every chain stays linear.
create function public.rotate_api_key(
  p_client_id text,
  p_key_id uuid,
  p_prefix text,
  p_key_hash bytea,
  p_grace_seconds int
) returns jsonb
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_old app.api_keys;
  v_new app.api_keys;
begin
  perform app._require_api_key_manager(p_client_id);
  if p_grace_seconds is null or p_grace_seconds not between 0 and 604800 then
    raise exception 'Grace must be between 0 and 604800 seconds' using errcode = 'check_violation';
  end if;
  select * into v_old from app.api_keys k
  where k.id = p_key_id and k.client_id = p_client_id
  for update;
  if not found then
    return null;
  elsif v_old.revoked_at is not null then
    raise exception 'API key % is revoked', p_key_id
      using errcode = 'object_not_in_prerequisite_state', hint = 'api_key_revoked';
  elsif v_old.expires_at is not null and v_old.expires_at <= now() then
    raise exception 'API key % has expired', p_key_id
      using errcode = 'object_not_in_prerequisite_state', hint = 'api_key_expired';
  elsif v_old.replaced_by is not null then
    raise exception 'API key % was already rotated; rotate its replacement %', p_key_id, v_old.replaced_by
      using errcode = 'object_not_in_prerequisite_state', hint = 'api_key_replaced';
  end if;
  insert into app.api_keys (client_id, name, environment, prefix, key_hash, scopes, allowed_origins,
    rate_limit_per_minute, default_source, expires_at, created_by)
  values (v_old.client_id, v_old.name, v_old.environment, p_prefix, p_key_hash, v_old.scopes,
    v_old.allowed_origins, v_old.rate_limit_per_minute, v_old.default_source, v_old.expires_at, auth.uid())
  returning * into v_new;
  update app.api_keys k
  set replaced_by = v_new.id,
      expires_at = least(coalesce(k.expires_at, 'infinity'), now() + make_interval(secs => p_grace_seconds))
  where k.id = v_old.id
  returning * into v_old;
  return jsonb_build_object('key', app._api_key_json(v_new), 'previous', app._api_key_json(v_old));
end
$$;

grant execute on function public.create_api_key(text, text, text, text, bytea, text[], text[], int, text, timestamptz),
  public.list_api_keys(text), public.revoke_api_key(text, uuid), public.rotate_api_key(text, uuid, text, bytea, int)
  to authenticated;
