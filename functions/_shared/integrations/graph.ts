/**
 * Meta Graph API client: Lead Ads lead retrieval, access-token health checks and WhatsApp Cloud API
 * messages, over plain fetch so it runs unchanged on Supabase Edge Functions.
 *
 * - Tokens travel in `Authorization: Bearer`, which Graph accepts on every endpoint, so they never end up
 *   in URLs, proxy logs or the `paging.next` links Graph echoes back.
 * - Graph object ids are decimal strings that exceed 2^53; responses are parsed so that any integer Graph
 *   might send as a bare number keeps its exact digits (as a string), and ids are never converted to numbers.
 * - Every failure is a `GraphApiError` whose `action` tells the caller what to do next (see
 *   `classifyGraphError`).
 */

/** What the caller should do about a failed Graph request. */
export type GraphErrorAction =
  /** The access token expired or was revoked: a person must reconnect the integration. */
  | "token_invalid"
  /** Rate limited or a transient fault: retry the same request later. */
  | "retry_later"
  /** Free-form WhatsApp messages are refused outside the 24-hour customer-service window: send a template. */
  | "template_required"
  /** WhatsApp cannot deliver to this number (not on WhatsApp, blocked, ...): do not retry. */
  | "recipient_unreachable"
  /** Anything else (invalid parameter, unknown template, permission): retrying will not help. */
  | "failed";

/** A failed Graph API call, with Meta's documented error fields and the action it calls for. */
export class GraphApiError extends Error {
  /** HTTP status, or 0 when no response arrived (network error, timeout) or the request was never sent. */
  readonly status: number;
  /** Meta's `error.code`, null when the response carried none. */
  readonly code: number | null;
  /** Meta's `error.error_subcode`, null when absent. */
  readonly subcode: number | null;
  /** Meta's `error.type` (e.g. "OAuthException"), or a local kind such as "NetworkError". */
  readonly type: string;
  /** Meta's `error.fbtrace_id`, worth logging for support requests. */
  readonly fbtraceId: string | null;
  /** WhatsApp's `error.error_data.details`: the most specific explanation Meta gives. */
  readonly details: string | null;
  readonly action: GraphErrorAction;

  constructor(
    message: string,
    fields: {
      status: number;
      action: GraphErrorAction;
      type: string;
      code?: number | null;
      subcode?: number | null;
      fbtraceId?: string | null;
      details?: string | null;
      cause?: unknown;
    },
  ) {
    super(message, { cause: fields.cause });
    this.name = "GraphApiError";
    this.status = fields.status;
    this.action = fields.action;
    this.type = fields.type;
    this.code = fields.code ?? null;
    this.subcode = fields.subcode ?? null;
    this.fbtraceId = fields.fbtraceId ?? null;
    this.details = fields.details ?? null;
  }

  /** True when the same request may succeed later. */
  get retryable(): boolean {
    return this.action === "retry_later";
  }
}

// 190 OAuthException, 102 API session, 104 no token, 0 AuthException (WhatsApp): all say "get a new token".
const TOKEN_CODES = new Set([0, 102, 104, 190]);
// The documented 190/102 subcodes: app not installed, checkpointed, password changed, expired, unconfirmed
// user, invalid token, invalid session.
const TOKEN_SUBCODES = new Set([458, 459, 460, 463, 464, 467, 492]);
const RETRY_CODES = new Set([
  1, // API unknown: possibly temporary downtime
  2, // API service: temporary downtime
  4, // application request limit
  17, // user request limit
  32, // page request limit
  613, // calls within one hour exceeded
  130429, // WhatsApp Cloud API throughput reached
  131000, // WhatsApp "something went wrong", documented as retryable
  131016, // WhatsApp service temporarily unavailable
  131056, // too many messages to one recipient (business/consumer pair rate limit)
  133004, // WhatsApp server temporarily unavailable
]);

/** 80000-80014 are the Business Use Case rate limits (80005 Lead Ads, 80007/80008 WhatsApp, ...). */
function isBusinessUseCaseRateLimit(code: number): boolean {
  return code >= 80000 && code <= 80014;
}

