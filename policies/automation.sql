-- What the automation layer shows staff: messages exchanged with a lead (visible with the lead), each
-- client's automation switches and webhook endpoints (with their delivery log), and notifications (visible
-- to their recipient only). The platform writes messages, deliveries and notifications; staff only mark their
-- notifications read.

alter table public.lead_messages enable row level security;
alter table public.automations enable row level security;
alter table public.webhook_endpoints enable row level security;
alter table public.webhook_deliveries enable row level security;
alter table public.notifications enable row level security;
grant select on public.lead_messages to authenticated;
grant select, insert, update, delete on public.automations to authenticated;
grant select, insert, update, delete on public.webhook_endpoints to authenticated;
grant select on public.webhook_deliveries to authenticated;
grant select on public.notifications to authenticated;
grant update (read_at) on public.notifications to authenticated;

drop policy if exists "Lead messages are viewable with their lead" on public.lead_messages;
create policy "Lead messages are viewable with their lead" on public.lead_messages
  for select to authenticated
  -- Subject to the leads policies: a message is visible exactly when its lead is.
  using (exists (select 1 from public.leads l where l.id = lead_id));

drop policy if exists "Automations are viewable by members of the client" on public.automations;
create policy "Automations are viewable by members of the client" on public.automations
  for select to authenticated
  using (client_id = any ((select app.my_client_ids())::text[]) or (select app.is_platform_admin()));
drop policy if exists "Automations are created with automations.manage" on public.automations;
create policy "Automations are created with automations.manage" on public.automations
  for insert to authenticated with check (app.has_permission(client_id, 'automations.manage'));
drop policy if exists "Automations are updated with automations.manage" on public.automations;
create policy "Automations are updated with automations.manage" on public.automations
  for update to authenticated
  using (app.has_permission(client_id, 'automations.manage'))
  with check (app.has_permission(client_id, 'automations.manage'));
drop policy if exists "Automations are deleted with automations.manage" on public.automations;
create policy "Automations are deleted with automations.manage" on public.automations
  for delete to authenticated using (app.has_permission(client_id, 'automations.manage'));

drop policy if exists "Webhook endpoints are viewable with webhooks.manage" on public.webhook_endpoints;
create policy "Webhook endpoints are viewable with webhooks.manage" on public.webhook_endpoints
  for select to authenticated
  using (client_id = any ((select app.clients_with_permission('webhooks.manage'))::text[])
    or (select app.is_platform_admin()));
drop policy if exists "Webhook endpoints are created with webhooks.manage" on public.webhook_endpoints;
create policy "Webhook endpoints are created with webhooks.manage" on public.webhook_endpoints
  for insert to authenticated with check (app.has_permission(client_id, 'webhooks.manage'));
drop policy if exists "Webhook endpoints are updated with webhooks.manage" on public.webhook_endpoints;
create policy "Webhook endpoints are updated with webhooks.manage" on public.webhook_endpoints
  for update to authenticated
  using (app.has_permission(client_id, 'webhooks.manage'))
  with check (app.has_permission(client_id, 'webhooks.manage'));
drop policy if exists "Webhook endpoints are deleted with webhooks.manage" on public.webhook_endpoints;
create policy "Webhook endpoints are deleted with webhooks.manage" on public.webhook_endpoints
  for delete to authenticated using (app.has_permission(client_id, 'webhooks.manage'));

drop policy if exists "Webhook deliveries are viewable with webhooks.manage" on public.webhook_deliveries;
create policy "Webhook deliveries are viewable with webhooks.manage" on public.webhook_deliveries
  for select to authenticated
  using (client_id = any ((select app.clients_with_permission('webhooks.manage'))::text[])
    or (select app.is_platform_admin()));

drop policy if exists "Notifications are viewable by their recipient" on public.notifications;
create policy "Notifications are viewable by their recipient" on public.notifications
  for select to authenticated using (user_id = (select auth.uid()));
drop policy if exists "Notifications are marked read by their recipient" on public.notifications;
create policy "Notifications are marked read by their recipient" on public.notifications
  for update to authenticated
  using (user_id = (select auth.uid())) with check (user_id = (select auth.uid()));
