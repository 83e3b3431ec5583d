-- Writing and inspecting the sealed credentials of integrations and Meta pages on behalf of API callers.
-- The API seals a credential (AES-256-GCM, bound to the client and kind, or to the page) before it reaches
-- the database; these functions store it in the private tables of sql/0024_integrations.sql inside the
-- caller's own transaction, so the settings row and its secret are written atomically, and tell the caller
-- whether a credential is stored without ever returning it.
--
-- security definer functions in this file and why (each checks the caller's permission itself, through
-- app.has_permission, which reads the JWT claims: inside them current_user is the owner):
--   app.set_integration_secret()     writes app.integration_secrets, with integrations.manage in the client
--   app.set_page_token()             writes app.meta_page_tokens, with integrations.manage in the page's client
--   app.integration_secret_kinds()   reads which kinds of a client have a stored secret (never the secret)
--   app.meta_page_token_ids()        reads which pages of a client have a stored token (never the token)

-- Stores the sealed secret of a client's integration (its settings row must exist). False when the caller
-- may not manage the client's integrations.
create function app.set_integration_secret(p_client_id text, p_kind text, p_secret_sealed text) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  if not app.has_permission(p_client_id, 'integrations.manage') then
    return false;
  end if;
  insert into app.integration_secrets (client_id, kind, secret_sealed)
  values (p_client_id, p_kind, p_secret_sealed)
  on conflict (client_id, kind) do update set secret_sealed = excluded.secret_sealed, updated_at = now();
  return true;
end
$$;
grant execute on function app.set_integration_secret(text, text, text) to authenticated;

-- Stores the sealed access token of a connected page. False when the page does not exist or the caller may
-- not manage its client's integrations (the two are not told apart).
create function app.set_page_token(p_page_id text, p_token_sealed text) returns boolean
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_client text;
begin
  select p.client_id into v_client from public.meta_pages p where p.page_id = p_page_id;
  if v_client is null or not app.has_permission(v_client, 'integrations.manage') then
    return false;
  end if;
  insert into app.meta_page_tokens (page_id, token_sealed) values (p_page_id, p_token_sealed)
  on conflict (page_id) do update set token_sealed = excluded.token_sealed, updated_at = now();
  return true;
end
$$;
grant execute on function app.set_page_token(text, text) to authenticated;

-- The integration kinds of a client that have a stored secret; empty for callers who may neither read nor
-- manage the client's integrations.
create function app.integration_secret_kinds(p_client_id text) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  if not (app.has_permission(p_client_id, 'integrations.read')
      or app.has_permission(p_client_id, 'integrations.manage')) then
    return '{}';
  end if;
  return (
    select coalesce(array_agg(s.kind order by s.kind), '{}') from app.integration_secrets s
    where s.client_id = p_client_id
  );
end
$$;
grant execute on function app.integration_secret_kinds(text) to authenticated;

-- The pages of a client that have a stored access token; empty for callers who may neither read nor manage
-- the client's integrations.
create function app.meta_page_token_ids(p_client_id text) returns text[]
language plpgsql stable
security definer
set search_path = ''
as $$
begin
  if not (app.has_permission(p_client_id, 'integrations.read')
      or app.has_permission(p_client_id, 'integrations.manage')) then
    return '{}';
  end if;
  return (
    select coalesce(array_agg(t.page_id order by t.page_id), '{}')
    from app.meta_page_tokens t join public.meta_pages p on p.page_id = t.page_id
    where p.client_id = p_client_id
  );
end
$$;
grant execute on function app.meta_page_token_ids(text) to authenticated;