function errorAction(status: number, code: number | null, subcode: number | null, transient: boolean) {
  if ((code !== null && TOKEN_CODES.has(code)) || (subcode !== null && TOKEN_SUBCODES.has(subcode))) {
    return "token_invalid";
  }
  if (code === 131047) return "template_required";
  if (code === 131026) return "recipient_unreachable";
  if (code !== null && (RETRY_CODES.has(code) || isBusinessUseCaseRateLimit(code))) return "retry_later";
  if (transient || status === 429 || status >= 500) return "retry_later";
  return "failed";
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
}

function integerOrNull(value: unknown): number | null {
  if (typeof value === "number" && Number.isInteger(value)) return value;
  if (typeof value === "string" && /^\d+$/.test(value)) return Number(value);
  return null;
}

/**
 * Turns a Graph error response into a `GraphApiError` (pure, so every documented case is unit-testable).
 * `body` is the parsed response, normally `{ error: { message, type, code, error_subcode, error_data,
 * fbtrace_id, is_transient } }`; anything else (an HTML page from a proxy, an empty body) is classified by
 * the HTTP status alone.
 */
export function classifyGraphError(status: number, body: unknown): GraphApiError {
  const error = record(record(body)?.error);
  const code = integerOrNull(error?.code);
  const subcode = integerOrNull(error?.error_subcode);
  const details = record(error?.error_data)?.details;
  const message = typeof error?.message === "string" && error.message !== ""
    ? error.message
    : `Graph API request failed with status ${status}`;
  return new GraphApiError(message, {
    status,
    code,
    subcode,
    type: typeof error?.type === "string" ? error.type : "HttpError",
    fbtraceId: typeof error?.fbtrace_id === "string" ? error.fbtrace_id : null,
    details: typeof details === "string" ? details : null,
    action: errorAction(status, code, subcode, error?.is_transient === true),
  });
}

/** One answer of a Lead Ads form, as Graph returns it. */
export interface LeadFieldDatum {
  name: string;
  values: string[];
}

/** A Lead Ads lead. Ids are decimal strings; `created_time` is Graph's "2024-05-01T10:00:00+0000". */
export interface GraphLead {
  id: string;
  created_time: string;
  form_id?: string;
  ad_id?: string;
  campaign_id?: string;
  /** "fb" or "ig". */
  platform?: string;
  is_organic?: boolean;
  field_data: LeadFieldDatum[];
}

/** What `debug_token` says about an access token. */
export interface TokenDebugInfo {
  is_valid: boolean;
  /** null when the token never expires (long-lived page tokens, system-user tokens). */
  expires_at: Date | null;
  scopes: string[];
  /** "PAGE", "USER", "SYSTEM_USER" or "APP" when Graph reports it. */
  type?: string;
  app_id?: string;
  /** Why the token is invalid, when it is (e.g. code 190, subcode 463 for an expired token). */
  error?: { code: number | null; subcode: number | null; message: string };
}

/** A WhatsApp template component (header, body or button) with its parameters, as the Cloud API takes it. */
export interface WhatsAppTemplateComponent {
  type: "header" | "body" | "button";
  sub_type?: string;
  index?: number | string;
  parameters: Array<{ type: string; [field: string]: unknown }>;
}

/** The id WhatsApp gave an accepted message and the recipient's WhatsApp id. */
export interface WhatsAppSendResult {
  /** `wamid.…`, the id later status webhooks refer to. */
  messageId: string;
  /** The recipient's WhatsApp id (digits), when WhatsApp reports it. */
  waId?: string;
}

/** The Graph API operations the platform uses. */
export interface GraphClient {
  /** Reads one lead by its leadgen id with the page's access token. */
  fetchLead(leadgenId: string, pageAccessToken: string): Promise<GraphLead>;
  /**
   * Reads every lead of a form created strictly after `since` (all of them without it), following the
   * paging cursors; `limit` is the page size asked of Graph per request (default 100).
   */
  listFormLeads(
    formId: string,
    pageAccessToken: string,
    options?: { since?: Date; limit?: number },
  ): Promise<GraphLead[]>;
  /** Inspects `inputToken` with the app access token (`<app-id>|<app-secret>`), for credential health. */
  debugToken(inputToken: string, appAccessToken: string): Promise<TokenDebugInfo>;
  /** Sends an approved template message, the only kind allowed outside the customer-service window. */
  sendWhatsAppTemplate(
    message: WhatsAppAddress & {
      templateName: string;
      languageCode: string;
      components?: WhatsAppTemplateComponent[];
    },
  ): Promise<WhatsAppSendResult>;
  /** Sends a free-form text message (refused with `template_required` outside the 24-hour window). */
  sendWhatsAppText(
    message: WhatsAppAddress & { body: string; previewUrl?: boolean },
  ): Promise<WhatsAppSendResult>;
}

