-- What happens to a lead as it is written: deduplication against the client's existing leads, round-robin
-- assignment by rules, the per-viewer visibility index, and timeline entries. Also the guards of the tables
-- these depend on: assignment rules (valid roles and members), member availability, the pipeline's `new`.
--
-- security definer functions in this file and why:
--   trigger functions below            read memberships/roles/rules and write private tables whatever the caller
--   app._next_assignee()               reads rules, memberships and accounts regardless of their policies
--   app._claim_contact()               reads and writes the private contact index
--   public.set_own_availability()      lets a member without members.manage toggle their own availability only
--   app.visible_lead_page()            reads the private visibility index for the caller's own membership
--   app._log_activity()                writes the timeline, which users cannot write directly (triggers only)

alter table public.memberships add column available boolean not null default true;
comment on column public.memberships.available is 'False while a member takes no new leads (leave, full queue).';

-- Availability is the member's own switch (public.set_own_availability) or a manager's (members.manage under the
-- memberships policies); like every other membership change, a manager cannot change someone ranked above them.
create function app._guard_availability_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if app._is_api_user() and old.user_id is distinct from auth.uid() and not app.is_platform_admin() and (
    app.my_role_rank(old.client_id) is null
    -- A role the caller cannot read counts as ranked above everyone.
    or coalesce((select r.rank from public.roles r where r.id = old.role_id), 0) < app.my_role_rank(old.client_id)
  ) then
    raise exception 'Cannot change a member whose role is above your own' using errcode = 'insufficient_privilege';
  end if;
  return new;
end
$$;

create trigger on_memberships_availability before update of available on public.memberships
  for each row when (new.available is distinct from old.available)
  execute function app._guard_availability_change();

-- Sets the caller's own availability in a client, without members.manage. True when the membership is the
-- caller's (an enabled account in an active client) and was updated; false for anyone else's membership,
-- which the caller then changes, if allowed, with a plain update under the memberships policies.
create function public.set_own_availability(p_client_id text, p_membership_id uuid, p_available boolean)
returns boolean
language plpgsql
security definer
set search_path = ''
as $$
begin
  update public.memberships m set available = p_available
  where m.id = p_membership_id and m.client_id = p_client_id
    and m.id in (select my.membership_id from app._my_memberships() my);
  return found;
end
$$;
grant execute on function public.set_own_availability(text, uuid, boolean) to authenticated;

-- The pipeline's `new` is every lead's default status, so a client always keeps it (removing the client
-- itself removes it too).
create function app._guard_status_delete() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if old.key = 'new' and exists (select 1 from public.clients c where c.id = old.client_id) then
    raise exception 'The status "new" is the default of every lead and cannot be removed'
      using errcode = 'check_violation';
  end if;
  return old;
end
$$;

create trigger on_lead_statuses_delete before delete on public.lead_statuses
  for each row execute function app._guard_status_delete();

create table public.assignment_rules (
  id uuid primary key default gen_random_uuid(),
  client_id text not null references public.clients (id) on delete cascade,
  -- Null: leads of any product without a more specific rule.
  product_id uuid,
  -- Eligible members: those holding one of these roles, or listed explicitly.
  role_keys text[] not null default '{}',
  membership_ids uuid[] not null default '{}',
  enabled boolean not null default true,
  -- Round-robin position: a sequence of the rule's own (named after its id, set by the insert trigger), so
  -- concurrent ingestion never waits on a row lock for its turn.
  turn_sequence text not null,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  constraint assignment_rules_product_fkey foreign key (client_id, product_id)
    references public.client_products (client_id, product_id) on delete cascade
);
comment on table public.assignment_rules is
  'How new leads are assigned: round robin among eligible members, per client and optionally per product.';
create unique index assignment_rules_client_id_product_id_key
  on public.assignment_rules (client_id, coalesce(product_id, '00000000-0000-0000-0000-000000000000'));

create trigger on_assignment_rules_touch before update on public.assignment_rules
  for each row execute function app._touch_updated_at();

