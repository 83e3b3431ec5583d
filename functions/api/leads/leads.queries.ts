/** SQL of the lead service. Every function runs in the caller's RLS transaction. */
import type postgres from "postgres";
import type { Tx } from "../../_shared/db.ts";
import type { NormalizedLead } from "../../_shared/leads.ts";

export type LeadSource = "website" | "api" | "manual" | "meta" | "instagram" | "google_sheets" | "whatsapp";

export interface LeadRow {
  id: string;
  client_id: string;
  source: LeadSource;
  external_ref: string | null;
  full_name: string | null;
  email: string | null;
  phone: string | null;
  product_id: string | null;
  status: string;
  owner_membership_id: string | null;
  duplicate_of: string | null;
  utm_source: string | null;
  utm_medium: string | null;
  utm_campaign: string | null;
  utm_term: string | null;
  utm_content: string | null;
  consent: boolean;
  custom: Record<string, unknown>;
  created_at: string;
  updated_at: string;
}

export interface LeadDetailRow extends LeadRow {
  raw_payload: Record<string, unknown>;
}

/** Lead columns in response order; the CSV export uses the same order. */
export const LEAD_COLUMNS = [
  "id",
  "client_id",
  "source",
  "external_ref",
  "full_name",
  "email",
  "phone",
  "product_id",
  "status",
  "owner_membership_id",
  "duplicate_of",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "utm_term",
  "utm_content",
  "consent",
  "custom",
  "created_at",
  "updated_at",
] as const satisfies readonly (keyof LeadRow)[];

const SELECT_LEAD = LEAD_COLUMNS.map((column) => `l.${column}`).join(", ");

/** List filters after validation; a bare-date created_to is already turned into the next day's midnight. */
export interface LeadFilters {
  status?: string;
  owner?: string;
  product_id?: string;
  source?: string;
  created_from?: string;
  created_to?: string;
  q?: string;
  duplicates: "include" | "exclude" | "only";
}

/** True when any filter narrows the list (the visibility index only serves the unfiltered list). */
export function hasFilters(filters: LeadFilters): boolean {
  return filters.status !== undefined || filters.owner !== undefined || filters.product_id !== undefined ||
    filters.source !== undefined || filters.created_from !== undefined ||
    filters.created_to !== undefined || filters.q !== undefined || filters.duplicates !== "include";
}

function filterConditions(tx: Tx, filters: LeadFilters): postgres.PendingQuery<postgres.Row[]>[] {
  const conditions = [];
  if (filters.status !== undefined) conditions.push(tx`l.status = ${filters.status}`);
  if (filters.owner === "unassigned") conditions.push(tx`l.owner_membership_id is null`);
  else if (filters.owner !== undefined) conditions.push(tx`l.owner_membership_id = ${filters.owner}::uuid`);
  if (filters.product_id !== undefined) conditions.push(tx`l.product_id = ${filters.product_id}::uuid`);
  if (filters.source !== undefined) conditions.push(tx`l.source = ${filters.source}`);
  if (filters.created_from !== undefined) {
    conditions.push(tx`l.created_at >= ${filters.created_from}::timestamptz`);
  }
  if (filters.created_to !== undefined) {
    conditions.push(tx`l.created_at < ${filters.created_to}::timestamptz`);
  }
  if (filters.q !== undefined) {
    conditions.push(tx`l.search @@ websearch_to_tsquery('simple', ${filters.q})`);
  }
  if (filters.duplicates === "exclude") conditions.push(tx`l.duplicate_of is null`);
  if (filters.duplicates === "only") conditions.push(tx`l.duplicate_of is not null`);
  return conditions;
}

/**
 * One page of the leads the caller sees, newest first, and whether more follow.
 *
 * Unfiltered, team- and own-scoped callers read the page's ids from the per-viewer visibility index
 * (app.visible_lead_page), one ordered index range however large the client; the leads are then selected
 * under row-level security as always. Client-scoped callers, platform administrators and filtered lists
 * use the client's (client_id, created_at, id) index, with RLS deciding visibility. Unfiltered, both
 * paths are one statement, so a page costs one round trip whoever asks.
 */