/** Who sends a WhatsApp message to whom, and what its status webhooks should carry back. */
export interface WhatsAppAddress {
  phoneNumberId: string;
  accessToken: string;
  to: string;
  /**
   * biz_opaque_callback_data (at most 512 characters): every status webhook of the message echoes it, so a
   * message whose send got no answer can still be recognised when its statuses arrive.
   */
  callbackData?: string;
}

const CALLBACK_DATA_MAX = 512;

const LEAD_FIELDS = "id,created_time,field_data,form_id,ad_id,campaign_id,platform,is_organic";
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_PAGE_SIZE = 100;

type Reviver = (this: unknown, key: string, value: unknown, context?: { source?: string }) => unknown;

/**
 * JSON.parse that keeps integers beyond 2^53 exact, as their decimal digits, using the reviver's source
 * text (ES2025 JSON.parse source access): Graph documents ids as strings, but one bare numeric id would
 * otherwise be silently rounded to a different object's id.
 */
export function parseGraphJson(text: string): unknown {
  const keepLargeIntegers: Reviver = (_key, value, context) =>
    typeof value === "number" && !Number.isSafeInteger(value) && context?.source !== undefined &&
      /^-?\d+$/.test(context.source)
      ? context.source
      : value;
  return (JSON.parse as (text: string, reviver: Reviver) => unknown)(text, keepLargeIntegers);
}

/** An error raised before anything was sent, for input Graph would reject anyway. */
function invalidRequest(message: string): GraphApiError {
  return new GraphApiError(message, { status: 0, action: "failed", type: "InvalidRequest" });
}

function unexpectedResponse(status: number, what: string): GraphApiError {
  return new GraphApiError(`Graph API returned an unexpected ${what} response`, {
    status,
    action: "failed",
    type: "UnexpectedResponse",
  });
}

/** Graph object ids are decimal digits; checking them keeps a hostile id from rewriting the request path. */
function objectId(id: string, what: string): string {
  if (!/^\d+$/.test(id)) throw invalidRequest(`${what} "${id}" is not a Graph object id`);
  return id;
}

/**
 * WhatsApp recipients are sent as E.164 digits without the "+": the form of the `wa_id` WhatsApp returns and
 * puts in every webhook, so what we send and what we receive compare directly. "+" input is accepted.
 */
function whatsAppRecipient(to: string): string {
  const digits = to.startsWith("+") ? to.slice(1) : to;
  if (!/^[1-9]\d{6,14}$/.test(digits)) throw invalidRequest(`Recipient "${to}" is not an E.164 phone number`);
  return digits;
}

function optionalString(value: unknown): string | undefined {
  if (typeof value === "string") return value;
  // Graph sends ids as strings; a bare number here is small enough to be exact (large ones stay strings).
  if (typeof value === "number") return String(value);
  return undefined;
}

function toLead(value: unknown, status: number): GraphLead {
  const raw = record(value);
  const id = optionalString(raw?.id);
  const createdTime = optionalString(raw?.created_time);
  if (!raw || !id || !createdTime) throw unexpectedResponse(status, "lead");
  const fieldData = Array.isArray(raw.field_data) ? raw.field_data : [];
  const lead: GraphLead = {
    id,
    created_time: createdTime,
    field_data: fieldData.flatMap((datum) => {
      const entry = record(datum);
      if (typeof entry?.name !== "string") return [];
      const values = Array.isArray(entry.values) ? entry.values : [];
      return [{ name: entry.name, values: values.map((item) => String(item)) }];
    }),
  };
  const formId = optionalString(raw.form_id);
  const adId = optionalString(raw.ad_id);
  const campaignId = optionalString(raw.campaign_id);
  const platform = optionalString(raw.platform);
  if (formId) lead.form_id = formId;
  if (adId) lead.ad_id = adId;
  if (campaignId) lead.campaign_id = campaignId;
  if (platform) lead.platform = platform;
  if (typeof raw.is_organic === "boolean") lead.is_organic = raw.is_organic;
  return lead;
}

