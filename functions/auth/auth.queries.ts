/** SQL of the auth service: sessions, refresh tokens, invitations. Runs with the function's own rights. */
import type { Sql } from "../_shared/db.ts";

export interface Membership {
  membership_id: string;
  client_id: string;
  client_name: string;
  client_status: "active" | "inactive";
  role: { key: string; name: string };
  reports_to: string | null;
}

export async function verifyPassword(sql: Sql, email: string, password: string) {
  const [row] = await sql<{ user_id: string; disabled: boolean; is_platform_admin: boolean }[]>`
    select user_id, disabled, is_platform_admin from app.verify_password(${email}, ${password})`;
  return row;
}

export async function findUser(sql: Sql, userId: string) {
  const [row] = await sql<
    { id: string; email: string; full_name: string; is_platform_admin: boolean; disabled: boolean }[]
  >`select id, email, full_name, is_platform_admin, disabled_at is not null as disabled
    from public.users where id = ${userId}`;
  return row;
}

export function listMemberships(sql: Sql, userId: string): Promise<Membership[]> {
  return sql<Membership[]>`
    select m.id as membership_id, c.id as client_id, c.name as client_name, c.status as client_status,
           json_build_object('key', r.key, 'name', r.name) as role, m.reports_to
    from public.memberships m
    join public.clients c on c.id = m.client_id
    join public.roles r on r.id = m.role_id
    where m.user_id = ${userId}
    order by m.created_at, m.id`;
}

/** Whether the user may act in the client: an active membership, or a platform administrator. */
export async function canUseClient(sql: Sql, userId: string, clientId: string): Promise<boolean> {
  const [row] = await sql`
    select exists (
      select 1 from public.clients c
      left join public.memberships m on m.client_id = c.id and m.user_id = ${userId}
      join public.users u on u.id = ${userId}
      where c.id = ${clientId} and (u.is_platform_admin or (m.id is not null and c.status = 'active'))
    ) as ok`;
  return row.ok;
}

export async function createSession(
  sql: Sql,
  input: {
    userId: string;
    clientId: string | null;
    userAgent?: string;
    ip: string;
    refreshHash: Uint8Array;
    ttl: number;
  },
): Promise<string> {
  const [row] = await sql<{ id: string }[]>`
    with session as (
      insert into app.sessions (user_id, client_id, user_agent, ip)
      values (${input.userId}, ${input.clientId}, ${input.userAgent?.slice(0, 300) ?? null}, ${input.ip})
      returning id
    ), token as (
      insert into app.refresh_tokens (token_hash, session_id, expires_at)
      select ${input.refreshHash}, id, now() + make_interval(secs => ${input.ttl}) from session
    )
    select id from session`;
  return row.id;
}

export async function rotateRefreshToken(sql: Sql, hash: Uint8Array, newHash: Uint8Array, ttl: number) {
  const [row] = await sql<
    {
      outcome: "ok" | "reused" | "expired" | "revoked" | "unknown";
      session_id: string;
      user_id: string;
      client_id: string | null;
    }[]
  >`select * from app.rotate_refresh_token(${hash}, ${newHash}, ${ttl})`;
  return row;
}

export async function setSessionClient(sql: Sql, sessionId: string, clientId: string | null) {
  await sql`update app.sessions set client_id = ${clientId} where id = ${sessionId}`;
}

export async function revokeSession(sql: Sql, sessionId: string, reason: string) {
  await sql`update app.sessions set revoked_at = now(), revoked_reason = ${reason}
            where id = ${sessionId} and revoked_at is null`;
}

export async function revokeOtherSessions(sql: Sql, userId: string, keepSessionId: string, reason: string) {
  await sql`update app.sessions set revoked_at = now(), revoked_reason = ${reason}
            where user_id = ${userId} and id <> ${keepSessionId} and revoked_at is null`;
}

export async function setPassword(sql: Sql, userId: string, password: string, cost: number) {
  await sql`select app.set_password(${userId}, ${password}, ${cost})`;
}

/** Marks an invitation used and returns its user, or undefined when unknown, used or expired. */
export async function acceptInvitation(sql: Sql, hash: Uint8Array): Promise<string | undefined> {
  const [row] = await sql<{ user_id: string }[]>`
    update app.invitations set accepted_at = now()
    where token_hash = ${hash} and accepted_at is null and expires_at > now()
    returning user_id`;
  return row?.user_id;
}

export async function rateLimitHit(sql: Sql, key: string, limit: number, windowSeconds: number) {
  const [row] = await sql<{ allowed: boolean; remaining: number; reset_seconds: number }[]>`
    select * from app.rate_limit_hit(${key}, ${limit}, ${windowSeconds})`;
  return row;
}