-- Checks a rule whatever the path (API, supabase-js): roles and members it adds must exist in its client;
-- its id, client and sequence never change. A new rule gets its turn sequence here. Only added entries are
-- checked, so a role deleted later does not block editing the rule's other fields.
create function app._check_assignment_rule() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_missing text;
begin
  if tg_op = 'UPDATE' then
    if new.id <> old.id or new.client_id <> old.client_id or new.turn_sequence <> old.turn_sequence then
      raise exception 'An assignment rule''s id, client and turn sequence cannot change'
        using errcode = 'check_violation';
    end if;
  else
    new.turn_sequence := 'app.assignment_turn_' || replace(new.id::text, '-', '');
    execute format('create sequence if not exists app.%I', 'assignment_turn_' || replace(new.id::text, '-', ''));
  end if;
  new.role_keys := array(select distinct k from unnest(new.role_keys) k order by k);
  new.membership_ids := array(select distinct i from unnest(new.membership_ids) i order by i);
  select string_agg(format('"%s"', k), ', ') into v_missing
  from unnest(new.role_keys) k
  where (tg_op = 'INSERT' or not k = any (old.role_keys))
    and not exists (select 1 from public.roles r where r.client_id = new.client_id and r.key = k);
  if v_missing is not null then
    raise exception 'Role % does not exist in this client', v_missing using errcode = 'foreign_key_violation';
  end if;
  select string_agg(format('"%s"', i), ', ') into v_missing
  from unnest(new.membership_ids) i
  where (tg_op = 'INSERT' or not i = any (old.membership_ids))
    and not exists (select 1 from public.memberships m where m.client_id = new.client_id and m.id = i);
  if v_missing is not null then
    raise exception 'Member % is not a member of this client', v_missing using errcode = 'foreign_key_violation';
  end if;
  return new;
end
$$;

create trigger on_assignment_rules_change before insert or update on public.assignment_rules
  for each row execute function app._check_assignment_rule();

create function app._drop_turn_sequence() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  execute format('drop sequence if exists app.%I', 'assignment_turn_' || replace(old.id::text, '-', ''));
  return null;
end
$$;

create trigger on_assignment_rules_delete after delete on public.assignment_rules
  for each row execute function app._drop_turn_sequence();

-- Every client gets a default rule: round robin among its agents.
create function app._create_default_rule() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.assignment_rules (client_id, role_keys)
  select new.id, array(select r.key from public.roles r where r.client_id = new.id and r.key = 'agent');
  return new;
end
$$;

-- Named to fire after on_clients_insert (name order), which creates the roles the rule names.
create trigger on_clients_insert_rule after insert on public.clients
  for each row execute function app._create_default_rule();

insert into public.assignment_rules (client_id, role_keys)
select c.id, '{agent}' from public.clients c
where exists (select 1 from public.roles r where r.client_id = c.id and r.key = 'agent')
on conflict do nothing;

-- The next member in turn for a new lead, or null when nobody is eligible. The enabled rule for the lead's
-- product wins over the client's default rule; a product rule whose pool is empty leaves the lead unassigned
-- (it does not spill over to the default pool). Eligible: holds a role of the rule or is listed in it, is
-- available, and the account is enabled. Ordered by membership id so every concurrent caller sees the same
-- circle; nextval hands out distinct, consecutive turns without locking, so N leads over k members give each
-- N/k. A statement that fails after taking a turn leaves a gap (a member is skipped once).
create function app._next_assignee(p_client_id text, p_product_id uuid) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_rule public.assignment_rules;
  v_pool uuid[];
begin
  select * into v_rule from public.assignment_rules r
  where r.client_id = p_client_id and r.enabled
    and (r.product_id = p_product_id or r.product_id is null)
  order by r.product_id nulls last
  limit 1;
  if not found then
    return null;
  end if;
  select array_agg(m.id order by m.id) into v_pool
  from public.memberships m
  join public.users u on u.id = m.user_id and u.disabled_at is null
  join public.roles ro on ro.id = m.role_id
  where m.client_id = p_client_id and m.available
    and (ro.key = any (v_rule.role_keys) or m.id = any (v_rule.membership_ids));
  if v_pool is null then
    return null;
  end if;
  return v_pool[1 + (nextval(v_rule.turn_sequence::regclass) - 1) % array_length(v_pool, 1)];
end
$$;

-- Who a person is, per client: each normalised email and phone seen, with the original lead of the person.
-- Its primary key is what makes deduplication safe under concurrency: two transactions claiming the same
-- contact meet on one index entry, the second waiting for the first to commit, and no lock-table slot is
-- held per lead (transaction-level advisory locks per contact ran out of shared memory on batches of a few
-- thousand leads).
create table app.lead_contacts (
  client_id text not null references public.clients (id) on delete cascade,
  contact text not null,
  lead_id uuid not null,
  constraint lead_contacts_pkey primary key (client_id, contact)
);
comment on table app.lead_contacts is
  'Normalised contacts (email:..., phone:...) per client, each with the original lead of that person.';
alter table app.lead_contacts enable row level security;

