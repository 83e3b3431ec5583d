/** SQL of the user service (accounts and memberships). Every function runs in the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

export interface UserRow {
  id: string;
  email: string;
  full_name: string;
  is_platform_admin: boolean;
  disabled: boolean;
  created_at: string;
}

export interface MemberRow {
  id: string;
  client_id: string;
  user: UserRow;
  role: { id: string; key: string; name: string };
  reports_to: string | null;
  created_at: string;
}

const USER_JSON = (tx: Tx) =>
  tx`json_build_object('id', u.id, 'email', u.email, 'full_name', u.full_name,
       'is_platform_admin', u.is_platform_admin, 'disabled', u.disabled_at is not null,
       'created_at', to_char(u.created_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'))`;

export const MEMBER_SELECT = (tx: Tx) =>
  tx`select m.id, m.client_id, ${USER_JSON(tx)} as user,
            json_build_object('id', r.id, 'key', r.key, 'name', r.name) as role,
            m.reports_to, m.created_at
     from public.memberships m
     join public.users u on u.id = m.user_id
     join public.roles r on r.id = m.role_id`;

export function listMembers(
  tx: Tx,
  clientId: string,
  page: { limit: number; after?: [string, string] },
): Promise<MemberRow[]> {
  return tx<MemberRow[]>`
    ${MEMBER_SELECT(tx)}
    where m.client_id = ${clientId}
      and ${
    page.after ? tx`(m.created_at, m.id) > (${page.after[0]}::timestamptz, ${page.after[1]}::uuid)` : tx`true`
  }
    order by m.created_at, m.id
    limit ${page.limit + 1}`;
}

export async function findMember(
  tx: Tx,
  clientId: string,
  membershipId: string,
): Promise<MemberRow | undefined> {
  const [row] = await tx<MemberRow[]>`
    ${MEMBER_SELECT(tx)} where m.client_id = ${clientId} and m.id = ${membershipId}`;
  return row;
}

export async function addMember(
  tx: Tx,
  input: {
    clientId: string;
    email: string;
    fullName: string;
    role: string;
    reportsTo: string | null;
    invitationHash: Uint8Array;
    invitationTtl: number;
  },
): Promise<{ membership_id: string; user_created: boolean }> {
  const [row] = await tx<{ membership_id: string; user_created: boolean }[]>`
    select membership_id, user_created from public.add_member(
      ${input.clientId}, ${input.email}, ${input.fullName}, ${input.role}, ${input.reportsTo},
      ${input.invitationHash}, ${input.invitationTtl})`;
  return row;
}

/** The id of a role of the client by key, if the caller can see it. */
export async function findRoleId(tx: Tx, clientId: string, key: string): Promise<string | undefined> {
  const [row] = await tx<
    { id: string }[]
  >`select id from public.roles where client_id = ${clientId} and key = ${key}`;
  return row?.id;
}

/** Returns false when the membership is not visible (or not changeable) by the caller. */
export async function updateMember(
  tx: Tx,
  clientId: string,
  membershipId: string,
  changes: { roleId?: string; reportsTo?: string | null },
): Promise<boolean> {
  const rows = await tx`
    update public.memberships set
      role_id = coalesce(${changes.roleId ?? null}::uuid, role_id),
      reports_to = ${changes.reportsTo === undefined ? tx`reports_to` : tx`${changes.reportsTo}::uuid`}
    where client_id = ${clientId} and id = ${membershipId}
    returning id`;
  return rows.length > 0;
}

export async function removeMember(tx: Tx, clientId: string, membershipId: string): Promise<boolean> {
  const rows =
    await tx`delete from public.memberships where client_id = ${clientId} and id = ${membershipId} returning id`;
  return rows.length > 0;
}

export async function findUser(tx: Tx, userId: string): Promise<UserRow | undefined> {
  const [row] = await tx<{ user: UserRow }[]>`select ${
    USER_JSON(tx)
  } as user from public.users u where u.id = ${userId}`;
  return row?.user;
}

export async function setUserDisabled(tx: Tx, userId: string, disabled: boolean): Promise<void> {
  await tx`select 1 from public.set_user_disabled(${userId}, ${disabled})`;
}
