-- The reporting hierarchy as a closure table: one row per (ancestor, descendant) pair of memberships,
-- depth 0 for a member itself. Triggers keep it exact on insert, move (reports_to change) and removal, so
-- "everyone below me" is one indexed lookup instead of a recursive query in every policy.
-- Moves in one client are serialised by a transaction-level advisory lock, so two concurrent moves can
-- never build a cycle between them.
--
-- security definer functions in this file and why:
--   trigger functions below            write the private closure table whatever the caller's role

create table app.membership_closure (
  ancestor_id uuid not null references public.memberships (id) on delete cascade,
  descendant_id uuid not null references public.memberships (id) on delete cascade,
  depth int not null,
  constraint membership_closure_pkey primary key (ancestor_id, descendant_id),
  constraint membership_closure_depth_check check (depth >= 0)
);
comment on table app.membership_closure is
  'Transitive reports_to pairs (ancestor manages descendant at the given depth); maintained by triggers.';
create index membership_closure_descendant_id_idx on app.membership_closure (descendant_id, depth);

-- Serialises hierarchy changes of one client for the rest of the transaction.
create function app._lock_hierarchy(p_client_id text) returns void
language sql
set search_path = ''
as $$
  select pg_advisory_xact_lock(hashtextextended('hierarchy:' || p_client_id, 0));
$$;

-- Refuses a reports_to that points into the member's own subtree (which would make a cycle).
create function app._check_hierarchy_move() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  if new.reports_to is not distinct from old.reports_to then
    return new;
  end if;
  perform app._lock_hierarchy(new.client_id);
  if new.reports_to is not null and exists (
    select 1 from app.membership_closure c where c.ancestor_id = new.id and c.descendant_id = new.reports_to
  ) then
    raise exception 'A member cannot report to someone in their own team' using errcode = 'check_violation';
  end if;
  return new;
end
$$;

-- Adds the closure rows of a new member: itself, and every ancestor of its manager.
create function app._add_to_hierarchy() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  perform app._lock_hierarchy(new.client_id);
  insert into app.membership_closure (ancestor_id, descendant_id, depth) values (new.id, new.id, 0);
  insert into app.membership_closure (ancestor_id, descendant_id, depth)
  select c.ancestor_id, new.id, c.depth + 1 from app.membership_closure c where c.descendant_id = new.reports_to;
  return null;
end
$$;

-- Moves a member's whole subtree: detaches it from its old ancestors and attaches it below the new manager.
create function app._move_in_hierarchy() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  delete from app.membership_closure c
  using app.membership_closure subtree, app.membership_closure above
  where subtree.ancestor_id = new.id
    and above.descendant_id = new.id and above.ancestor_id <> new.id
    and c.ancestor_id = above.ancestor_id and c.descendant_id = subtree.descendant_id;
  insert into app.membership_closure (ancestor_id, descendant_id, depth)
  select above.ancestor_id, subtree.descendant_id, above.depth + subtree.depth + 1
  from app.membership_closure above, app.membership_closure subtree
  where above.descendant_id = new.reports_to and subtree.ancestor_id = new.id;
  return null;
end
$$;

create trigger on_memberships_move before update of reports_to on public.memberships
  for each row execute function app._check_hierarchy_move();
create trigger on_memberships_insert after insert on public.memberships
  for each row execute function app._add_to_hierarchy();
create trigger on_memberships_moved after update of reports_to on public.memberships
  for each row when (new.reports_to is distinct from old.reports_to)
  execute function app._move_in_hierarchy();