-- Claims a contact for a new lead. Returns null when the contact is new (now claimed by p_lead_id), else the
-- original lead of the person who has it. A claim whose lead is gone (deleted, or an insert that ON CONFLICT
-- DO NOTHING discarded after its triggers ran) is taken over.
create function app._claim_contact(p_client_id text, p_contact text, p_lead_id uuid) returns uuid
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_claimed uuid;
  v_original uuid;
begin
  -- Each pass either settles or follows a claim another transaction just changed; a handful always suffices.
  for attempt in 1..20 loop
    insert into app.lead_contacts (client_id, contact, lead_id) values (p_client_id, p_contact, p_lead_id)
    on conflict do nothing;
    if found then
      return null;
    end if;
    -- A new statement, so a new snapshot: it sees the claim the insert above waited for.
    select c.lead_id, coalesce(l.duplicate_of, l.id) into v_claimed, v_original
    from app.lead_contacts c left join public.leads l on l.id = c.lead_id
    where c.client_id = p_client_id and c.contact = p_contact;
    if v_original is not null then
      return v_original;
    end if;
    if v_claimed is not null then
      update app.lead_contacts c set lead_id = p_lead_id
      where c.client_id = p_client_id and c.contact = p_contact and c.lead_id = v_claimed;
      if found then
        return null;
      end if;
    end if;
  end loop;
  raise exception 'Contact % of client % keeps changing; retry', p_contact, p_client_id
    using errcode = 'serialization_failure';
end
$$;

-- Before a lead is stored: its email is normalised (trimmed, lower case); a lead with the phone or email of an
-- earlier lead of the client becomes that person's duplicate (duplicate_of, always computed here) and goes to
-- the same owner unless an owner was chosen; it never takes a turn. Otherwise it takes the next turn of the
-- assignment rules. Named to fire after on_leads_insert_guard (name order), which checks an owner chosen by
-- the caller, not one chosen here.
create function app._route_new_lead() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_by_email uuid;
  v_by_phone uuid;
  v_original public.leads;
begin
  new.email := nullif(lower(btrim(new.email)), '');
  new.phone := nullif(btrim(new.phone), '');
  new.duplicate_of := null;
  if new.email is not null then
    v_by_email := app._claim_contact(new.client_id, 'email:' || new.email, new.id);
  end if;
  if new.phone is not null then
    v_by_phone := app._claim_contact(new.client_id, 'phone:' || new.phone, new.id);
  end if;
  if v_by_email is not null or v_by_phone is not null then
    select * into v_original from public.leads l
    where l.id in (v_by_email, v_by_phone)
    order by l.created_at, l.id
    limit 1;
  end if;
  if v_original.id is not null then
    -- A contact this lead claimed first belongs to the same person: point it at the original.
    if new.email is not null and v_by_email is null then
      update app.lead_contacts c set lead_id = v_original.id
      where c.client_id = new.client_id and c.contact = 'email:' || new.email and c.lead_id = new.id;
    end if;
    if new.phone is not null and v_by_phone is null then
      update app.lead_contacts c set lead_id = v_original.id
      where c.client_id = new.client_id and c.contact = 'phone:' || new.phone and c.lead_id = new.id;
    end if;
    new.duplicate_of := v_original.id;
    new.owner_membership_id := coalesce(new.owner_membership_id, v_original.owner_membership_id);
  elsif new.owner_membership_id is null then
    new.owner_membership_id := app._next_assignee(new.client_id, new.product_id);
  end if;
  return new;
end
$$;

create trigger on_leads_insert_route before insert on public.leads
  for each row execute function app._route_new_lead();

-- A changed email or phone of a lead is remembered for the person too (the old one still identifies them).
create function app._claim_changed_contacts() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into app.lead_contacts (client_id, contact, lead_id)
  select new.client_id, c.contact, coalesce(new.duplicate_of, new.id)
  from (values ('email:' || new.email), ('phone:' || new.phone)) c (contact)
  where c.contact is not null
  on conflict do nothing;
  return null;
end
$$;

create trigger on_leads_contacts_change after update of email, phone on public.leads
  for each row when (new.email is distinct from old.email or new.phone is distinct from old.phone)
  execute function app._claim_changed_contacts();

insert into app.lead_contacts (client_id, contact, lead_id)
select l.client_id, c.contact, coalesce(l.duplicate_of, l.id)
from public.leads l
cross join lateral (values ('email:' || l.email), ('phone:' || l.phone)) c (contact)
where c.contact is not null
order by l.created_at, l.id
on conflict do nothing;