export async function listLeads(
  tx: Tx,
  clientId: string,
  filters: LeadFilters,
  page: { limit: number; before?: [string, string] },
): Promise<{ rows: LeadRow[]; more: boolean }> {
  const before = page.before;
  if (!Number.isSafeInteger(page.limit) || page.limit < 1) {
    throw new RangeError(`Invalid page limit "${page.limit}"`);
  }
  // The limit is written into the statement, not bound: with a bound limit the planner costs the generic
  // plan for an unknown row count, keeps choosing custom plans and so plans the statement on every request
  // (measured: 0.3-0.5 ms, as much as the query). Few distinct limits are used, each a prepared statement.
  const limit = tx.unsafe(String(page.limit + 1));
  const conditions = [
    tx`l.client_id = ${clientId}`,
    ...(before ? [tx`(l.created_at, l.id) < (${before[0]}::timestamptz, ${before[1]}::uuid)`] : []),
    ...filterConditions(tx, filters),
  ];
  const where = conditions.reduce((all, condition) => tx`${all} and ${condition}`);
  // One statement either way (one round trip): the index page's ids, then whichever branch applies; the
  // other branch's one-time filter keeps it from running.
  const rows = hasFilters(filters)
    ? await tx<LeadRow[]>`
      select ${tx.unsafe(SELECT_LEAD)} from public.leads l
      where ${where}
      order by l.created_at desc, l.id desc
      limit ${limit}`
    : await tx<LeadRow[]>`
      with page as materialized (
        select app.visible_lead_page(${clientId}, ${limit}, ${before?.[0] ?? null}::timestamptz,
                                     ${before?.[1] ?? null}::uuid) as ids
      )
      select l.* from page cross join lateral (
        select ${tx.unsafe(SELECT_LEAD)} from public.leads l
        where page.ids is not null and l.client_id = ${clientId} and l.id = any (page.ids)
        union all
        (select ${tx.unsafe(SELECT_LEAD)} from public.leads l
         where page.ids is null and ${where}
         order by l.created_at desc, l.id desc
         limit ${limit})
      ) l
      order by l.created_at desc, l.id desc`;
  return { rows: rows.slice(0, page.limit), more: rows.length > page.limit };
}

/** A visible lead of the client, with its raw payload. */
export async function findLead(tx: Tx, clientId: string, leadId: string): Promise<LeadDetailRow | undefined> {
  const [row] = await tx<LeadDetailRow[]>`
    select ${tx.unsafe(SELECT_LEAD)}, l.raw_payload from public.leads l
    where l.client_id = ${clientId} and l.id = ${leadId}`;
  return row;
}

/** True when the caller sees the lead. */
export async function leadVisible(tx: Tx, clientId: string, leadId: string): Promise<boolean> {
  const [row] = await tx`select 1 from public.leads l where l.client_id = ${clientId} and l.id = ${leadId}`;
  return row !== undefined;
}

/**
 * The id of the lead stored under this source and external_ref, visible or not (the caller must hold
 * leads.create in the client).
 */
export async function leadIdForExternalRef(
  tx: Tx,
  clientId: string,
  source: string,
  externalRef: string,
): Promise<string | undefined> {
  const [row] = await tx<{ id: string | null }[]>`
    select app.lead_id_for_external_ref(${clientId}, ${source}, ${externalRef}) as id`;
  return row.id ?? undefined;
}

/**
 * Inserts a lead with an id chosen by the caller. No RETURNING, and no conflict target: either would apply
 * the select policies to the new row (a conflict target needs SELECT on its columns), which the assignment
 * trigger may give to someone the caller cannot see. The only unique key a fresh id (newLeadId(), 74 random
 * bits) can meet is (client_id, source, external_ref), so false means a lead with that external_ref exists.
 */
export async function insertLead(
  tx: Tx,
  input: { id: string; clientId: string; source: string; lead: NormalizedLead; rawPayload: unknown },
): Promise<boolean> {
  const { lead } = input;
  const result = await tx`
    insert into public.leads (id, client_id, source, external_ref, full_name, email, phone, product_id,
      utm_source, utm_medium, utm_campaign, utm_term, utm_content, consent, custom, raw_payload)
    values (${input.id}, ${input.clientId}, ${input.source}, ${lead.external_ref ?? null},
      ${lead.full_name ?? null}, ${lead.email ?? null}, ${lead.phone ?? null}, ${
    lead.product_id ?? null
  }::uuid,
      ${lead.utm_source ?? null}, ${lead.utm_medium ?? null}, ${lead.utm_campaign ?? null},
      ${lead.utm_term ?? null}, ${lead.utm_content ?? null}, ${lead.consent ?? false},
      ${tx.json(lead.custom as postgres.JSONValue)}, ${tx.json(input.rawPayload as postgres.JSONValue)})
    on conflict do nothing`;
  return result.count === 1;
}

/** Changes of a PATCH, already normalised; undefined leaves a column as it is, null clears it. */
export type LeadChanges = Partial<
  Record<
    | "full_name"
    | "email"
    | "phone"
    | "product_id"
    | "utm_source"
    | "utm_medium"
    | "utm_campaign"
    | "utm_term"
    | "utm_content",
    string | null
  > & { consent: boolean; custom: Record<string, unknown> }
>;

/** Updates a lead the caller may change; false when it is not visible to them. */
export async function updateLead(
  tx: Tx,
  clientId: string,
  leadId: string,
  changes: LeadChanges,
): Promise<boolean> {
  const sets = Object.entries(changes).filter(([, value]) => value !== undefined).map(([column, value]) =>
    column === "custom"
      ? tx`custom = ${tx.json(value as postgres.JSONValue)}`
      : column === "product_id"
      ? tx`product_id = ${value as string | null}::uuid`
      : tx`${tx(column)} = ${value as string | boolean | null}`
  );
  const result = await tx`
    update public.leads set ${sets.reduce((all, set) => tx`${all}, ${set}`)}
    where client_id = ${clientId} and id = ${leadId}`;
  return result.count === 1;
}

