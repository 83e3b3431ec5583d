import { z } from "@hono/zod-openapi";
import { leadFields } from "../../_shared/leads.ts";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

export const LEAD_SOURCES = [
  "website",
  "api",
  "manual",
  "meta",
  "instagram",
  "google_sheets",
  "whatsapp",
] as const;

/** Most rows one CSV export returns; narrow the filters (created_from/created_to) for more. */
export const EXPORT_ROW_LIMIT = 50_000;

const nullable = (schema: z.ZodType, description?: string) =>
  schema.nullable().openapi(description ? { description } : {});

export const leadSchema = z.object({
  id: z.uuid(),
  client_id: clientIdSchema,
  source: z.enum(LEAD_SOURCES),
  external_ref: nullable(
    z.string(),
    "The source's id (Meta leadgen id, form submission id, Idempotency-Key)",
  ),
  full_name: nullable(z.string()),
  email: nullable(z.string(), "Lower-cased"),
  phone: nullable(z.string(), "E.164"),
  product_id: nullable(z.uuid()),
  status: z.string().openapi({ description: "A key of the client's pipeline (GET .../lead-statuses)" }),
  owner_membership_id: nullable(z.uuid(), "Membership id of the owner; null while unassigned"),
  duplicate_of: nullable(z.uuid(), "The earlier lead with the same phone or email"),
  utm_source: nullable(z.string()),
  utm_medium: nullable(z.string()),
  utm_campaign: nullable(z.string()),
  utm_term: nullable(z.string()),
  utm_content: nullable(z.string()),
  consent: z.boolean(),
  custom: z.record(z.string(), z.unknown()),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Lead");

export const leadDetailSchema = leadSchema.extend({
  raw_payload: z.record(z.string(), z.unknown()).openapi({
    description: "The submission exactly as received",
  }),
}).openapi("LeadDetail");

export const hiddenLeadSchema = z.object({
  id: z.uuid(),
  visible: z.literal(false),
}).openapi("HiddenLead", {
  description: "The lead was stored, but the assignment rules gave it to someone outside your visible part " +
    "of the hierarchy, so only its id is shown",
});

export const leadStatusSchema = z.object({
  key: z.string(),
  name: z.string(),
  position: z.number().int(),
  is_closed: z.boolean(),
}).openapi("LeadStatus");

export const noteSchema = z.object({
  id: z.uuid(),
  lead_id: z.uuid(),
  author_id: z.uuid(),
  author_name: nullable(z.string(), "Null when the author is outside your visible part of the hierarchy"),
  body: z.string(),
  created_at: timestamp,
}).openapi("LeadNote");

export const timelineEntrySchema = z.object({
  id: z.string().openapi({ description: '"created", "activity:<id>" or "note:<id>"' }),
  kind: z.string().openapi({
    description: "created, status_changed, reassigned, duplicate_received, note_added, ...",
  }),
  actor_id: nullable(z.uuid(), "The user who did it; null for the platform"),
  actor_name: nullable(z.string(), "Null for the platform, or when the actor is outside your visible part"),
  data: z.record(z.string(), z.unknown()),
  member_names: z.record(z.uuid(), z.string().nullable()).openapi({
    description: "Names of the memberships the entry mentions (the first owner of created, from and to of " +
      "reassigned); null for those outside your visible part of the hierarchy",
  }),
  created_at: timestamp,
}).openapi("LeadTimelineEntry");

const clientParams = z.object({ clientId: clientIdSchema });
const leadParams = z.object({ clientId: clientIdSchema, leadId: z.uuid() });

const dateOrTime = z.union([z.iso.datetime({ offset: true }), z.iso.date()]);

/** Filters shared by the list and the CSV export. */
export const leadFilters = z.object({
  status: z.string().regex(/^[a-z][a-z0-9_]{0,39}$/, "Use a status key such as new").optional(),
  owner: z.union([z.uuid(), z.literal("unassigned")]).optional().openapi({
    description: 'Owner\'s membership id, or "unassigned"',
  }),
  product_id: z.uuid().optional(),
  source: z.enum(LEAD_SOURCES).optional(),
  created_from: dateOrTime.optional().openapi({ description: "Created at or after (date or date-time)" }),
  created_to: dateOrTime.optional().openapi({
    description: "Created before this date-time; a bare date includes that whole day (UTC)",
  }),
  q: z.string().trim().max(200).optional().openapi({
    description:
      'Full-text search over name, email and phone (web search syntax: words, "phrases", -not, or)',
  }),
  duplicates: z.enum(["include", "exclude", "only"]).default("include").openapi({
    description: "Whether leads linked to an earlier lead (duplicate_of) are listed",
  }),
});

export type LeadFilterQuery = z.infer<typeof leadFilters>;

export const listLeads = apiRoute({
  method: "get",
  path: "/clients/{clientId}/leads",
  tags: ["Leads"],
  summary: "List the leads you can see, newest first, with filters and full-text search",
  permission: "leads.read",
  request: { params: clientParams, query: pageQuery.extend(leadFilters.shape) },
  responses: { 200: jsonResponse(pageOf(leadSchema), "A page of leads, newest first") },
});

export const exportLeads = apiRoute({
  method: "get",
  path: "/clients/{clientId}/leads/export.csv",
  tags: ["Leads"],
  summary: "Export the leads you can see as CSV",
  description:
    `The same filters as the list, newest first, streamed as RFC 4180 CSV with a header row, at most ` +
    `${EXPORT_ROW_LIMIT} rows (narrow created_from/created_to for more). Cells starting with = + - @ (or a ` +
    `tab or carriage return) are prefixed with a single quote so spreadsheets do not run them as formulas.`,
  permission: "leads.export",
  request: { params: clientParams, query: leadFilters },
  responses: {
    200: {
      description: "CSV, one lead a row",
      content: { "text/csv": { schema: z.string() } },
    },
  },
});

export const getLead = apiRoute({
  method: "get",
  path: "/clients/{clientId}/leads/{leadId}",
  tags: ["Leads"],
  summary: "Read a lead, with the payload it arrived with",
  permission: "leads.read",
  request: { params: leadParams },
  responses: { 200: jsonResponse(leadDetailSchema, "The lead") },
});

export const createLead = apiRoute({
  method: "post",
  path: "/clients/{clientId}/leads",
  tags: ["Leads"],
  summary: "Enter a lead by hand; it is deduplicated and assigned like any other",
  description: "Send an Idempotency-Key header (or external_ref) to make retries safe: the same key again " +
    "answers 200 with the lead first created. A lead with the phone or email of an earlier lead is linked to " +
    "it (duplicate_of) and goes to the same owner.",
  permission: "leads.create",
  request: {
    params: clientParams,
    headers: z.object({
      "idempotency-key": z.string().trim().min(1).max(200).optional().openapi({
        description: "Stored as the lead's external_ref (source manual)",
      }),
    }),
    body: jsonBody(
      z.strictObject(leadFields),
      "The lead; phone in international form or with country. At least an email or a phone",
    ),
  },
  responses: {
    201: jsonResponse(z.union([leadSchema, hiddenLeadSchema]), "Created"),
    200: jsonResponse(
      z.union([leadSchema, hiddenLeadSchema]),
      "A lead with this Idempotency-Key exists already; it is returned unchanged",
    ),
  },
});

const text = (max: number) => z.string().trim().min(1).max(max);

export const updateLead = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/leads/{leadId}",
  tags: ["Leads"],
  summary: "Correct a lead's contact details, product, UTM fields, consent or custom fields",
  permission: "leads.update",
  request: {
    params: leadParams,
    body: jsonBody(
      z.strictObject({
        full_name: text(200).nullable().optional(),
        email: z.email().max(320).nullable().optional(),
        phone: z.string().trim().min(3).max(40).nullable().optional(),
        country: leadFields.country.openapi({ description: "Region of a phone without +prefix" }),
        product_id: z.uuid().nullable().optional(),
        utm_source: text(200).nullable().optional(),
        utm_medium: text(200).nullable().optional(),
        utm_campaign: text(200).nullable().optional(),
        utm_term: text(200).nullable().optional(),
        utm_content: text(200).nullable().optional(),
        consent: z.boolean().optional(),
        custom: z.record(z.string(), z.unknown()).optional().openapi({
          description: "Replaces the custom fields",
        }),
      }).refine((body) => Object.keys(body).some((key) => key !== "country"), {
        message: "Send at least one field",
        // Only for an otherwise valid body: an unknown field alone is reported as just that.
        when: (payload) => payload.issues.length === 0,
      }),
      "Fields to change; null clears a field (a lead keeps an email or a phone)",
    ),
  },
  responses: { 200: jsonResponse(leadSchema, "The updated lead") },
});

