import { LEAD_COLUMN_FIELDS } from "../../_shared/integrations/sheets.ts";
import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, problem, timestamp } from "../routing.ts";

/** Integration kinds as the API names them (the path segment); the database says google_sheets. */
export const INTEGRATION_KINDS = ["whatsapp", "google-sheets"] as const;
export type ApiIntegrationKind = (typeof INTEGRATION_KINDS)[number];

const CUSTOM_FIELD = /^custom\.[^.\s][^.]{0,99}$/;

/**
 * A Graph object id: decimal digits in a string. Meta's ids exceed 2^53, so a JSON number would already
 * have lost digits by the time it is parsed; numbers are refused rather than converted.
 */
const graphId = (what: string) =>
  z.string({ error: `Send the ${what} as a string of digits (Meta ids do not fit in a JSON number)` })
    .regex(/^[0-9]{1,30}$/, `Use the ${what}: 1-30 digits`)
    .openapi({ example: "112233445566778899" });

const secretText = (description: string) =>
  z.string().trim().min(10, "Too short to be a token").max(4096).openapi({ description, writeOnly: true });

const statusFields = {
  status: z.enum(["unknown", "ok", "broken"]).openapi({
    description: "From the last connection test or use: ok, broken (a person must fix the credential), " +
      "unknown (never checked, or changed since)",
  }),
  status_detail: z.string().nullable().openapi({ description: "Why the last check failed" }),
  checked_at: timestamp.nullable(),
  token_expires_at: timestamp.nullable().openapi({
    description: "When the token expires; null: never or unknown",
  }),
};

export const whatsAppSettingsSchema = z.object({
  phone_number_id: z.string(),
  template_name: z.string(),
  template_language: z.string(),
  greeting_text: z.string().nullable(),
}).openapi("WhatsAppSettings");

export const sheetColumnSchema = z.strictObject({
  header: z.string().trim().min(1).max(200).openapi({ description: "The column's header text in row 1" }),
  field: z.string().refine(
    (value) => (LEAD_COLUMN_FIELDS as readonly string[]).includes(value) || CUSTOM_FIELD.test(value),
    `Use a lead field (${LEAD_COLUMN_FIELDS.join(", ")}) or custom.<key>`,
  ).openapi({ example: "full_name" }),
}).openapi("SheetColumn");

export const googleSheetsSettingsSchema = z.object({
  spreadsheet_id: z.string(),
  sheet: z.string(),
  columns: z.array(z.object({ header: z.string(), field: z.string() })),
  service_account_email: z.string().nullable().openapi({
    description: "The service account to share the spreadsheet with (editor)",
  }),
}).openapi("GoogleSheetsSettings");