/** True when the client's pipeline has this status. */
export async function statusExists(tx: Tx, clientId: string, status: string): Promise<boolean> {
  const [row] = await tx`
    select 1 from public.lead_statuses where client_id = ${clientId} and key = ${status}`;
  return row !== undefined;
}

export async function setStatus(tx: Tx, clientId: string, leadId: string, status: string): Promise<boolean> {
  const result = await tx`
    update public.leads set status = ${status} where client_id = ${clientId} and id = ${leadId}`;
  return result.count === 1;
}

/**
 * Gives a lead to another member. The update policy's with-check keeps the new owner inside the caller's
 * visible part (a refusal raises insufficient_privilege); the foreign key keeps them inside the client.
 */
export async function setOwner(tx: Tx, clientId: string, leadId: string, membershipId: string) {
  const result = await tx`
    update public.leads set owner_membership_id = ${membershipId}::uuid
    where client_id = ${clientId} and id = ${leadId}`;
  return result.count === 1;
}

export function listStatuses(tx: Tx, clientId: string) {
  return tx<{ key: string; name: string; position: number; is_closed: boolean }[]>`
    select key, name, position, is_closed from public.lead_statuses
    where client_id = ${clientId} order by position, key`;
}

export interface NoteRow {
  id: string;
  lead_id: string;
  author_id: string;
  author_name: string | null;
  body: string;
  created_at: string;
}

const SELECT_NOTE = (tx: Tx) =>
  tx`select n.id, n.lead_id, n.author_id, u.full_name as author_name, n.body, n.created_at
     from public.lead_notes n left join public.users u on u.id = n.author_id`;

export function listNotes(tx: Tx, clientId: string, leadId: string) {
  return tx<NoteRow[]>`
    ${SELECT_NOTE(tx)} where n.client_id = ${clientId} and n.lead_id = ${leadId}
    order by n.created_at, n.id`;
}

/** Adds a note as the caller (author_id defaults to auth.uid()) and reads it back. */
export async function insertNote(tx: Tx, clientId: string, leadId: string, body: string): Promise<NoteRow> {
  const id = crypto.randomUUID();
  await tx`insert into public.lead_notes (id, client_id, lead_id, body) values (${id}, ${clientId}, ${leadId}, ${body})`;
  const [row] = await tx<NoteRow[]>`${SELECT_NOTE(tx)} where n.id = ${id}`;
  return row;
}

export interface TimelineRow {
  id: string;
  kind: string;
  actor_id: string | null;
  actor_name: string | null;
  data: Record<string, unknown>;
  member_names: Record<string, string | null>;
  created_at: string;
}

/**
 * A lead's timeline, oldest first: a "created" entry made from the lead row (with the owner it was created
 * with), the activities the triggers wrote, and the notes (in place of their note_added activities, so each
 * note shows its text once). Names come through the caller's RLS, so people outside their visible part of
 * the hierarchy stay null.
 */
export function timeline(tx: Tx, clientId: string, leadId: string) {
  return tx<TimelineRow[]>`
    select e.id, e.kind, e.actor_id, actor.full_name as actor_name, e.data,
           coalesce(mentioned.names, '{}') as member_names, e.created_at
    from (
      select 'created' as id, 'created' as kind, null::uuid as actor_id,
             jsonb_build_object('source', l.source, 'external_ref', l.external_ref,
               'owner_membership_id', case when first_move.data is null then l.owner_membership_id
                 else (first_move.data ->> 'from')::uuid end,
               'duplicate_of', l.duplicate_of) as data,
             l.created_at, 0 as rank, 0::bigint as seq
      from public.leads l
      -- The owner it was created with: the one its first reassignment moved it from, if it moved.
      left join lateral (
        select a.data from public.lead_activities a
        where a.client_id = l.client_id and a.lead_id = l.id and a.kind = 'reassigned'
        order by a.created_at, a.id limit 1
      ) first_move on true
      where l.client_id = ${clientId} and l.id = ${leadId}
      union all
      select 'activity:' || a.id, a.kind, a.actor_id, a.data, a.created_at, 1, a.id
      from public.lead_activities a
      where a.client_id = ${clientId} and a.lead_id = ${leadId} and a.kind <> 'note_added'
      union all
      select 'note:' || n.id, 'note_added', n.author_id, jsonb_build_object('note_id', n.id, 'body', n.body),
             n.created_at, 1, 0
      from public.lead_notes n where n.client_id = ${clientId} and n.lead_id = ${leadId}
    ) e
    left join public.users actor on actor.id = e.actor_id
    -- The memberships an entry mentions: the first owner, or both sides of a reassignment.
    left join lateral (
      select jsonb_object_agg(r.id, u.full_name) as names
      from unnest(case e.kind
          when 'created' then array[(e.data ->> 'owner_membership_id')::uuid]
          when 'reassigned' then array[(e.data ->> 'from')::uuid, (e.data ->> 'to')::uuid]
        end) r (id)
      left join public.memberships m on m.id = r.id
      left join public.users u on u.id = m.user_id
      where r.id is not null
    ) mentioned on true
    order by e.rank, e.created_at, e.seq, e.id`;
}
