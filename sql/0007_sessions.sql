-- Login sessions and their rotating refresh tokens. A refresh token is opaque, stored as SHA-256 and
-- valid once: presenting a token that was already rotated means it leaked, so the whole session is revoked.

create table app.sessions (
  id uuid primary key default gen_random_uuid(),
  user_id uuid not null references public.users (id) on delete cascade,
  -- Active client for the access tokens issued in this session; null for platform admins without one.
  client_id text references public.clients (id) on delete set null,
  user_agent text,
  ip text,
  created_at timestamptz not null default now(),
  refreshed_at timestamptz not null default now(),
  revoked_at timestamptz,
  revoked_reason text
);
comment on table app.sessions is 'One row per login; revoking it ends access and refresh for every token of it.';
create index sessions_user_id_idx on app.sessions (user_id);

create table app.refresh_tokens (
  token_hash bytea primary key,
  session_id uuid not null references app.sessions (id) on delete cascade,
  issued_at timestamptz not null default now(),
  expires_at timestamptz not null,
  rotated_at timestamptz
);
comment on table app.refresh_tokens is 'Refresh token hashes; rotated_at marks a used token whose reuse revokes the session.';
create index refresh_tokens_session_id_idx on app.refresh_tokens (session_id);

-- Rotates a refresh token atomically: exactly one concurrent caller wins. Returns the outcome:
-- 'ok' with the session, 'reused' (session now revoked), 'expired', 'revoked' or 'unknown'.
create function app.rotate_refresh_token(p_hash bytea, p_new_hash bytea, p_ttl_seconds int)
returns table (outcome text, session_id uuid, user_id uuid, client_id text)
language plpgsql
set search_path = ''
as $$
declare
  v_token app.refresh_tokens;
  v_session app.sessions;
begin
  select * into v_token from app.refresh_tokens t where t.token_hash = p_hash for update;
  if not found then
    return query select 'unknown'::text, null::uuid, null::uuid, null::text;
    return;
  end if;
  select * into v_session from app.sessions s where s.id = v_token.session_id;
  if v_session.revoked_at is not null then
    return query select 'revoked'::text, v_session.id, v_session.user_id, v_session.client_id;
    return;
  end if;
  if v_token.rotated_at is not null then
    update app.sessions s set revoked_at = now(), revoked_reason = 'refresh_token_reused' where s.id = v_session.id;
    return query select 'reused'::text, v_session.id, v_session.user_id, v_session.client_id;
    return;
  end if;
  if v_token.expires_at <= now() then
    return query select 'expired'::text, v_session.id, v_session.user_id, v_session.client_id;
    return;
  end if;
  update app.refresh_tokens t set rotated_at = now() where t.token_hash = p_hash;
  insert into app.refresh_tokens (token_hash, session_id, expires_at)
  values (p_new_hash, v_session.id, now() + make_interval(secs => p_ttl_seconds));
  update app.sessions s set refreshed_at = now() where s.id = v_session.id;
  return query select 'ok'::text, v_session.id, v_session.user_id, v_session.client_id;
end
$$;