/**
 * Creates a Graph API client. `baseUrl` includes the API version (config `urls.graph_api`, e.g.
 * "https://graph.facebook.com/v21.0"); `fetch` is injectable for tests; each request, body included,
 * is abandoned after `timeoutMs` (default 10 s) and reported as `retry_later`.
 */
export function createGraphClient(
  options: { baseUrl: string; fetch?: typeof fetch; timeoutMs?: number },
): GraphClient {
  const baseUrl = options.baseUrl.replace(/\/+$/, "");
  const fetchImpl = options.fetch ?? fetch;
  const timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;

  async function request(
    method: "GET" | "POST",
    path: string,
    token: string,
    query: Record<string, string> = {},
    body?: unknown,
  ): Promise<{ status: number; data: Record<string, unknown> }> {
    const url = new URL(baseUrl + path);
    for (const [name, value] of Object.entries(query)) url.searchParams.set(name, value);
    const headers: Record<string, string> = { Authorization: `Bearer ${token}`, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let status: number;
    let text: string;
    try {
      const response = await fetchImpl(url, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        signal: AbortSignal.timeout(timeoutMs),
      });
      status = response.status;
      text = await response.text();
    } catch (cause) {
      // No (complete) answer: connection refused or reset, DNS failure, or our timeout. The request may or
      // may not have reached Meta; Graph reads are safe to repeat and the caller decides for sends.
      const timedOut = cause instanceof DOMException && cause.name === "TimeoutError";
      throw new GraphApiError(
        timedOut
          ? `Graph API did not answer ${method} ${path} within ${timeoutMs} ms`
          : `Graph API request ${method} ${path} failed: ${cause instanceof Error ? cause.message : cause}`,
        { status: 0, action: "retry_later", type: timedOut ? "Timeout" : "NetworkError", cause },
      );
    }
    let parsed: unknown = null;
    try {
      parsed = parseGraphJson(text);
    } catch {
      // Not JSON (a proxy's HTML error page, say): classified by status below.
    }
    const data = record(parsed);
    if (status < 200 || status >= 300 || data === null || "error" in data) {
      if (status >= 200 && status < 300 && data === null) throw unexpectedResponse(status, "non-JSON");
      throw classifyGraphError(status, parsed);
    }
    return { status, data };
  }

  async function sendWhatsApp(
    { phoneNumberId, accessToken, to, callbackData }: WhatsAppAddress,
    message: Record<string, unknown>,
  ): Promise<WhatsAppSendResult> {
    if (callbackData !== undefined && callbackData.length > CALLBACK_DATA_MAX) {
      throw invalidRequest(`callbackData is longer than ${CALLBACK_DATA_MAX} characters`);
    }
    const { status, data } = await request(
      "POST",
      `/${objectId(phoneNumberId, "Phone number id")}/messages`,
      accessToken,
      {},
      {
        messaging_product: "whatsapp",
        recipient_type: "individual",
        to: whatsAppRecipient(to),
        ...(callbackData === undefined ? {} : { biz_opaque_callback_data: callbackData }),
        ...message,
      },
    );
    const sent = Array.isArray(data.messages) ? record(data.messages[0]) : null;
    const contact = Array.isArray(data.contacts) ? record(data.contacts[0]) : null;
    const messageId = optionalString(sent?.id);
    if (!messageId) throw unexpectedResponse(status, "messages");
    const waId = optionalString(contact?.wa_id);
    return waId ? { messageId, waId } : { messageId };
  }

  return {
    async fetchLead(leadgenId, pageAccessToken) {
      const { status, data } = await request(
        "GET",
        `/${objectId(leadgenId, "Leadgen id")}`,
        pageAccessToken,
        { fields: LEAD_FIELDS },
      );
      return toLead(data, status);
    },

    async listFormLeads(formId, pageAccessToken, listOptions = {}) {
      const query: Record<string, string> = {
        fields: LEAD_FIELDS,
        limit: String(listOptions.limit ?? DEFAULT_PAGE_SIZE),
      };
      if (listOptions.since) {
        query.filtering = JSON.stringify([{
          field: "time_created",
          operator: "GREATER_THAN",
          value: Math.floor(listOptions.since.getTime() / 1000),
        }]);
      }
      const path = `/${objectId(formId, "Form id")}/leads`;
      const leads: GraphLead[] = [];
      const seenCursors = new Set<string>();
      while (true) {
        const { status, data } = await request("GET", path, pageAccessToken, query);
        if (!Array.isArray(data.data)) throw unexpectedResponse(status, "leads");
        for (const item of data.data) leads.push(toLead(item, status));
        const paging = record(data.paging);
        const after = optionalString(record(paging?.cursors)?.after);
        // Graph omits `next` on the last page. The cursor is replayed against our own base URL rather than
        // fetching `next` itself, which points at Graph's host and may carry a token in its query.
        if (typeof paging?.next !== "string" || !after || seenCursors.has(after)) return leads;
        seenCursors.add(after);
        query.after = after;
      }
    },

    async debugToken(inputToken, appAccessToken) {
      const { status, data } = await request("GET", "/debug_token", appAccessToken, {
        input_token: inputToken,
      });
      const info = record(data.data);
      if (!info || typeof info.is_valid !== "boolean") throw unexpectedResponse(status, "debug_token");
      // Graph reports "never expires" as expires_at 0.
      const expiresAt = integerOrNull(info.expires_at);
      const result: TokenDebugInfo = {
        is_valid: info.is_valid,
        expires_at: expiresAt ? new Date(expiresAt * 1000) : null,
        scopes: Array.isArray(info.scopes)
          ? info.scopes.filter((s): s is string => typeof s === "string")
          : [],
      };
      const type = optionalString(info.type);
      const appId = optionalString(info.app_id);
      const error = record(info.error);
      if (type) result.type = type;
      if (appId) result.app_id = appId;
      if (error) {
        result.error = {
          code: integerOrNull(error.code),
          subcode: integerOrNull(error.subcode),
          message: typeof error.message === "string" ? error.message : "Invalid token",
        };
      }
      return result;
    },

    sendWhatsAppTemplate({ templateName, languageCode, components, ...address }) {
      const template: Record<string, unknown> = { name: templateName, language: { code: languageCode } };
      if (components?.length) template.components = components;
      return sendWhatsApp(address, { type: "template", template });
    },

    sendWhatsAppText({ body, previewUrl, ...address }) {
      return sendWhatsApp(address, { type: "text", text: { preview_url: previewUrl ?? false, body } });
    },
  };
}

