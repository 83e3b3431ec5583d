import type { RouteHandler } from "@hono/zod-openapi";
import type { Context } from "hono";
import { asUser, type Tx } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, log } from "../../_shared/http.ts";
import {
  type IntegrationKind,
  type LoadedIntegration,
  loadIntegration,
  sealIntegrationSecret,
  sealPageToken,
} from "../../_shared/integrations/credentials.ts";
import { checkGoogleSheets, type CheckOutcome, checkWhatsApp } from "./integrations.checks.ts";
import * as queries from "./integrations.queries.ts";
import type * as routes from "./integrations.routes.ts";
import type { ApiIntegrationKind } from "./integrations.routes.ts";

const DB_KIND: Record<ApiIntegrationKind, IntegrationKind> = {
  "whatsapp": "whatsapp",
  "google-sheets": "google_sheets",
};
const API_KIND: Record<IntegrationKind, ApiIntegrationKind> = {
  whatsapp: "whatsapp",
  google_sheets: "google-sheets",
};

const integrationNotFound = (kind: ApiIntegrationKind) =>
  new ApiError(404, "integration_not_found", `The ${kind} integration is not set up for this client`);
const pageNotFound = (pageId: string) =>
  new ApiError(404, "meta_page_not_found", `Page "${pageId}" is not connected to this client`);
const formNotFound = (formId: string) =>
  new ApiError(404, "meta_form_not_found", `Form "${formId}" is not mapped for this client`);
/** A definer function refused a write the permission gate allowed: the rights changed mid-request. */
const refused = () =>
  new ApiError(403, "permission_denied", 'This needs the permission "integrations.manage"');

function inTx<T>(c: Context<AppEnv>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return asUser(c.get("deps").sql, c.get("caller").claims, fn);
}

function present(row: queries.IntegrationRow) {
  return { ...row, kind: API_KIND[row.kind] } as never;
}

async function integrationView(tx: Tx, clientId: string, kind: IntegrationKind) {
  const row = (await queries.listIntegrations(tx, clientId)).find((integration) => integration.kind === kind);
  // Writers see it through integrations.read, which every role template holds alongside manage.
  if (!row) throw integrationNotFound(API_KIND[kind]);
  return present(row);
}

export const listIntegrations: RouteHandler<typeof routes.listIntegrations, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const [integrations, pages] = await inTx(c, async (tx) =>
    [
      await queries.listIntegrations(tx, clientId),
      await queries.listPages(tx, clientId),
    ] as const);
  return c.json({ integrations: integrations.map(present), meta_pages: pages }, 200);
};

/**
 * Writes an integration's settings and, when given, its sealed secret in one transaction. Without a new
 * secret one must already be stored.
 */
async function saveIntegration(
  c: Context<AppEnv>,
  clientId: string,
  kind: IntegrationKind,
  values: {
    enabled: boolean;
    settings: Record<string, unknown>;
    secret?: string;
    secretField: string;
    connectionKey: string;
    keepSettings?: string[];
  },
) {
  const config = c.get("deps").config;
  const sealed = values.secret === undefined
    ? undefined
    : await sealIntegrationSecret(config, clientId, kind, values.secret);
  return await inTx(c, async (tx) => {
    if (sealed === undefined && !await queries.hasSecret(tx, clientId, kind)) {
      throw new ApiError(422, "validation_failed", "The request has invalid fields", [{
        path: `body.${values.secretField}`,
        message: "Required: no credential is stored for this integration yet",
        code: "invalid_type",
      }]);
    }
    const { created } = await queries.upsertIntegration(tx, clientId, kind, {
      enabled: values.enabled,
      settings: values.settings,
      newCredential: sealed !== undefined,
      connectionKey: values.connectionKey,
      keepSettings: sealed === undefined ? values.keepSettings ?? [] : [],
    });
    if (sealed !== undefined && !await queries.setIntegrationSecret(tx, clientId, kind, sealed)) {
      throw refused();
    }
    return { created, integration: await integrationView(tx, clientId, kind) };
  });
}

