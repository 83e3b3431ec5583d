-- Demo data for the local stack (`deno task dev`) and `supabase db reset`. Idempotent.
-- Every demo account's password is "demo-password". Run only against development databases.

insert into public.users (id, email, full_name, is_platform_admin) values
  ('00000000-0000-4000-8000-000000000001', 'admin@demo.test', 'Ada Admin', true),
  ('00000000-0000-4000-8000-000000000002', 'owner@acme.test', 'Olive Owner', false),
  ('00000000-0000-4000-8000-000000000003', 'manager@acme.test', 'Max Manager', false),
  ('00000000-0000-4000-8000-000000000004', 'agent@acme.test', 'Alex Agent', false),
  ('00000000-0000-4000-8000-000000000005', 'owner@globex.test', 'Gina Globex', false)
on conflict (email) do nothing;

insert into app.credentials (user_id, password_hash)
select id, extensions.crypt('demo-password', extensions.gen_salt('bf', 10))
from public.users where email like '%.test'
on conflict (user_id) do nothing;

insert into public.clients (id, name, created_by) values
  ('acme-realty', 'Acme Realty', '00000000-0000-4000-8000-000000000001'),
  ('globex-insurance', 'Globex Insurance', '00000000-0000-4000-8000-000000000001')
on conflict (id) do nothing;

-- Olive owns Acme; Max manages Alex there and also works as an agent for Globex (two clients, one account).
insert into public.memberships (id, client_id, user_id, role_id, reports_to)
select v.id::uuid, v.client_id, v.user_id::uuid, r.id, v.reports_to::uuid
from (values
  ('00000000-0000-4000-9000-000000000002', 'acme-realty', '00000000-0000-4000-8000-000000000002', 'owner', null),
  ('00000000-0000-4000-9000-000000000003', 'acme-realty', '00000000-0000-4000-8000-000000000003', 'manager',
    '00000000-0000-4000-9000-000000000002'),
  ('00000000-0000-4000-9000-000000000004', 'acme-realty', '00000000-0000-4000-8000-000000000004', 'agent',
    '00000000-0000-4000-9000-000000000003'),
  ('00000000-0000-4000-9000-000000000005', 'globex-insurance', '00000000-0000-4000-8000-000000000005', 'owner', null),
  ('00000000-0000-4000-9000-000000000006', 'globex-insurance', '00000000-0000-4000-8000-000000000003', 'agent',
    '00000000-0000-4000-9000-000000000005')
) as v (id, client_id, user_id, role_key, reports_to)
join public.roles r on r.client_id = v.client_id and r.key = v.role_key
on conflict (client_id, user_id) do nothing;