/** A lead's answers mapped onto the platform's lead fields; everything else is kept in `custom`. */
export interface MappedLeadFields {
  full_name?: string;
  email?: string;
  /** As the person typed it; normalising to E.164 is the lead module's job. */
  phone?: string;
  custom: Record<string, string>;
}

/**
 * Maps Lead Ads `field_data` onto lead fields. Meta's standard questions are recognised by name
 * (`full_name`, else `first_name` + `last_name`; `email`, else `work_email`; `phone_number`, else
 * `work_phone_number`); every other answer, standard (`city`, `zip_code`, `company_name`, ...) or custom,
 * lands in `custom` under its question name, so nothing the person entered is lost. Multi-value answers
 * are joined with ", "; empty answers are dropped.
 */
export function fieldDataToLead(fieldData: LeadFieldDatum[]): MappedLeadFields {
  const answers = new Map<string, string>();
  for (const { name, values } of fieldData) {
    const answer = values.map((value) => value.trim()).filter((value) => value !== "").join(", ");
    if (answer !== "") answers.set(name, answer);
  }
  const used = new Set<string>();
  const take = (...names: string[]) => {
    const name = names.find((candidate) => answers.has(candidate));
    if (name === undefined) return undefined;
    used.add(name);
    return answers.get(name);
  };

  const result: MappedLeadFields = { custom: {} };
  const fullName = take("full_name") ??
    ([take("first_name"), take("last_name")].filter(Boolean).join(" ") || undefined);
  const email = take("email", "work_email");
  const phone = take("phone_number", "work_phone_number");
  if (fullName) result.full_name = fullName;
  if (email) result.email = email;
  if (phone) result.phone = phone;
  for (const [name, answer] of answers) {
    if (!used.has(name)) result.custom[name] = answer;
  }
  return result;
}