export const putWhatsApp: RouteHandler<typeof routes.putWhatsApp, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const { created, integration } = await saveIntegration(c, clientId, "whatsapp", {
    enabled: body.enabled,
    settings: {
      phone_number_id: body.phone_number_id,
      template_name: body.template_name,
      template_language: body.template_language,
      greeting_text: body.greeting_text ?? null,
    },
    secret: body.access_token,
    secretField: "access_token",
    connectionKey: "phone_number_id",
  });
  return created ? c.json(integration, 201) : c.json(integration, 200);
};

export const putGoogleSheets: RouteHandler<typeof routes.putGoogleSheets, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const key = body.service_account_key;
  // Only the fields the Sheets client uses are kept: token_uri and the like could only mislead it.
  const secret = key === undefined ? undefined : JSON.stringify({
    type: key.type ?? "service_account",
    project_id: key.project_id,
    private_key_id: key.private_key_id,
    private_key: key.private_key,
    client_email: key.client_email,
    client_id: key.client_id,
  });
  const { created, integration } = await saveIntegration(c, clientId, "google_sheets", {
    enabled: body.enabled,
    settings: {
      spreadsheet_id: body.spreadsheet_id,
      sheet: body.sheet,
      columns: body.columns,
      service_account_email: key?.client_email ?? null,
    },
    secret,
    secretField: "service_account_key",
    connectionKey: "spreadsheet_id",
    keepSettings: ["service_account_email"],
  });
  return created ? c.json(integration, 201) : c.json(integration, 200);
};

export const deleteIntegration: RouteHandler<typeof routes.deleteIntegration, AppEnv> = async (c) => {
  const { clientId, kind } = c.req.valid("param");
  const deleted = await inTx(c, (tx) => queries.deleteIntegration(tx, clientId, DB_KIND[kind]));
  if (!deleted) throw integrationNotFound(kind);
  return c.body(null, 204);
};

async function runCheck(
  c: Context<AppEnv>,
  kind: IntegrationKind,
  integration: LoadedIntegration,
): Promise<CheckOutcome> {
  const config = c.get("deps").config;
  if (integration.secret === null) {
    return { result: "broken", detail: "No credential is stored; set it again", tokenExpiresAt: null };
  }
  try {
    return kind === "whatsapp"
      ? await checkWhatsApp(config, integration.settings, integration.secret)
      : await checkGoogleSheets(config, integration.settings, integration.secret);
  } catch (error) {
    log("error", "integration check failed", {
      request_id: c.get("requestId"),
      kind,
      error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
    });
    return { result: "unavailable", detail: "The test could not be run; try again later" };
  }
}

export const testIntegration: RouteHandler<typeof routes.testIntegration, AppEnv> = async (c) => {
  const { clientId, kind } = c.req.valid("param");
  const dbKind = DB_KIND[kind];
  const { config, sql } = c.get("deps");
  // The permission gate has passed; the secret is read with the platform's own rights (private table).
  let integration: LoadedIntegration | null;
  let outcome: CheckOutcome | undefined;
  try {
    integration = await loadIntegration(sql, config, clientId, dbKind);
  } catch (error) {
    log("warn", "integration secret does not open", {
      request_id: c.get("requestId"),
      error: error instanceof Error ? error.message : String(error),
    });
    integration = { settings: {}, enabled: false, status: "unknown", secret: null };
    outcome = {
      result: "broken",
      detail: "The stored credential cannot be decrypted; set it again",
      tokenExpiresAt: null,
    };
  }
  if (!integration) throw integrationNotFound(kind);
  outcome ??= await runCheck(c, dbKind, integration);
  const settled = outcome;
  const status = await inTx(
    c,
    (tx) =>
      settled.result === "unavailable"
        ? queries.integrationStatus(tx, clientId, dbKind)
        : queries.recordCheck(tx, clientId, dbKind, {
          status: settled.result,
          detail: settled.detail,
          tokenExpiresAt: settled.tokenExpiresAt,
        }),
  );
  if (!status) throw integrationNotFound(kind);
  return c.json({
    kind,
    ok: settled.result === "ok",
    retryable: settled.result === "unavailable",
    detail: settled.detail,
    ...status,
  }, 200);
};

