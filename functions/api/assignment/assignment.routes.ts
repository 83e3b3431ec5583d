import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, problem, timestamp } from "../routing.ts";

const roleKeySchema = z.string().regex(/^[a-z][a-z0-9_-]{0,62}$/, "Use a role key such as agent or manager");

export const ruleSchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  product_id: z.uuid().nullable().openapi({
    description: "The product whose leads the rule assigns; null for the client's default rule",
  }),
  role_keys: z.array(z.string()).openapi({ description: "Members holding one of these roles are eligible" }),
  membership_ids: z.array(z.uuid()).openapi({ description: "Members eligible whatever their role" }),
  enabled: z.boolean(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("AssignmentRule");

export const statusSchema = z.object({
  key: z.string(),
  name: z.string(),
  position: z.number().int(),
  is_closed: z.boolean(),
}).openapi("LeadStatus");

const clientParams = z.object({ clientId: clientIdSchema });
const ruleParams = z.object({ clientId: clientIdSchema, ruleId: z.uuid() });

const ruleFields = {
  product_id: z.uuid().nullable().openapi({
    description: "A product enabled for the client; omit or null for the default rule",
  }),
  role_keys: z.array(roleKeySchema).max(50).openapi({
    description: "Keys of the client's roles whose members take turns",
  }),
  membership_ids: z.array(z.uuid()).max(1000).openapi({
    description: "Membership ids of the client's members who take turns whatever their role",
  }),
  enabled: z.boolean(),
};

const ruleErrors = {
  409: problem("The client already has a rule for this product (or a default rule)"),
};

export const listRules = apiRoute({
  method: "get",
  path: "/clients/{clientId}/assignment-rules",
  tags: ["Assignment"],
  summary: "List a client's assignment rules",
  description: "New leads go round robin to the eligible members of the enabled rule for their product, " +
    "else of the default rule. Eligible: holding one of the rule's roles or listed in it, available, and " +
    "not disabled. A product rule with nobody eligible leaves its leads unassigned.",
  permission: "assignment.manage",
  request: { params: clientParams },
  responses: {
    200: jsonResponse(z.object({ data: z.array(ruleSchema) }), "The default rule first, then product rules"),
  },
});

export const createRule = apiRoute({
  method: "post",
  path: "/clients/{clientId}/assignment-rules",
  tags: ["Assignment"],
  summary: "Create an assignment rule for a product (or the default rule)",
  permission: "assignment.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        product_id: ruleFields.product_id.optional(),
        role_keys: ruleFields.role_keys.default([]),
        membership_ids: ruleFields.membership_ids.default([]),
        enabled: ruleFields.enabled.default(true),
      }),
      "The rule; name at least one role or member",
    ),
  },
  responses: { 201: jsonResponse(ruleSchema, "Created"), ...ruleErrors },
});

export const updateRule = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/assignment-rules/{ruleId}",
  tags: ["Assignment"],
  summary: "Change a rule's product, eligible roles or members, or enable or disable it",
  permission: "assignment.manage",
  request: {
    params: ruleParams,
    body: jsonBody(
      z.strictObject({
        product_id: ruleFields.product_id.optional(),
        role_keys: ruleFields.role_keys.optional(),
        membership_ids: ruleFields.membership_ids.optional(),
        enabled: ruleFields.enabled.optional(),
      }).refine((body) => Object.keys(body).length > 0, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(ruleSchema, "The updated rule"), ...ruleErrors },
});

export const deleteRule = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/assignment-rules/{ruleId}",
  tags: ["Assignment"],
  summary: "Delete an assignment rule (without a default rule, leads of other products stay unassigned)",
  permission: "assignment.manage",
  request: { params: ruleParams },
  responses: { 204: { description: "Deleted" } },
});

export const setAvailability = apiRoute({
  method: "put",
  path: "/clients/{clientId}/members/{membershipId}/availability",
  tags: ["Assignment"],
  summary: "Mark a member available or unavailable for new leads (members.manage, or the member themself)",
  description: "An unavailable member is skipped by the assignment rules until marked available again. " +
    "Members may always switch their own availability; changing someone else's needs members.manage, " +
    "inside the caller's part of the hierarchy and for members ranked no higher than the caller.",
  request: {
    params: z.object({ clientId: clientIdSchema, membershipId: z.uuid() }),
    body: jsonBody(z.strictObject({ available: z.boolean() }), "The new availability"),
  },
  responses: {
    200: jsonResponse(
      z.object({ id: z.uuid(), client_id: clientIdSchema, available: z.boolean() }).openapi("Availability"),
      "The member's availability",
    ),
  },
});

const statusInput = z.strictObject({
  key: z.string().regex(
    /^[a-z][a-z0-9_]{0,39}$/,
    "Use 1-40 lowercase letters, digits or '_', starting with a letter",
  ),
  name: z.string().trim().min(1).max(100),
  position: z.number().int().min(0).max(1_000_000),
  is_closed: z.boolean().default(false),
});

export const replaceStatuses = apiRoute({
  method: "put",
  path: "/clients/{clientId}/lead-statuses",
  tags: ["Assignment"],
  summary: "Replace a client's lead pipeline",
  description: "Statuses are matched by key: listed ones are created or updated, missing ones removed. " +
    "`new` (every lead's first status) must stay, and a status that leads still have cannot be removed " +
    "(409 status_in_use); move those leads first.",
  permission: "pipeline.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.array(statusInput).min(1).max(50).superRefine((statuses, ctx) => {
        const keys = new Set<string>();
        const positions = new Set<number>();
        statuses.forEach((status, index) => {
          if (keys.has(status.key)) {
            ctx.addIssue({
              code: "custom",
              path: [index, "key"],
              message: `Status "${status.key}" is listed twice`,
            });
          }
          if (positions.has(status.position)) {
            ctx.addIssue({
              code: "custom",
              path: [index, "position"],
              message: `Position ${status.position} is used twice`,
            });
          }
          keys.add(status.key);
          positions.add(status.position);
        });
        if (!keys.has("new")) {
          ctx.addIssue({
            code: "custom",
            path: [],
            message: 'The pipeline must keep the status "new", every lead\'s default',
          });
        }
      }),
      "The whole pipeline",
    ),
  },
  responses: {
    200: jsonResponse(z.object({ data: z.array(statusSchema) }), "The pipeline in position order"),
    409: problem("Leads still have a status the new pipeline leaves out"),
  },
});

export const routes = [listRules, createRule, updateRule, deleteRule, setAvailability, replaceStatuses];