export const changeStatus = apiRoute({
  method: "post",
  path: "/clients/{clientId}/leads/{leadId}/status",
  tags: ["Leads"],
  summary: "Move a lead to another status of the client's pipeline",
  permission: "leads.update",
  request: {
    params: leadParams,
    body: jsonBody(z.strictObject({ status: z.string().trim().min(1).max(40) }), "The new status key"),
  },
  responses: { 200: jsonResponse(leadSchema, "The lead") },
});

export const assignLead = apiRoute({
  method: "post",
  path: "/clients/{clientId}/leads/{leadId}/assign",
  tags: ["Leads"],
  summary: "Give a lead to another member inside your visible part of the hierarchy",
  permission: "leads.assign",
  request: {
    params: leadParams,
    body: jsonBody(z.strictObject({ membership_id: z.uuid() }), "The new owner's membership id"),
  },
  responses: {
    200: jsonResponse(leadSchema, "The lead"),
    403: problem("The new owner is outside your team, or you lack leads.assign"),
  },
});

export const listNotes = apiRoute({
  method: "get",
  path: "/clients/{clientId}/leads/{leadId}/notes",
  tags: ["Leads"],
  summary: "List a lead's notes, oldest first",
  permission: "leads.read",
  request: { params: leadParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(noteSchema) }), "The notes") },
});

