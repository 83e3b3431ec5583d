import type { RouteHandler } from "@hono/zod-openapi";
import { asUser, type Tx } from "../../_shared/db.ts";
import { ApiError, type FieldError } from "../../_shared/errors.ts";
import type { AppEnv } from "../../_shared/http.ts";
import * as queries from "./assignment.queries.ts";
import type * as routes from "./assignment.routes.ts";

const ruleNotFound = (id: string) =>
  new ApiError(404, "rule_not_found", `Assignment rule "${id}" was not found`);
const ruleExists = (productId: string | null) =>
  new ApiError(
    409,
    "rule_exists",
    productId
      ? `The client already has an assignment rule for product "${productId}"`
      : "The client already has a default assignment rule",
  );

/**
 * Checks what a rule adds: an enabled product, roles of the client, members of the client the caller can
 * see, and at least someone to take turns. Entries the rule already had are not re-checked, so a role
 * deleted since does not block other changes. Throws one 422 listing every bad field.
 */
async function validateRule(
  tx: Tx,
  clientId: string,
  rule: queries.RuleInput,
  previous?: queries.RuleRow,
): Promise<void> {
  const errors: FieldError[] = [];
  if (rule.role_keys.length === 0 && rule.membership_ids.length === 0) {
    errors.push({
      path: "body.role_keys",
      message: "Name at least one role or member to take turns",
      code: "empty_pool",
    });
  }
  if (
    rule.product_id !== null && rule.product_id !== previous?.product_id &&
    !await queries.productEnabled(tx, clientId, rule.product_id)
  ) {
    errors.push({
      path: "body.product_id",
      message: `Product "${rule.product_id}" is not enabled for this client`,
      code: "product_not_enabled",
    });
  }
  const addedRoles = rule.role_keys.filter((key) => !previous?.role_keys.includes(key));
  const unknownRoles = new Set(await queries.unknownRoleKeys(tx, clientId, addedRoles));
  rule.role_keys.forEach((key, index) => {
    if (unknownRoles.has(key)) {
      errors.push({
        path: `body.role_keys.${index}`,
        message: `Unknown role "${key}"`,
        code: "unknown_role",
      });
    }
  });
  const addedMembers = rule.membership_ids.filter((id) => !previous?.membership_ids.includes(id));
  const unknownMembers = new Set(await queries.unknownMemberships(tx, clientId, addedMembers));
  rule.membership_ids.forEach((id, index) => {
    if (unknownMembers.has(id)) {
      errors.push({
        path: `body.membership_ids.${index}`,
        message: `"${id}" is not a member of this client`,
        code: "unknown_member",
      });
    }
  });
  if (errors.length > 0) {
    throw new ApiError(422, "validation_failed", "The request has invalid fields", errors);
  }
}

/** Turns the unique index's refusal (two requests creating the same product's rule at once) into a 409. */
async function uniqueRule<T>(productId: string | null, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (error) {
    if ((error as { code?: string }).code === "23505") throw ruleExists(productId);
    throw error;
  }
}

export const listRules: RouteHandler<typeof routes.listRules, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const data = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listRules(tx, clientId),
  );
  return c.json({ data }, 200);
};

export const createRule: RouteHandler<typeof routes.createRule, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const rule: queries.RuleInput = {
    product_id: body.product_id ?? null,
    role_keys: [...new Set(body.role_keys)],
    membership_ids: [...new Set(body.membership_ids)],
    enabled: body.enabled,
  };
  const created = await uniqueRule(
    rule.product_id,
    () =>
      asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
        await validateRule(tx, clientId, rule);
        if (await queries.ruleForProduct(tx, clientId, rule.product_id)) throw ruleExists(rule.product_id);
        return await queries.insertRule(tx, clientId, rule);
      }),
  );
  return c.json(created, 201);
};

export const updateRule: RouteHandler<typeof routes.updateRule, AppEnv> = async (c) => {
  const { clientId, ruleId } = c.req.valid("param");
  const body = c.req.valid("json");
  const updated = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    const previous = await queries.findRule(tx, clientId, ruleId);
    if (!previous) throw ruleNotFound(ruleId);
    const rule: queries.RuleInput = {
      product_id: body.product_id === undefined ? previous.product_id : body.product_id,
      role_keys: body.role_keys === undefined ? previous.role_keys : [...new Set(body.role_keys)],
      membership_ids: body.membership_ids === undefined
        ? previous.membership_ids
        : [...new Set(body.membership_ids)],
      enabled: body.enabled ?? previous.enabled,
    };
    await validateRule(tx, clientId, rule, previous);
    if (rule.product_id !== previous.product_id) {
      if (await queries.ruleForProduct(tx, clientId, rule.product_id)) throw ruleExists(rule.product_id);
    }
    return await uniqueRule(rule.product_id, () => queries.updateRule(tx, clientId, ruleId, rule));
  });
  if (!updated) throw ruleNotFound(ruleId);
  return c.json(updated, 200);
};

export const deleteRule: RouteHandler<typeof routes.deleteRule, AppEnv> = async (c) => {
  const { clientId, ruleId } = c.req.valid("param");
  const deleted = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.deleteRule(tx, clientId, ruleId),
  );
  if (!deleted) throw ruleNotFound(ruleId);
  return c.body(null, 204);
};

export const setAvailability: RouteHandler<typeof routes.setAvailability, AppEnv> = async (c) => {
  const { clientId, membershipId } = c.req.valid("param");
  const { available } = c.req.valid("json");
  await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    // A member's own switch needs no permission; anyone else's is a members.manage change under the policies.
    if (await queries.setOwnAvailability(tx, clientId, membershipId, available)) return;
    const access = await queries.memberManagement(tx, clientId);
    if (!access.visible) throw new ApiError(404, "client_not_found", `Client "${clientId}" was not found`);
    if (!access.allowed) {
      throw new ApiError(403, "permission_denied", 'This needs the permission "members.manage"');
    }
    if (!await queries.setAvailability(tx, clientId, membershipId, available)) {
      throw new ApiError(404, "member_not_found", `Member "${membershipId}" was not found`);
    }
  });
  return c.json({ id: membershipId, client_id: clientId, available }, 200);
};

export const replaceStatuses: RouteHandler<typeof routes.replaceStatuses, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const statuses = c.req.valid("json");
  const data = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    const existing = await queries.lockStatuses(tx, clientId);
    const kept = new Set(statuses.map((status) => status.key));
    const inUse: string[] = [];
    for (const key of existing.filter((key) => !kept.has(key))) {
      if (!await queries.removeStatus(tx, clientId, key)) inUse.push(key);
    }
    if (inUse.length > 0) {
      throw new ApiError(
        409,
        "status_in_use",
        `Leads still have the status ${inUse.map((key) => `"${key}"`).join(", ")}; move them first`,
        inUse.map((key) => ({ path: "body", message: `Status "${key}" is in use`, code: "status_in_use" })),
      );
    }
    await queries.upsertStatuses(tx, clientId, statuses);
    return await queries.listStatuses(tx, clientId);
  });
  return c.json({ data }, 200);
};