-- Per-viewer visibility index: one row per lead for its owner and each of the owner's managers, so "the 50
-- newest leads I can see" is one ordered index range however large the client, for any place in the
-- hierarchy. Kept exact by the triggers below (new leads, reassignment, hierarchy moves, removals).
--
-- Writers that read the hierarchy (new and reassigned leads) hold the client's hierarchy lock in shared mode
-- and read the closure only after taking it; hierarchy changes hold it exclusively (app._lock_hierarchy). So
-- a lead written while its owner's team moves is indexed either before the move (and then moved with it) or
-- after it (against the new closure), never against a closure that is about to change.
create table app.lead_viewers (
  viewer_id uuid not null,
  created_at timestamptz not null,
  lead_id uuid not null,
  constraint lead_viewers_pkey primary key (viewer_id, created_at, lead_id)
);
comment on table app.lead_viewers is
  'Leads visible through the hierarchy, per member (owner and every manager above), in creation order.';
create index lead_viewers_lead_id_idx on app.lead_viewers (lead_id);

-- Takes the hierarchy lock of each given client in shared mode (lead writers do not wait for each other), in
-- client order.
create function app._share_hierarchy(p_client_ids text[]) returns void
language plpgsql
set search_path = ''
as $$
begin
  perform pg_advisory_xact_lock_shared(hashtextextended('hierarchy:' || c, 0))
  from (select distinct unnest(p_client_ids) as c order by 1) clients;
end
$$;

create function app._index_new_leads() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform app._share_hierarchy(array(select distinct l.client_id from inserted l where l.owner_membership_id is not null));
  insert into app.lead_viewers (viewer_id, created_at, lead_id)
  select c.ancestor_id, l.created_at, l.id
  from inserted l join app.membership_closure c on c.descendant_id = l.owner_membership_id;
  insert into public.lead_activities (client_id, lead_id, kind, data)
  select l.client_id, l.duplicate_of, 'duplicate_received', jsonb_build_object('lead_id', l.id, 'source', l.source)
  from inserted l where l.duplicate_of is not null;
  return null;
end
$$;

create trigger on_leads_inserted after insert on public.leads
  referencing new table as inserted
  for each statement execute function app._index_new_leads();

create function app._reindex_reassigned_leads() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_clients text[];
begin
  select array_agg(distinct n.client_id) into v_clients
  from changed n join previous o on o.id = n.id
  where n.owner_membership_id is distinct from o.owner_membership_id or n.created_at <> o.created_at;
  if v_clients is null then
    return null;
  end if;
  perform app._share_hierarchy(v_clients);
  delete from app.lead_viewers v
  using changed n join previous o on o.id = n.id
  where v.lead_id = n.id
    and (n.owner_membership_id is distinct from o.owner_membership_id or n.created_at <> o.created_at);
  insert into app.lead_viewers (viewer_id, created_at, lead_id)
  select c.ancestor_id, n.created_at, n.id
  from changed n join previous o on o.id = n.id
  join app.membership_closure c on c.descendant_id = n.owner_membership_id
  where n.owner_membership_id is distinct from o.owner_membership_id or n.created_at <> o.created_at;
  return null;
end
$$;

create trigger on_leads_reassigned after update on public.leads
  referencing old table as previous new table as changed
  for each statement execute function app._reindex_reassigned_leads();

create function app._unindex_deleted_leads() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from app.lead_viewers v using removed l where v.lead_id = l.id;
  return null;
end
$$;

create trigger on_leads_deleted after delete on public.leads
  referencing old table as removed
  for each statement execute function app._unindex_deleted_leads();

-- After a member moves in the hierarchy (the closure is already updated, under the exclusive hierarchy lock),
-- the leads owned by their subtree lose the managers they no longer have and gain the new ones; managers above
-- both the old and the new place keep their rows. The old managers are those of the old manager, whose own
-- place did not change.
create function app._reindex_moved_subtree() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from app.lead_viewers v
  using app.membership_closure s, public.leads l, app.membership_closure lost
  where s.ancestor_id = new.id and l.owner_membership_id = s.descendant_id
    and lost.descendant_id = old.reports_to
    and not exists (
      select 1 from app.membership_closure kept
      where kept.descendant_id = new.reports_to and kept.ancestor_id = lost.ancestor_id
    )
    and v.viewer_id = lost.ancestor_id and v.created_at = l.created_at and v.lead_id = l.id;
  insert into app.lead_viewers (viewer_id, created_at, lead_id)
  select gained.ancestor_id, l.created_at, l.id
  from app.membership_closure s
  join public.leads l on l.owner_membership_id = s.descendant_id
  join app.membership_closure gained on gained.descendant_id = new.reports_to
  where s.ancestor_id = new.id
    and not exists (
      select 1 from app.membership_closure kept
      where kept.descendant_id = old.reports_to and kept.ancestor_id = gained.ancestor_id
    )
  on conflict do nothing;
  return null;
