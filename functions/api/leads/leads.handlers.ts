import { type RouteHandler, z } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError, type FieldError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor, log } from "../../_shared/http.ts";
import { newLeadId, normalizeLead, normalizePhone } from "../../_shared/leads.ts";
import { leadCsvStream } from "./leads.csv.ts";
import * as queries from "./leads.queries.ts";
import type * as routes from "./leads.routes.ts";
import { EXPORT_ROW_LIMIT, type LeadFilterQuery } from "./leads.routes.ts";

const EXPORT_PAGE_SIZE = 1000;

const leadNotFound = (id: string) => new ApiError(404, "lead_not_found", `Lead "${id}" was not found`);

const invalid = (code: string, detail: string, errors: FieldError[]) =>
  new ApiError(422, code, detail, errors);

/** Turns the database's refusals of a lead write into answers about the request's fields. */
function leadWriteError(error: unknown): unknown {
  const dbError = error as { code?: string; constraint_name?: string };
  switch (dbError.constraint_name) {
    case "leads_product_fkey":
      return invalid("validation_failed", "The product is not enabled for this client", [
        {
          path: "body.product_id",
          message: "This product is not enabled for the client",
          code: "product_not_enabled",
        },
      ]);
    case "leads_owner_fkey":
      return invalid("validation_failed", "The member does not belong to this client", [
        { path: "body.membership_id", message: "No such member in this client", code: "member_not_found" },
      ]);
    case "leads_contact_check":
      return invalid("validation_failed", "A lead needs an email or a phone number", [
        { path: "body.email", message: "Keep an email or a phone number", code: "contact_required" },
      ]);
    case "leads_status_fkey":
      return invalid("unknown_status", "The status is not part of this client's pipeline", [
        { path: "body.status", message: "Unknown status", code: "unknown_status" },
      ]);
  }
  return error;
}

async function writing<T>(work: () => Promise<T>): Promise<T> {
  try {
    return await work();
  } catch (error) {
    throw leadWriteError(error);
  }
}

/** The filters of a list or export request, as the queries take them. */
function toFilters(query: LeadFilterQuery): queries.LeadFilters {
  let createdTo = query.created_to;
  // A bare date includes that whole day.
  if (createdTo && /^\d{4}-\d{2}-\d{2}$/.test(createdTo)) {
    createdTo = new Date(Date.parse(`${createdTo}T00:00:00Z`) + 86_400_000).toISOString();
  }
  return {
    status: query.status,
    owner: query.owner,
    product_id: query.product_id,
    source: query.source,
    created_from: query.created_from,
    created_to: createdTo,
    q: query.q ? query.q : undefined,
    duplicates: query.duplicates,
  };
}

const cursorShape = z.tuple([z.iso.datetime(), z.uuid()]);

export const listLeads: RouteHandler<typeof routes.listLeads, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { limit, cursor, ...query } = c.req.valid("query");
  const before = cursor ? decodeCursor(cursor, cursorShape) : undefined;
  const { rows, more } = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listLeads(tx, clientId, toFilters(query), { limit, before }),
  );
  const last = rows[rows.length - 1];
  return c.json({ data: rows, next_cursor: more ? encodeCursor([last.created_at, last.id]) : null }, 200);
};

export const exportLeads: RouteHandler<typeof routes.exportLeads, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const filters = toFilters(c.req.valid("query"));
  const { sql } = c.get("deps");
  const { claims } = c.get("caller");
  const requestId = c.get("requestId");
  // Each page is its own short transaction, so a slow download never holds a connection or a snapshot.
  const fetchPage = (before: [string, string] | undefined, limit: number) =>
    asUser(sql, claims, (tx) => queries.listLeads(tx, clientId, filters, { limit, before }));
  const first = await fetchPage(undefined, EXPORT_PAGE_SIZE);
  const stream = leadCsvStream(first, fetchPage, {
    maxRows: EXPORT_ROW_LIMIT,
    pageSize: EXPORT_PAGE_SIZE,
    onError: (error) =>
      log("error", "lead export failed", {
        request_id: requestId,
        client_id: clientId,
        error: error instanceof Error ? `${error.name}: ${error.message}` : String(error),
      }),
  });
  const day = new Date().toISOString().slice(0, 10);
  return c.body(stream, 200, {
    "content-type": "text/csv; charset=utf-8",
    "content-disposition": `attachment; filename="leads-${clientId}-${day}.csv"`,
    "cache-control": "no-store",
  });
};

export const getLead: RouteHandler<typeof routes.getLead, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const lead = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.findLead(tx, clientId, leadId),
  );
  if (!lead) throw leadNotFound(leadId);
  return c.json(lead, 200);
};

/** The lead without its raw payload, as lists and writes return it. */
function summary(lead: queries.LeadDetailRow): queries.LeadRow {
  const { raw_payload: _, ...rest } = lead;
  return rest;
}

