/**
 * The lead input contract shared by every way a lead arrives (ingest API, manual entry, and later Meta and
 * Google Sheets): one zod schema for validation, types and OpenAPI, and the normalisation that makes
 * deduplication work (lower-cased email, E.164 phone via libphonenumber's full metadata).
 */
import { z } from "@hono/zod-openapi";
import { parsePhoneNumberFromString } from "libphonenumber-js/max";
import type { CountryCode } from "libphonenumber-js/max";
import { formatUuid } from "./bytes.ts";

const text = (max: number) => z.string().trim().min(1).max(max);

/** Fields a lead may carry; `country` (ISO 3166-1 alpha-2) is the region for phones without a +prefix. */
export const leadFields = {
  full_name: text(200).optional(),
  first_name: text(100).optional(),
  last_name: text(100).optional(),
  email: z.email().max(320).optional(),
  phone: z.string().trim().min(3).max(40).optional(),
  country: z.string().regex(/^[A-Za-z]{2}$/, "Use a two-letter country code such as GB").optional(),
  external_ref: text(200).optional().openapi({
    description: "Your id for this submission; sending it again returns the same lead",
  }),
  product_id: z.uuid().optional(),
  utm_source: text(200).optional(),
  utm_medium: text(200).optional(),
  utm_campaign: text(200).optional(),
  utm_term: text(200).optional(),
  utm_content: text(200).optional(),
  consent: z.boolean().optional(),
  custom: z.record(z.string(), z.unknown()).optional().openapi({ description: "Any extra fields" }),
};

/** A lead ready for the database: normalised contact details, everything else as received. */
export interface NormalizedLead {
  full_name?: string;
  email?: string;
  phone?: string;
  external_ref?: string;
  product_id?: string;
  utm_source?: string;
  utm_medium?: string;
  utm_campaign?: string;
  utm_term?: string;
  utm_content?: string;
  consent?: boolean;
  custom: Record<string, unknown>;
}

/** Normalises a phone number to E.164, or returns undefined when it is not a valid number. */
export function normalizePhone(phone: string, country?: string): string | undefined {
  const parsed = parsePhoneNumberFromString(phone, country?.toUpperCase() as CountryCode | undefined);
  return parsed?.isValid() ? parsed.number : undefined;
}

type LeadInput = { [K in keyof typeof leadFields]?: z.infer<(typeof leadFields)[K]> };

/**
 * Checks the parts zod cannot (a valid phone for the country, at least one way to reach the person) and
 * returns the normalised lead or the field errors. Unknown fields, when given, join `custom`.
 */
export function normalizeLead(
  input: LeadInput,
  extra: Record<string, unknown> = {},
): { lead: NormalizedLead } | { errors: { path: string; message: string; code: string }[] } {
  const errors: { path: string; message: string; code: string }[] = [];
  let phone: string | undefined;
  if (input.phone !== undefined) {
    phone = normalizePhone(input.phone, input.country);
    if (!phone) {
      errors.push({
        path: "phone",
        message: input.country || input.phone.startsWith("+")
          ? `"${input.phone}" is not a valid phone number`
          : `"${input.phone}" is not a valid phone number; use +<country code> or send country`,
        code: "invalid_phone",
      });
    }
  }
  if (input.email === undefined && input.phone === undefined) {
    errors.push({ path: "email", message: "Send an email or a phone number", code: "contact_required" });
  }
  if (errors.length) return { errors };
  const fullName = input.full_name ??
    ([input.first_name, input.last_name].filter(Boolean).join(" ") || undefined);
  return {
    lead: {
      full_name: fullName,
      email: input.email?.toLowerCase(),
      phone,
      external_ref: input.external_ref,
      product_id: input.product_id,
      utm_source: input.utm_source,
      utm_medium: input.utm_medium,
      utm_campaign: input.utm_campaign,
      utm_term: input.utm_term,
      utm_content: input.utm_content,
      consent: input.consent,
      custom: { ...extra, ...input.custom },
    },
  };
}

/**
 * A new lead id: a UUID version 7 (RFC 9562), as app.uuid_v7() makes them (sql/0042_time_ordered_ids.sql).
 * It starts with the Unix time in milliseconds, so new leads go to the last pages of the indexes on their id.
 */
export function newLeadId(now = Date.now()): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  for (let i = 5, time = now; i >= 0; i--, time = Math.floor(time / 256)) bytes[i] = time % 256;
  bytes[6] = 0x70 | (bytes[6] & 0x0f);
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  return formatUuid(bytes);
}