end
$$;

-- Named to fire after on_memberships_moved (triggers fire in name order), once the closure is updated.
create trigger on_memberships_moved_reindex after update of reports_to on public.memberships
  for each row when (new.reports_to is distinct from old.reports_to)
  execute function app._reindex_moved_subtree();

-- A removed member's own leads become unassigned (the leads foreign key) and their reports moved up (the
-- memberships trigger); what is left is the member's own rows as a viewer.
create function app._unindex_removed_member() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from app.lead_viewers where viewer_id = old.id;
  return old;
end
$$;

create trigger on_memberships_delete_viewers after delete on public.memberships
  for each row execute function app._unindex_removed_member();

-- The ids of one page of the newest leads a team- or own-scoped member sees in a client, read from the
-- visibility index: exactly the ids, in the same order, that `select id from public.leads where client_id = ..
-- order by created_at desc, id desc limit ..` returns under row-level security. Empty without leads.read;
-- null for callers with the client scope (they read the client's own index) or without a membership.
-- Callers still select the leads under row-level security.
create function app.visible_lead_page(
  p_client_id text,
  p_limit int,
  p_before_created_at timestamptz default null,
  p_before_id uuid default null
) returns uuid[]
language sql stable
security definer
set search_path = ''
as $$
  select case
    when not ('leads.read' = any (m.permissions)) then '{}'::uuid[]
    when m.scope = 'team' then array(
      select v.lead_id from app.lead_viewers v
      where v.viewer_id = m.membership_id
        and (p_before_created_at is null or (v.created_at, v.lead_id) < (p_before_created_at, p_before_id))
      order by v.created_at desc, v.lead_id desc
      limit p_limit)
    when m.scope = 'own' then array(
      select l.id from public.leads l
      where l.owner_membership_id = m.membership_id
        and (p_before_created_at is null or (l.created_at, l.id) < (p_before_created_at, p_before_id))
      order by l.created_at desc, l.id desc
      limit p_limit)
  end
  from app._my_memberships() m
  where m.client_id = p_client_id and not app.is_platform_admin();
$$;
grant execute on function app.visible_lead_page(text, int, timestamptz, uuid) to authenticated;

-- Appends a timeline entry; the timeline is written only by the platform. API roles reach it only from the
-- triggers below (which run with their rights so they can check them), never by calling it directly.
create function app._log_activity(p_client_id text, p_lead_id uuid, p_kind text, p_data jsonb) returns void
language plpgsql
security definer
set search_path = ''
as $$
begin
  if pg_trigger_depth() = 0 and coalesce(auth.role(), '') in ('authenticated', 'anon') then
    raise exception 'The timeline is written by the platform' using errcode = 'insufficient_privilege';
  end if;
  insert into public.lead_activities (client_id, lead_id, actor_id, kind, data)
  values (p_client_id, p_lead_id, auth.uid(), p_kind, p_data);
end
$$;
grant execute on function app._log_activity(text, uuid, text, jsonb) to authenticated;

-- Timeline entries for changes staff make, and the guard on reassignment: moving a lead to another owner
-- needs leads.assign (the policies already keep the new owner inside the caller's visible part).
create function app._record_lead_change() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.owner_membership_id is distinct from old.owner_membership_id then
    if app._is_api_user() and not app.has_permission(new.client_id, 'leads.assign') then
      raise exception 'Missing permission leads.assign' using errcode = 'insufficient_privilege';
    end if;
    perform app._log_activity(new.client_id, new.id, 'reassigned',
      jsonb_build_object('from', old.owner_membership_id, 'to', new.owner_membership_id));
  end if;
  if new.status <> old.status then
    perform app._log_activity(new.client_id, new.id, 'status_changed',
      jsonb_build_object('from', old.status, 'to', new.status));
  end if;
  return new;
end
$$;

create trigger on_leads_change before update on public.leads
  for each row execute function app._record_lead_change();

create function app._record_note() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.lead_activities (client_id, lead_id, actor_id, kind, data)
  values (new.client_id, new.lead_id, new.author_id, 'note_added', jsonb_build_object('note_id', new.id));
  return null;
end
$$;

create trigger on_lead_notes_insert after insert on public.lead_notes
  for each row execute function app._record_note();
