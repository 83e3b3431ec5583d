import { type RouteHandler, z } from "@hono/zod-openapi";
import { hashToken, randomToken } from "../../_shared/auth.ts";
import { asUser, HIERARCHY_STATEMENT_TIMEOUT } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor } from "../../_shared/http.ts";
import * as queries from "./members.queries.ts";
import type * as routes from "./members.routes.ts";

const memberNotFound = (id: string) => new ApiError(404, "member_not_found", `Member "${id}" was not found`);
const unknownRole = (key: string) =>
  new ApiError(422, "validation_failed", `Role "${key}" does not exist in this client`, [
    { path: "body.role", message: `Unknown role "${key}"`, code: "unknown_role" },
  ]);

export const listMembers: RouteHandler<typeof routes.listMembers, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, z.tuple([z.iso.datetime(), z.uuid()])) : undefined;
  const rows = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listMembers(tx, clientId, { limit, after }),
  );
  const page = rows.slice(0, limit);
  const last = page[page.length - 1];
  return c.json({
    data: page,
    next_cursor: rows.length > limit ? encodeCursor([last.created_at, last.id]) : null,
  }, 200);
};

export const addMember: RouteHandler<typeof routes.addMember, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const { config, sql } = c.get("deps");
  const token = randomToken("lap_inv_");
  const result = await asUser(sql, c.get("caller").claims, async (tx) => {
    if (!await queries.findRoleId(tx, clientId, body.role)) throw unknownRole(body.role);
    const [existing] = await tx`
      select 1 from public.memberships m join public.users u on u.id = m.user_id
      where m.client_id = ${clientId} and u.email = ${body.email.toLowerCase()}`;
    if (existing) {
      throw new ApiError(409, "already_a_member", `${body.email} is already a member of this client`);
    }
    const added = await queries.addMember(tx, {
      clientId,
      email: body.email,
      fullName: body.full_name,
      role: body.role,
      reportsTo: body.reports_to ?? null,
      invitationHash: await hashToken(token),
      invitationTtl: config.auth.invitation_ttl,
    });
    return { added, member: (await queries.findMember(tx, clientId, added.membership_id))! };
  });
  const invitation = result.added.user_created
    ? { token, expires_at: new Date(Date.now() + config.auth.invitation_ttl * 1000).toISOString() }
    : null;
  return c.json({ member: result.member, invitation }, 201);
};

export const updateMember: RouteHandler<typeof routes.updateMember, AppEnv> = async (c) => {
  const { clientId, membershipId } = c.req.valid("param");
  const body = c.req.valid("json");
  const member = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    const roleId = body.role === undefined ? undefined : await queries.findRoleId(tx, clientId, body.role);
    if (body.role !== undefined && !roleId) throw unknownRole(body.role);
    const updated = await queries.updateMember(tx, clientId, membershipId, {
      roleId,
      reportsTo: body.reports_to,
    });
    return updated ? await queries.findMember(tx, clientId, membershipId) : undefined;
  }, HIERARCHY_STATEMENT_TIMEOUT);
  if (!member) throw memberNotFound(membershipId);
  return c.json(member, 200);
};

export const removeMember: RouteHandler<typeof routes.removeMember, AppEnv> = async (c) => {
  const { clientId, membershipId } = c.req.valid("param");
  const removed = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.removeMember(tx, clientId, membershipId),
    HIERARCHY_STATEMENT_TIMEOUT,
  );
  if (!removed) throw memberNotFound(membershipId);
  return c.body(null, 204);
};

export const getUser: RouteHandler<typeof routes.getUser, AppEnv> = async (c) => {
  const { userId } = c.req.valid("param");
  const user = await asUser(c.get("deps").sql, c.get("caller").claims, (tx) => queries.findUser(tx, userId));
  if (!user) throw new ApiError(404, "user_not_found", `User "${userId}" was not found`);
  return c.json(user, 200);
};

function setDisabled(disabled: boolean): RouteHandler<typeof routes.disableUser, AppEnv> {
  return async (c) => {
    const { userId } = c.req.valid("param");
    const user = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
      // Only a visible account may be changed; an invisible one is a 404 whatever the caller's rights.
      if (!await queries.findUser(tx, userId)) return undefined;
      await queries.setUserDisabled(tx, userId, disabled);
      return await queries.findUser(tx, userId);
    });
    if (!user) throw new ApiError(404, "user_not_found", `User "${userId}" was not found`);
    return c.json(user, 200);
  };
}

export const disableUser = setDisabled(true);
export const enableUser = setDisabled(false);
