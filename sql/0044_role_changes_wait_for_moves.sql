-- A role change waits for hierarchy changes of its client before it locks closure rows.
--
-- The re-check of a member's notifications after a role change (app._forget_notifications_out_of_sight,
-- sql/0040) locks the member's closure rows as a manager, one by one. A move deletes closure rows of the
-- managers above the moved member, also one by one, under the client's hierarchy lock. So a role change of a
-- manager could lock some of their rows, wait for a row an uncommitted move had deleted, and the move's next
-- step could wait for a row the role change held: a deadlock, which PostgreSQL resolves by failing one of the
-- two requests. Now the role change first takes the client's hierarchy lock (app._lock_hierarchy, the one moves
-- and new members take) and locks closure rows only once no move is in flight; the move finishes first or
-- waits for it. Lead writers hold that lock in shared mode and never wait for the role change's rows, so they
-- only delay it.
--
-- security definer: whoever changes a role need not have rights on its members' notifications.
create or replace function app._forget_notifications_out_of_sight() returns trigger
language plpgsql
security definer
set search_path = ''
as $$
declare
  v_members uuid[] := array(
    select m.id from public.memberships m
    where case tg_table_name when 'memberships' then m.id = new.id else m.role_id = new.id end
  );
begin
  perform app._lock_hierarchy(new.client_id);
  -- The members' closure rows as managers, which a dispatch in flight holds for them: this waits for it (and
  -- the delete below, a statement of its own, sees what it wrote), and a dispatch that comes now skips them.
  perform 1 from app.membership_closure c where c.ancestor_id = any (v_members) for update;
  delete from public.notifications n
  using public.memberships m join public.roles r on r.id = m.role_id
  where m.id = any (v_members)
    and n.user_id = m.user_id and n.client_id = m.client_id and n.lead_id is not null
    and not ('leads.read' = any (r.permissions) and (
      r.scope = 'client'
      or (r.scope = 'team' and exists (
        select 1 from app.lead_viewers v where v.lead_id = n.lead_id and v.viewer_id = m.id
      ))
      or (r.scope = 'own' and exists (
        select 1 from public.leads l where l.id = n.lead_id and l.owner_membership_id = m.id
      ))
    ));
  return null;
end
$$;