export const addNote = apiRoute({
  method: "post",
  path: "/clients/{clientId}/leads/{leadId}/notes",
  tags: ["Leads"],
  summary: "Add a note to a lead",
  permission: "leads.notes",
  request: {
    params: leadParams,
    body: jsonBody(z.strictObject({ body: z.string().trim().min(1).max(10_000) }), "The note"),
  },
  responses: { 201: jsonResponse(noteSchema, "The note") },
});

export const getTimeline = apiRoute({
  method: "get",
  path: "/clients/{clientId}/leads/{leadId}/timeline",
  tags: ["Leads"],
  summary: "A lead's history: creation, status changes, reassignments, duplicates received and notes",
  permission: "leads.read",
  request: { params: leadParams },
  responses: {
    200: jsonResponse(z.object({ data: z.array(timelineEntrySchema) }), "The timeline, oldest first"),
  },
});

export const listStatuses = apiRoute({
  method: "get",
  path: "/clients/{clientId}/lead-statuses",
  tags: ["Leads"],
  summary: "The client's lead pipeline, in order",
  permission: "leads.read",
  request: { params: clientParams },
  responses: { 200: jsonResponse(z.object({ data: z.array(leadStatusSchema) }), "The statuses") },
});

export const routes = [
  listLeads,
  exportLeads,
  getLead,
  createLead,
  updateLead,
  changeStatus,
  assignLead,
  listNotes,
  addNote,
  getTimeline,
  listStatuses,
];