export const createLead: RouteHandler<typeof routes.createLead, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const body = c.req.valid("json");
  const idempotencyKey = c.req.valid("header")["idempotency-key"];
  if (
    idempotencyKey !== undefined && body.external_ref !== undefined && body.external_ref !== idempotencyKey
  ) {
    throw invalid("validation_failed", "external_ref and the Idempotency-Key header differ", [
      {
        path: "body.external_ref",
        message: "Send the same value as Idempotency-Key, or only one",
        code: "conflict",
      },
    ]);
  }
  const normalized = normalizeLead(body);
  if ("errors" in normalized) {
    throw invalid(
      "validation_failed",
      "The request has invalid fields",
      normalized.errors.map((error) => ({ ...error, path: `body.${error.path}` })),
    );
  }
  const lead = { ...normalized.lead, external_ref: idempotencyKey ?? normalized.lead.external_ref };
  const rawPayload = await c.req.json();
  const id = newLeadId();
  const result = await writing(() =>
    asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
      const ref = lead.external_ref;
      // Checked first so a replay does not take a round-robin turn; the insert's ON CONFLICT covers a race.
      const existing = ref ? await queries.leadIdForExternalRef(tx, clientId, "manual", ref) : undefined;
      const created = !existing &&
        await queries.insertLead(tx, { id, clientId, source: "manual", lead, rawPayload });
      const leadId = created
        ? id
        : existing ?? (ref ? await queries.leadIdForExternalRef(tx, clientId, "manual", ref) : undefined);
      if (!leadId) throw new ApiError(409, "conflict", "The lead was removed while it was being created");
      return { created, id: leadId, row: await queries.findLead(tx, clientId, leadId) };
    })
  );
  const payload = result.row ? summary(result.row) : { id: result.id, visible: false as const };
  return result.created ? c.json(payload, 201) : c.json(payload, 200);
};

export const updateLead: RouteHandler<typeof routes.updateLead, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const { country, phone, email, ...rest } = c.req.valid("json");
  const errors: FieldError[] = [];
  if (country !== undefined && (phone === undefined || phone === null)) {
    errors.push({
      path: "body.country",
      message: "Send country together with phone",
      code: "phone_required",
    });
  }
  let normalizedPhone = phone;
  if (phone) {
    normalizedPhone = normalizePhone(phone, country);
    if (!normalizedPhone) {
      errors.push({
        path: "body.phone",
        message: country || phone.startsWith("+")
          ? `"${phone}" is not a valid phone number`
          : `"${phone}" is not a valid phone number; use +<country code> or send country`,
        code: "invalid_phone",
      });
    }
  }
  if (errors.length) throw invalid("validation_failed", "The request has invalid fields", errors);
  const changes: queries.LeadChanges = {
    ...rest,
    email: email === undefined || email === null ? email : email.toLowerCase(),
    phone: normalizedPhone,
  };
  const lead = await writing(() =>
    asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
      if (!await queries.updateLead(tx, clientId, leadId, changes)) return undefined;
      return await queries.findLead(tx, clientId, leadId);
    })
  );
  if (!lead) throw leadNotFound(leadId);
  return c.json(summary(lead), 200);
};

export const changeStatus: RouteHandler<typeof routes.changeStatus, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const { status } = c.req.valid("json");
  const lead = await writing(() =>
    asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
      if (!await queries.leadVisible(tx, clientId, leadId)) return undefined;
      if (!await queries.statusExists(tx, clientId, status)) {
        throw invalid("unknown_status", `Status "${status}" is not part of this client's pipeline`, [
          { path: "body.status", message: `Unknown status "${status}"`, code: "unknown_status" },
        ]);
      }
      if (!await queries.setStatus(tx, clientId, leadId, status)) return undefined;
      return await queries.findLead(tx, clientId, leadId);
    })
  );
  if (!lead) throw leadNotFound(leadId);
  return c.json(summary(lead), 200);
};

export const assignLead: RouteHandler<typeof routes.assignLead, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const { membership_id: membershipId } = c.req.valid("json");
  let lead: queries.LeadDetailRow | undefined;
  try {
    lead = await writing(() =>
      asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
        if (!await queries.setOwner(tx, clientId, leadId, membershipId)) return undefined;
        return await queries.findLead(tx, clientId, leadId);
      })
    );
  } catch (error) {
    // The update policy's with-check (new owner outside the caller's team) or the reassignment guard.
    if ((error as { code?: string }).code === "42501") {
      throw new ApiError(
        403,
        "assignee_outside_scope",
        "You can only give leads to members of your own part of the hierarchy",
      );
    }
    throw error;
  }
  if (!lead) throw leadNotFound(leadId);
  return c.json(summary(lead), 200);
};

export const listNotes: RouteHandler<typeof routes.listNotes, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const data = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    if (!await queries.leadVisible(tx, clientId, leadId)) return undefined;
    return await queries.listNotes(tx, clientId, leadId);
  });
  if (!data) throw leadNotFound(leadId);
  return c.json({ data }, 200);
};

export const addNote: RouteHandler<typeof routes.addNote, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const { body } = c.req.valid("json");
  const note = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    if (!await queries.leadVisible(tx, clientId, leadId)) return undefined;
    return await queries.insertNote(tx, clientId, leadId, body);
  });
  if (!note) throw leadNotFound(leadId);
  return c.json(note, 201);
};

export const getTimeline: RouteHandler<typeof routes.getTimeline, AppEnv> = async (c) => {
  const { clientId, leadId } = c.req.valid("param");
  const data = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    if (!await queries.leadVisible(tx, clientId, leadId)) return undefined;
    return await queries.timeline(tx, clientId, leadId);
  });
  if (!data) throw leadNotFound(leadId);
  return c.json({ data }, 200);
};

export const listStatuses: RouteHandler<typeof routes.listStatuses, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const data = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listStatuses(tx, clientId),
  );
  return c.json({ data }, 200);
};