async function pageView(tx: Tx, clientId: string, pageId: string) {
  const [page] = await queries.listPages(tx, clientId, pageId);
  if (!page) throw pageNotFound(pageId);
  return page;
}

export const connectPage: RouteHandler<typeof routes.connectPage, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const sealed = await sealPageToken(c.get("deps").config, body.page_id, body.page_access_token);
  const page = await inTx(c, async (tx) => {
    const outcome = await queries.connectPage(tx, clientId, { pageId: body.page_id, name: body.name });
    if (outcome === "own") {
      throw new ApiError(
        409,
        "meta_page_already_connected",
        `Page "${body.page_id}" is already connected to this client; change it with PATCH`,
      );
    }
    if (outcome === "other") {
      // Which client has it stays unsaid: the caller may not even know that client exists.
      throw new ApiError(409, "meta_page_taken", `Page "${body.page_id}" is connected to another client`);
    }
    if (!await queries.setPageToken(tx, body.page_id, sealed)) throw refused();
    return await pageView(tx, clientId, body.page_id);
  });
  return c.json(page, 201);
};

export const updatePage: RouteHandler<typeof routes.updatePage, AppEnv> = async (c) => {
  const { clientId, pageId } = c.req.valid("param");
  const body = c.req.valid("json");
  const token = body.page_access_token;
  const sealed = token === undefined ? undefined : await sealPageToken(c.get("deps").config, pageId, token);
  const page = await inTx(c, async (tx) => {
    const found = await queries.updatePage(tx, clientId, pageId, {
      name: body.name,
      newToken: sealed !== undefined,
    });
    if (!found) throw pageNotFound(pageId);
    if (sealed !== undefined && !await queries.setPageToken(tx, pageId, sealed)) throw refused();
    return await pageView(tx, clientId, pageId);
  });
  return c.json(page, 200);
};

export const deletePage: RouteHandler<typeof routes.deletePage, AppEnv> = async (c) => {
  const { clientId, pageId } = c.req.valid("param");
  const deleted = await inTx(c, (tx) => queries.deletePage(tx, clientId, pageId));
  if (!deleted) throw pageNotFound(pageId);
  return c.body(null, 204);
};

export const putForm: RouteHandler<typeof routes.putForm, AppEnv> = async (c) => {
  const { clientId, pageId } = c.req.valid("param");
  const body = c.req.valid("json");
  const productId = body.product_id ?? null;
  const result = await inTx(c, async (tx) => {
    await pageView(tx, clientId, pageId);
    if (productId !== null && !await queries.productEnabled(tx, clientId, productId)) {
      throw new ApiError(422, "validation_failed", "The request has invalid fields", [{
        path: "body.product_id",
        message: `Product "${productId}" is not enabled for this client`,
        code: "product_not_enabled",
      }]);
    }
    return await queries.upsertForm(tx, clientId, {
      formId: body.form_id,
      pageId,
      name: body.name,
      productId,
    });
  });
  if (result.outcome === "other") {
    throw new ApiError(409, "meta_form_taken", `Form "${body.form_id}" is mapped by another client`);
  }
  return result.outcome === "created" ? c.json(result.form, 201) : c.json(result.form, 200);
};

export const deleteForm: RouteHandler<typeof routes.deleteForm, AppEnv> = async (c) => {
  const { clientId, formId } = c.req.valid("param");
  const deleted = await inTx(c, (tx) => queries.deleteForm(tx, clientId, formId));
  if (!deleted) throw formNotFound(formId);
  return c.body(null, 204);
};