export const integrationSchema = z.object({
  kind: z.enum(INTEGRATION_KINDS),
  enabled: z.boolean(),
  settings: z.union([whatsAppSettingsSchema, googleSheetsSettingsSchema]),
  has_secret: z.boolean().openapi({ description: "Whether a credential is stored (it is never returned)" }),
  ...statusFields,
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Integration");

export const metaFormSchema = z.object({
  form_id: z.string(),
  page_id: z.string(),
  name: z.string(),
  product_id: z.uuid().nullable(),
  backfilled_until: timestamp.nullable(),
  created_at: timestamp,
}).openapi("MetaForm");

export const metaPageSchema = z.object({
  page_id: z.string(),
  name: z.string(),
  has_token: z.boolean().openapi({ description: "Whether a page access token is stored (never returned)" }),
  ...statusFields,
  created_at: timestamp,
  updated_at: timestamp,
  forms: z.array(metaFormSchema),
}).openapi("MetaPage");

export const connectionTestSchema = z.object({
  kind: z.enum(INTEGRATION_KINDS),
  ok: z.boolean(),
  retryable: z.boolean().openapi({
    description: "True when the third party could not be reached or was rate limited: nothing was recorded " +
      "and the stored status is unchanged; try again later",
  }),
  detail: z.string().nullable().openapi({ description: "What the third party said, when the test failed" }),
  ...statusFields,
}).openapi("ConnectionTest");

const clientParams = z.object({ clientId: clientIdSchema });
const kindParams = z.object({
  clientId: clientIdSchema,
  kind: z.enum(INTEGRATION_KINDS).openapi({ description: "whatsapp or google-sheets" }),
});
const pageParams = z.object({ clientId: clientIdSchema, pageId: graphId("page id") });
const formParams = z.object({ clientId: clientIdSchema, formId: graphId("form id") });

const TAGS = ["Integrations"];

export const listIntegrations = apiRoute({
  method: "get",
  path: "/clients/{clientId}/integrations",
  tags: TAGS,
  summary: "A client's WhatsApp and Google Sheets settings and its Meta pages with their forms (no secrets)",
  permission: "integrations.read",
  request: { params: clientParams },
  responses: {
    200: jsonResponse(
      z.object({ integrations: z.array(integrationSchema), meta_pages: z.array(metaPageSchema) }),
      "Configured integrations (absent kinds are not set up) and connected pages",
    ),
  },
});

const enabledField = z.boolean().default(true).openapi({
  description: "Off pauses the integration without losing its settings",
});

export const putWhatsApp = apiRoute({
  method: "put",
  path: "/clients/{clientId}/integrations/whatsapp",
  tags: TAGS,
  summary: "Set up or replace the client's WhatsApp Cloud API greeting",
  permission: "integrations.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        phone_number_id: graphId("WhatsApp phone number id"),
        access_token: secretText(
          "A system-user access token with whatsapp_business_messaging; write-only. Required the first time, " +
            "optional later (the stored one is kept)",
        ).optional(),
        template_name: z.string().regex(
          /^[a-z0-9_]{1,512}$/,
          "Use the approved template's name: lowercase letters, digits and underscores",
        ).openapi({ example: "lead_welcome" }),
        template_language: z.string().regex(
          /^[a-z]{2,3}(_[A-Z]{2,3})?$/,
          'Use the template\'s language code, such as "en" or "en_US"',
        ).openapi({ example: "en_US" }),
        greeting_text: z.string().trim().min(1).max(4096).nullable().optional().openapi({
          description: "Free-form greeting sent instead of the template inside WhatsApp's 24-hour window",
        }),
        enabled: enabledField,
      }),
      "The WhatsApp settings; the token is sealed and never returned",
    ),
  },
  responses: {
    200: jsonResponse(integrationSchema, "Replaced"),
    201: jsonResponse(integrationSchema, "Created"),
  },
});

const PRIVATE_KEY_PEM = /^-----BEGIN PRIVATE KEY-----\r?\n[A-Za-z0-9+/=\r\n]+-----END PRIVATE KEY-----\s*$/;

export const serviceAccountKeySchema = z.looseObject({
  type: z.literal("service_account").optional(),
  client_email: z.email("Use the key file's client_email"),
  private_key: z.string().regex(PRIVATE_KEY_PEM, "Use the key file's private_key (a PKCS#8 PEM block)"),
  private_key_id: z.string().max(200).optional(),
  project_id: z.string().max(200).optional(),
  client_id: z.string().max(200).optional(),
}).openapi({ description: "The service account's JSON key file, as Google downloads it; write-only" });

export const putGoogleSheets = apiRoute({
  method: "put",
  path: "/clients/{clientId}/integrations/google-sheets",
  tags: TAGS,
  summary: "Set up or replace the Google Sheet every new lead of the client is appended to",
  permission: "integrations.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        spreadsheet_id: z.string().regex(
          /^[A-Za-z0-9_-]{10,200}$/,
          "Use the id from the spreadsheet's URL (letters, digits, '-' and '_')",
        ).openapi({ example: "1BxiMVs0XRA5nFMdKvBdBZjgmUUqptlbs74OgvE2upms" }),
        sheet: z.string().trim().min(1).max(100).regex(
          /^[^:\\/?*[\]]+$/,
          "Sheet names cannot contain : \\ / ? * [ ]",
        ).openapi({ example: "Leads" }),
        columns: z.array(sheetColumnSchema).min(1).max(100).superRefine((columns, ctx) => {
          const seen = new Set<string>();
          columns.forEach((column, index) => {
            if (seen.has(column.header)) {
              ctx.addIssue({
                code: "custom",
                path: [index, "header"],
                message: `Header "${column.header}" is used twice`,
              });
            }
            seen.add(column.header);
          });
        }).openapi({ description: "The sheet's columns in any order, each filled from a lead field" }),
        service_account_key: serviceAccountKeySchema.optional(),
        enabled: enabledField,
      }),
      "The sheet settings; the service-account key is sealed and never returned",
    ),
  },
  responses: {
    200: jsonResponse(integrationSchema, "Replaced"),
    201: jsonResponse(integrationSchema, "Created"),
  },
});

