-- Webhook deliveries for a page or WhatsApp number that no client had connected are parked as 'unroutable'
-- (sql/0025), with each such entry named in `error`. Meta delivers a page's leads as soon as the app is
-- subscribed to it, often before the client finishes connecting the page, and the form backfill reaches only
-- connected forms and the last 24 hours. So connecting a page or a number puts the deliveries parked for it
-- back to 'pending', and the worker's next round routes them: the entries routed the first time keep their
-- job keys, so nothing runs twice.
--
-- Ownership is checked before the row exists: a page is connected with a page token Graph confirmed, a
-- number with its own credentials, so whoever connects it could read those leads and messages anyway.
--
-- security definer functions in this file and why:
--   app._reroute_parked_deliveries()  writes the private inbox whichever role connected the page or number

-- Puts back to pending the unroutable deliveries that name the page or number just connected, worded as
-- app.route_webhook_inbox() words them: "page <id> not connected (leadgen ...)" and "WhatsApp phone number
-- <id> not connected", joined by "; ". Whichever endpoint received them: one Meta app may send both kinds to
-- either URL.
create function app._reroute_parked_deliveries() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_named text;
begin
  if tg_table_name = 'meta_pages' then
    v_named := '; page ' || new.page_id || ' not connected (';
  else
    v_named := '; WhatsApp phone number ' || (new.settings ->> 'phone_number_id') || ' not connected;';
  end if;
  update app.webhook_inbox i set status = 'pending', error = null, processed_at = null
  where i.status = 'unroutable' and strpos('; ' || i.error || ';', v_named) > 0;
  return null;
end
$$;

create trigger on_meta_pages_connected after insert on public.meta_pages
  for each row execute function app._reroute_parked_deliveries();

-- A number is connected when a WhatsApp integration is created with it, or its settings change to it (health
-- checks and other updates leave the number alone and do not fire).
create trigger on_integrations_number_connected after insert on public.integrations
  for each row when (new.kind = 'whatsapp' and new.settings ->> 'phone_number_id' is not null)
  execute function app._reroute_parked_deliveries();
create trigger on_integrations_number_changed after update of settings on public.integrations
  for each row when (new.kind = 'whatsapp' and new.settings ->> 'phone_number_id' is not null
    and new.settings ->> 'phone_number_id' is distinct from old.settings ->> 'phone_number_id')
  execute function app._reroute_parked_deliveries();