export const deleteIntegration = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/integrations/{kind}",
  tags: TAGS,
  summary: "Remove an integration and its stored credential",
  permission: "integrations.manage",
  request: { params: kindParams },
  responses: { 204: { description: "Removed" } },
});

export const testIntegration = apiRoute({
  method: "post",
  path: "/clients/{clientId}/integrations/{kind}/test",
  tags: TAGS,
  summary: "Test an integration's connection with its stored credential and record the outcome",
  description: "WhatsApp: the token is inspected with debug_token when META_APP_ID and META_APP_SECRET are " +
    "set (validity and expiry), then used to read the phone number. Google Sheets: the service account " +
    "reads the spreadsheet. A refusal by the third party is a 200 with ok=false, recorded as status broken; " +
    "an unreachable or rate-limited third party is a 200 with ok=false and retryable=true, recorded nowhere.",
  permission: "integrations.manage",
  request: { params: kindParams },
  responses: { 200: jsonResponse(connectionTestSchema, "The outcome, also stored as the status") },
});

export const connectPage = apiRoute({
  method: "post",
  path: "/clients/{clientId}/meta/pages",
  tags: TAGS,
  summary: "Connect a Facebook page whose Lead Ads feed the client",
  permission: "integrations.manage",
  request: {
    params: clientParams,
    body: jsonBody(
      z.strictObject({
        page_id: graphId("page id"),
        name: z.string().trim().max(200).default(""),
        page_access_token: secretText("A page access token with leads_retrieval; write-only"),
      }),
      "The page and its access token, which is sealed and never returned",
    ),
  },
  responses: {
    201: jsonResponse(metaPageSchema, "Connected"),
    409: problem("The page is already connected (to this client or another one)"),
  },
});

export const updatePage = apiRoute({
  method: "patch",
  path: "/clients/{clientId}/meta/pages/{pageId}",
  tags: TAGS,
  summary: "Rename a connected page or replace its access token",
  permission: "integrations.manage",
  request: {
    params: pageParams,
    body: jsonBody(
      z.strictObject({
        name: z.string().trim().max(200).optional(),
        page_access_token: secretText("A new page access token; write-only").optional(),
      }).refine((body) => Object.keys(body).length > 0, "Send name, page_access_token or both"),
      "The fields to change",
    ),
  },
  responses: { 200: jsonResponse(metaPageSchema, "The page") },
});

export const deletePage = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/meta/pages/{pageId}",
  tags: TAGS,
  summary: "Disconnect a page, with its token and forms",
  permission: "integrations.manage",
  request: { params: pageParams },
  responses: { 204: { description: "Disconnected" } },
});

export const putForm = apiRoute({
  method: "post",
  path: "/clients/{clientId}/meta/pages/{pageId}/forms",
  tags: TAGS,
  summary:
    "Map a page's Lead Ads form to the client and, optionally, a product (again to change the mapping)",
  permission: "integrations.manage",
  request: {
    params: pageParams,
    body: jsonBody(
      z.strictObject({
        form_id: graphId("form id"),
        name: z.string().trim().max(200).default(""),
        product_id: z.uuid().nullable().optional().openapi({
          description: "A product the client sells (enabled for it); its leads are about that product",
        }),
      }),
      "The form and its product",
    ),
  },
  responses: {
    200: jsonResponse(metaFormSchema, "The mapping was changed"),
    201: jsonResponse(metaFormSchema, "Mapped"),
    409: problem("The form is mapped by another client"),
  },
});

export const deleteForm = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/meta/forms/{formId}",
  tags: TAGS,
  summary: "Unmap a Lead Ads form",
  permission: "integrations.manage",
  request: { params: formParams },
  responses: { 204: { description: "Unmapped" } },
});

export const routes = [
  listIntegrations,
  putWhatsApp,
  putGoogleSheets,
  deleteIntegration,
  testIntegration,
  connectPage,
  updatePage,
  deletePage,
  putForm,
  deleteForm,
];
