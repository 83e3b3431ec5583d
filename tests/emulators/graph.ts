/**
 * A strict local emulator of the Meta Graph API (Lead Ads reads, debug_token) and the WhatsApp Cloud API
 * (POST /{phone-number-id}/messages), plus Meta's side of the webhooks (signed deliveries, payload builders).
 *
 * It checks requests the way Meta does (token present, valid, unexpired and allowed to see the object;
 * required message fields; registered templates and parameter counts; the 24-hour customer-service window)
 * and answers with the documented shapes and error bodies, so the real client is exercised unchanged.
 * Everything it receives is recorded; faults and delays can be injected per path.
 *
 *   const graph = await startGraphEmulator();
 *   const page = graph.addPage();
 *   const lead = graph.addLead(graph.addForm(page.id).id, { fieldData: [{ name: "email", values: ["a@b.c"] }] });
 *   const client = createGraphClient({ baseUrl: graph.url });
 *   ...
 *   await graph.stop();
 */
import { metaJson, signMetaBody } from "../../functions/_shared/integrations/meta_signature.ts";

/** An error response as Graph sends it. */
export interface GraphErrorResponse {
  status: number;
  body: {
    error: {
      message: string;
      type: string;
      code: number;
      error_subcode?: number;
      error_data?: { messaging_product: "whatsapp"; details: string };
      is_transient?: boolean;
      fbtrace_id: string;
    };
  };
}

const ALPHANUMERIC = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

function randomFrom(alphabet: string, length: number): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return Array.from(bytes, (byte) => alphabet[byte % alphabet.length]).join("");
}

/** A decimal id of `length` digits; 17 digits are always above 2^53, like real lead and form ids. */
function graphId(length: number): string {
  return randomFrom("123456789", 1) + randomFrom("0123456789", length - 1);
}

function graphError(
  status: number,
  code: number,
  message: string,
  extra: { subcode?: number; details?: string; transient?: boolean; type?: string } = {},
): GraphErrorResponse {
  const error: GraphErrorResponse["body"]["error"] = {
    message,
    type: extra.type ?? "OAuthException",
    code,
    fbtrace_id: randomFrom(ALPHANUMERIC, 23),
  };
  if (extra.subcode !== undefined) error.error_subcode = extra.subcode;
  if (extra.details !== undefined) {
    error.error_data = { messaging_product: "whatsapp", details: extra.details };
  }
  if (extra.transient) error.is_transient = true;
  return { status, body: { error } };
}

/**
 * Documented Graph and WhatsApp Cloud API errors, for `failNext` and for the emulator's own checks.
 * Token errors are 400 on Graph reads and 401 on the Cloud API; pass the status to match the endpoint.
 */
export const graphErrors = {
  /** 104: the request carried no access token. */
  tokenMissing: (status = 400) =>
    graphError(status, 104, "An access token is required to request this resource."),
  /** 190: the token is not one Meta issued (or was revoked). */
  tokenInvalid: (status = 400) =>
    graphError(status, 190, "Invalid OAuth access token - Cannot parse access token"),
  /** 190/463: the token expired. */
  tokenExpired: (status = 400, expiredAt = new Date(Date.now() - 3_600_000), now = new Date()) =>
    graphError(
      status,
      190,
      `Error validating access token: Session has expired on ${expiredAt.toUTCString()}. ` +
        `The current time is ${now.toUTCString()}.`,
      { subcode: 463 },
    ),
  /** 4: the app's request limit. */
  appRateLimit: () => graphError(400, 4, "(#4) Application request limit reached", { transient: true }),
  /** 17: the user's request limit. */
  userRateLimit: () => graphError(400, 17, "(#17) User request limit reached", { transient: true }),
  /** 613: too many calls within an hour. */
  callsPerHourLimit: () =>
    graphError(400, 613, "(#613) Calls to this api have exceeded the rate limit.", { transient: true }),
  /** 80007: the WhatsApp Business Account's rate limit. */
  wabaRateLimit: () =>
    graphError(
      400,
      80007,
      "(#80007) There have been too many calls to this WhatsApp Business account. Wait a bit and try again.",
      { transient: true },
    ),
  /** 130429: Cloud API message throughput reached. */
  throughputLimit: () =>
    graphError(400, 130429, "(#130429) Rate limit hit", {
      details: "Cloud API message throughput has been reached.",
    }),
  /** 131047: free-form message outside the 24-hour customer-service window. */
  reengagementRequired: () =>
    graphError(400, 131047, "(#131047) Re-engagement message", {
      details: "Message failed to send because more than 24 hours have passed since the customer last " +
        "replied to this number.",
    }),
  /** 131026: the recipient cannot receive WhatsApp messages. */
  undeliverable: () =>
    graphError(400, 131026, "(#131026) Message Undeliverable.", {
      details: "Message failed to send because the recipient's phone number is not on WhatsApp, has not " +
        "accepted the latest terms, or is using an old WhatsApp version.",
    }),
  /** 132001: no such template in that language. */
  templateNotFound: (name = "unknown", language = "en_US") =>
    graphError(404, 132001, "(#132001) Template name does not exist in the translation", {
      details: `template name (${name}) does not exist in ${language}`,
    }),
  /** 132000: the template's parameters do not match its placeholders. */
  templateParameterMismatch: (expected: number, got: number) =>
    graphError(400, 132000, "(#132000) Number of parameters does not match the expected number of params", {
      details: `body: number of localizable_params (${got}) does not match the expected number of params ` +
        `(${expected})`,
    }),
  /** 100: an invalid or missing parameter. */
  invalidParameter: (message: string, details?: string) =>
    graphError(400, 100, message.startsWith("(#100)") ? message : `(#100) ${message}`, { details }),
  /** 100/33: the object does not exist or this token may not see it. */
  unsupportedRequest: (method: string, id: string) =>
    graphError(
      400,
      100,
      `Unsupported ${method.toLowerCase()} request. Object with ID '${id}' does not exist, cannot be loaded ` +
        "due to missing permissions, or does not support this operation. Please read the Graph API " +
        "documentation at https://developers.facebook.com/docs/graph-api",
      { subcode: 33, type: "GraphMethodException" },
    ),
  /** 2 with HTTP 500: Meta's temporary server error. */
  serverError: () =>
    graphError(500, 2, "An unexpected error has occurred. Please retry your request later.", {
      transient: true,
    }),
};

/** An access token the emulator knows. `expiresAt` null means it never expires (long-lived page tokens). */
export interface EmulatedToken {
  token: string;
  type: "PAGE" | "SYSTEM_USER" | "APP";
  /** The page id, phone number id or app id the token belongs to. */
  subjectId: string;
  scopes: string[];
  expiresAt: Date | null;
}

export interface EmulatedPage {
  id: string;
  name: string;
  accessToken: string;
}

export interface EmulatedForm {
  id: string;
  pageId: string;
  name: string;
}

export interface EmulatedLead {
  id: string;
  formId: string;
  pageId: string;
  createdTime: Date;
  fieldData: { name: string; values: string[] }[];
  adId?: string;
  campaignId?: string;
  platform: "fb" | "ig";
  isOrganic: boolean;
}

export interface EmulatedPhoneNumber {
  id: string;
  accessToken: string;
  /** Digits, as WhatsApp shows them in webhook metadata. */
  displayPhoneNumber: string;
  wabaId: string;
}

export interface EmulatedTemplate {
  name: string;
  language: string;
  /** How many {{n}} placeholders the body has; sends must supply exactly that many body parameters. */
  bodyParameters: number;
}

/** One request as the emulator received it. `path` is relative to the version ("/123/messages"). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  /** The parsed JSON body, or null when there was none or it was not JSON. */
  body: unknown;
  rawBody: string;
  at: Date;
}

/** A WhatsApp message the emulator accepted. */
export interface SentMessage {
  id: string;
  phoneNumberId: string;
  /** `to` exactly as sent. */
  to: string;
  waId: string;
  type: "text" | "template";
  text?: string;
  template?: { name: string; language: string };
  /** biz_opaque_callback_data: echoed in the message's status webhooks. */
  callbackData?: string;
  payload: Record<string, unknown>;
  at: Date;
}

/** Everything the emulator knows and has seen; tests may read and change it directly. */
export interface GraphEmulatorState {
  tokens: Map<string, EmulatedToken>;
  pages: Map<string, EmulatedPage>;
  forms: Map<string, EmulatedForm>;
  leads: Map<string, EmulatedLead>;
  phoneNumbers: Map<string, EmulatedPhoneNumber>;
  templates: EmulatedTemplate[];
  /** WhatsApp ids that cannot receive messages (131026). */
  unreachable: Set<string>;
  /** Last inbound message per `${phoneNumberId}:${waId}`; free-form replies are allowed for 24 h after it. */
  lastInbound: Map<string, Date>;
  requests: RecordedRequest[];
  messages: SentMessage[];
}

/** Which requests a fault or delay applies to; `pathPattern` is tested against the versionless path. */
export interface RequestMatcher {
  method?: string;
  pathPattern: RegExp;
}

/** How `deliver` signs: correctly, with the wrong secret, or not at all. */
export type SignatureMode = "valid" | "forged" | "missing";

export interface GraphEmulatorOptions {
  /** Graph API version in the URL (default "v21.0"). */
  version?: string;
  appId?: string;
  /** The app secret: part of the app access token and the default key for `deliver` signatures. */
  appSecret?: string;
  /** The emulator's clock (token expiry, the customer-service window, default created times). */
  now?: () => Date;
}

export interface GraphEmulator {
  /** Base URL including the version, e.g. "http://127.0.0.1:41234/v21.0" (config `urls.graph_api`). */
  url: string;
  appId: string;
  appSecret: string;
  /** `<app-id>|<app-secret>`, accepted by debug_token. */
  appAccessToken: string;
  state: GraphEmulatorState;
  /** Registers a Facebook page with a (never-expiring, unless `expired`) page access token. */
  addPage(options?: { id?: string; name?: string; accessToken?: string; expired?: boolean }): EmulatedPage;
  /** Registers a lead form on a page. */
  addForm(pageId: string, options?: { id?: string; name?: string }): EmulatedForm;
  /** Registers a lead submitted on a form (defaults: 17-digit id, created now, from a Facebook ad). */
  addLead(
    formId: string,
    options?: {
      id?: string;
      fieldData?: { name: string; values: string[] }[];
      createdTime?: Date;
      adId?: string;
      campaignId?: string;
      platform?: "fb" | "ig";
      isOrganic?: boolean;
    },
  ): EmulatedLead;
  /** Registers a WhatsApp business phone number and the system-user token allowed to send from it. */
  addPhoneNumber(
    options?: { id?: string; accessToken?: string; displayPhoneNumber?: string; wabaId?: string },
  ): EmulatedPhoneNumber;
  /** Registers an approved message template. */
  addTemplate(name: string, options?: { language?: string; bodyParameters?: number }): EmulatedTemplate;
  /** Makes a known token expired from now on (error 190/463). */
  expireToken(token: string): void;
  /** Records an inbound message from `waId`, opening the 24-hour window for free-form replies. */
  openServiceWindow(phoneNumberId: string, waId: string, at?: Date): void;
  /** Makes a recipient undeliverable (error 131026). */
  markUnreachable(waId: string): void;
  /**
   * Answers the next `times` matching requests with `error`: "network" resets the connection before the
   * request is handled, "lost_reply" handles it (a message is sent) and then resets the connection.
   */
  failNext(matcher: RequestMatcher, error: Fault, times?: number): void;
  /**
   * Holds the next `times` matching requests (all by default) for `ms` before handling them, for client
   * timeouts. A request the client gave up on is still handled afterwards, as Meta would: a timed-out send
   * may have been delivered.
   */
  delay(matcher: RequestMatcher, ms: number, times?: number): void;
  /** Drops pending faults and delays. */
  clearFaults(): void;
  /** `deliver` with the emulator's app secret by default; inbound WhatsApp messages also open the window. */
  deliver(
    targetUrl: string,
    payload: unknown,
    options?: { appSecret?: string; signature?: SignatureMode },
  ): Promise<Response>;
  stop(): Promise<void>;
}

const TWENTY_FOUR_HOURS_MS = 24 * 3600 * 1000;
const TEXT_BODY_MAX = 4096;
/** Longest biz_opaque_callback_data the Cloud API accepts. */
const CALLBACK_DATA_MAX = 512;
const LEAD_FIELDS = new Set([
  "id",
  "created_time",
  "field_data",
  "form_id",
  "ad_id",
  "ad_name",
  "adset_id",
  "adset_name",
  "campaign_id",
  "campaign_name",
  "platform",
  "is_organic",
]);
// What Graph returns for a lead when no `fields` are asked for.
const DEFAULT_LEAD_FIELDS = ["created_time", "id", "field_data"];
const DEFAULT_PAGE_SIZE = 25;
const MAX_PAGE_SIZE = 1000;
const PAGE_SCOPES = ["pages_show_list", "pages_read_engagement", "pages_manage_metadata", "leads_retrieval"];
const WHATSAPP_SCOPES = ["whatsapp_business_messaging", "whatsapp_business_management"];

/** Graph's timestamp format: "2024-05-01T10:00:00+0000". */
function graphTime(date: Date): string {
  return date.toISOString().replace(/\.\d{3}Z$/, "+0000");
}

function unixSeconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json; charset=UTF-8", ...headers },
  });
}

function errorResponse(error: GraphErrorResponse): Response {
  const headers: Record<string, string> = { "x-fb-trace-id": error.body.error.fbtrace_id };
  // Graph names the failed token in WWW-Authenticate, as OAuth 2 bearer-token servers do.
  if (error.body.error.code === 190) {
    headers["WWW-Authenticate"] = `OAuth "Facebook Platform" "invalid_token" "${error.body.error.message}"`;
  }
  return json(error.status, error.body, headers);
}

/** An injected failure: a Graph error answer, or a connection reset before or after handling. */
type Fault = GraphErrorResponse | "network" | "lost_reply";

const EMULATED_RESET = new Error("Emulated network failure");

/** A response whose body fails after the headers, which the client sees as a reset connection. */
function resetConnection(): Response {
  return new Response(
    new ReadableStream({
      start(controller) {
        controller.error(EMULATED_RESET);
      },
    }),
  );
}

function record(value: unknown): Record<string, unknown> | null {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? value as Record<string, unknown>
    : null;
}

function matches(matcher: RequestMatcher, method: string, path: string): boolean {
  return (matcher.method === undefined || matcher.method.toUpperCase() === method) &&
    matcher.pathPattern.test(path);
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener("abort", () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}

/**
 * Starts the emulator on 127.0.0.1 and a free port. Call `stop()` when done.
 */
export function startGraphEmulator(options: GraphEmulatorOptions = {}): Promise<GraphEmulator> {
  const version = options.version ?? "v21.0";
  const appId = options.appId ?? graphId(16);
  const appSecret = options.appSecret ?? randomFrom("0123456789abcdef", 32);
  const appAccessToken = `${appId}|${appSecret}`;
  const now = options.now ?? (() => new Date());
  const stopping = new AbortController();
  const faults: { matcher: RequestMatcher; error: Fault; remaining: number }[] = [];
  const delays: { matcher: RequestMatcher; ms: number; remaining: number }[] = [];

  const state: GraphEmulatorState = {
    tokens: new Map([[appAccessToken, {
      token: appAccessToken,
      type: "APP",
      subjectId: appId,
      scopes: [],
      expiresAt: null,
    }]]),
    pages: new Map(),
    forms: new Map(),
    leads: new Map(),
    phoneNumbers: new Map(),
    templates: [],
    unreachable: new Set(),
    lastInbound: new Map(),
    requests: [],
    messages: [],
  };

  function addToken(token: string, type: EmulatedToken["type"], subjectId: string, scopes: string[]) {
    const existing = state.tokens.get(token);
    // One system-user token may serve several phone numbers.
    if (existing) return existing;
    const entry: EmulatedToken = { token, type, subjectId, scopes, expiresAt: null };
    state.tokens.set(token, entry);
    return entry;
  }

  function newToken(): string {
    return "EAA" + randomFrom(ALPHANUMERIC, 120);
  }

  function isExpired(token: EmulatedToken): boolean {
    return token.expiresAt !== null && token.expiresAt.getTime() <= now().getTime();
  }

  /** Meta takes the token from `Authorization: Bearer|OAuth` or the `access_token` parameter. */
  function authenticate(request: Request, url: URL, status: number): EmulatedToken | GraphErrorResponse {
    const header = request.headers.get("authorization");
    const fromHeader = header?.match(/^(?:Bearer|OAuth)\s+(\S+)$/i)?.[1];
    const token = fromHeader ?? url.searchParams.get("access_token");
    if (!token) return graphErrors.tokenMissing(status);
    const known = state.tokens.get(token);
    if (!known) return graphErrors.tokenInvalid(status);
    if (isExpired(known)) return graphErrors.tokenExpired(status, known.expiresAt!, now());
    return known;
  }

  function pageOf(id: string): string | undefined {
    return state.pages.get(id)?.id ?? state.forms.get(id)?.pageId ?? state.leads.get(id)?.pageId;
  }

  function renderLead(lead: EmulatedLead, fields: string[]): Record<string, unknown> {
    const values: Record<string, unknown> = {
      id: lead.id,
      created_time: graphTime(lead.createdTime),
      field_data: lead.fieldData,
      form_id: lead.formId,
      ad_id: lead.isOrganic ? undefined : lead.adId,
      campaign_id: lead.isOrganic ? undefined : lead.campaignId,
      platform: lead.platform,
      is_organic: lead.isOrganic,
    };
    // Graph leaves out fields that have no value rather than sending null.
    return Object.fromEntries(fields.filter((f) => values[f] !== undefined).map((f) => [f, values[f]]));
  }

  function leadFields(url: URL): string[] | GraphErrorResponse {
    const requested = url.searchParams.get("fields");
    if (requested === null) return DEFAULT_LEAD_FIELDS;
    const fields = requested.split(",").map((f) => f.trim()).filter(Boolean);
    const unknown = fields.find((f) => !LEAD_FIELDS.has(f));
    if (unknown) {
      return graphErrors.invalidParameter(
        `Tried accessing nonexisting field (${unknown}) on node type (Lead)`,
      );
    }
    return fields;
  }

  function getNode(id: string, url: URL, token: EmulatedToken): Response {
    const lead = state.leads.get(id);
    const page = pageOf(id);
    if (page !== undefined) {
      if (token.type !== "PAGE" || token.subjectId !== page) {
        return errorResponse(graphErrors.unsupportedRequest("GET", id));
      }
      if (lead) {
        const fields = leadFields(url);
        return Array.isArray(fields) ? json(200, renderLead(lead, fields)) : errorResponse(fields);
      }
      const form = state.forms.get(id);
      if (form) return json(200, { id: form.id, name: form.name, status: "ACTIVE" });
      return json(200, { id, name: state.pages.get(id)!.name });
    }
    const phone = state.phoneNumbers.get(id);
    if (phone && phone.accessToken === token.token) {
      return json(200, {
        verified_name: "Lead Automation Test",
        display_phone_number: phone.displayPhoneNumber,
        id: phone.id,
        quality_rating: "GREEN",
      });
    }
    return errorResponse(graphErrors.unsupportedRequest("GET", id));
  }

  function timeFilter(url: URL): ((lead: EmulatedLead) => boolean) | GraphErrorResponse {
    const raw = url.searchParams.get("filtering");
    if (raw === null) return () => true;
    let filters: unknown;
    try {
      filters = JSON.parse(raw);
    } catch {
      return graphErrors.invalidParameter("param filtering must be a JSON array");
    }
    if (!Array.isArray(filters)) return graphErrors.invalidParameter("param filtering must be a JSON array");
    const checks: ((lead: EmulatedLead) => boolean)[] = [];
    for (const filter of filters) {
      const entry = record(filter);
      const value = Number(entry?.value);
      if (entry?.field !== "time_created" || !Number.isFinite(value)) {
        return graphErrors.invalidParameter(
          `Filtering field ${JSON.stringify(entry?.field)} is not supported`,
          "Leads can be filtered by time_created with a unix timestamp value",
        );
      }
      const operators: Record<string, (seconds: number) => boolean> = {
        GREATER_THAN: (seconds) => seconds > value,
        LESS_THAN: (seconds) => seconds < value,
      };
      const compare = operators[String(entry.operator)];
      if (!compare) {
        return graphErrors.invalidParameter(
          `Filtering operator ${JSON.stringify(entry.operator)} is not supported`,
        );
      }
      checks.push((lead) => compare(unixSeconds(lead.createdTime)));
    }
    return (lead) => checks.every((check) => check(lead));
  }

  function listLeads(formId: string, url: URL, token: EmulatedToken): Response {
    const form = state.forms.get(formId);
    if (!form || token.type !== "PAGE" || token.subjectId !== form.pageId) {
      return errorResponse(graphErrors.unsupportedRequest("GET", formId));
    }
    const fields = leadFields(url);
    if (!Array.isArray(fields)) return errorResponse(fields);
    const filter = timeFilter(url);
    if (typeof filter !== "function") return errorResponse(filter);
    const limitParam = url.searchParams.get("limit");
    const limit = limitParam === null ? DEFAULT_PAGE_SIZE : Number(limitParam);
    if (!Number.isInteger(limit) || limit < 1) {
      return errorResponse(graphErrors.invalidParameter(`param limit must be a positive integer`));
    }
    // Newest first, as Graph lists leads; the cursor names the last lead returned, so leads arriving
    // between page requests neither repeat nor shift later pages.
    const all = [...state.leads.values()]
      .filter((lead) => lead.formId === formId && filter(lead))
      .sort((a, b) => b.createdTime.getTime() - a.createdTime.getTime() || b.id.localeCompare(a.id));
    const after = url.searchParams.get("after");
    let start = 0;
    if (after !== null) {
      let afterId: string;
      try {
        afterId = atob(after);
      } catch {
        return errorResponse(graphErrors.invalidParameter("Invalid cursor"));
      }
      const index = all.findIndex((lead) => lead.id === afterId);
      if (index === -1) return errorResponse(graphErrors.invalidParameter("Invalid cursor"));
      start = index + 1;
    }
    const pageLeads = all.slice(start, start + Math.min(limit, MAX_PAGE_SIZE));
    const body: Record<string, unknown> = { data: pageLeads.map((lead) => renderLead(lead, fields)) };
    if (pageLeads.length > 0) {
      const paging: Record<string, unknown> = {
        cursors: { before: btoa(pageLeads[0].id), after: btoa(pageLeads[pageLeads.length - 1].id) },
      };
      if (start + pageLeads.length < all.length) {
        const next = new URL(url);
        next.searchParams.set("after", btoa(pageLeads[pageLeads.length - 1].id));
        paging.next = next.toString();
      }
      body.paging = paging;
    }
    return json(200, body);
  }

  function debugToken(url: URL, token: EmulatedToken): Response {
    if (token.type !== "APP") {
      return errorResponse(graphErrors.invalidParameter(
        "You must provide an app access token, or a user access token that is an owner or developer of the app",
      ));
    }
    const input = url.searchParams.get("input_token");
    if (!input) return errorResponse(graphErrors.invalidParameter("The parameter input_token is required"));
    const inspected = state.tokens.get(input);
    if (!inspected) {
      return json(200, {
        data: {
          error: { code: 190, message: "Invalid OAuth access token - Cannot parse access token" },
          is_valid: false,
          scopes: [],
        },
      });
    }
    const expired = isExpired(inspected);
    const data: Record<string, unknown> = {
      app_id: appId,
      type: inspected.type,
      application: "Lead Automation Platform",
      data_access_expires_at: unixSeconds(now()) + 90 * 24 * 3600,
      expires_at: inspected.expiresAt ? unixSeconds(inspected.expiresAt) : 0,
      is_valid: !expired,
      scopes: inspected.scopes,
      granular_scopes: inspected.scopes.map((scope) => ({ scope })),
    };
    if (inspected.type === "PAGE") data.profile_id = inspected.subjectId;
    if (expired) {
      data.error = {
        code: 190,
        message: graphErrors.tokenExpired(400, inspected.expiresAt!, now()).body.error.message,
        subcode: 463,
      };
    }
    return json(200, { data });
  }

  function sendMessage(phoneNumberId: string, token: EmulatedToken, body: unknown): Response {
    const phone = state.phoneNumbers.get(phoneNumberId);
    if (!phone || phone.accessToken !== token.token) {
      return errorResponse(graphErrors.unsupportedRequest("POST", phoneNumberId));
    }
    const message = record(body);
    const invalid = (text: string, details?: string) =>
      errorResponse(graphErrors.invalidParameter(text, details));
    // Meta reports an unparseable or non-JSON body as the first required parameter missing.
    if (!message || message.messaging_product === undefined) {
      return invalid("The parameter messaging_product is required.");
    }
    if (message.messaging_product !== "whatsapp") {
      return invalid(
        `Param messaging_product must be one of {WHATSAPP} - got "${message.messaging_product}".`,
      );
    }
    if (message.recipient_type !== undefined && message.recipient_type !== "individual") {
      return invalid(`Param recipient_type must be one of {INDIVIDUAL} - got "${message.recipient_type}".`);
    }
    if (message.to === undefined) return invalid("The parameter to is required.");
    const to = String(message.to);
    const waId = to.replace(/^\+/, "");
    if (!/^[1-9]\d{6,14}$/.test(waId)) {
      return invalid("Invalid parameter", `Parameter to is not a valid phone number: "${to}"`);
    }
    const callbackData = message.biz_opaque_callback_data;
    if (
      callbackData !== undefined &&
      (typeof callbackData !== "string" || callbackData.length > CALLBACK_DATA_MAX)
    ) {
      return invalid(`Param biz_opaque_callback_data must be at most ${CALLBACK_DATA_MAX} characters long.`);
    }
    const type = message.type ?? "text";
    const sent: SentMessage = {
      id: "wamid." + btoa(randomFrom(ALPHANUMERIC, 36)),
      phoneNumberId,
      to,
      waId,
      type: "text",
      payload: message,
      at: now(),
    };
    if (callbackData !== undefined) sent.callbackData = callbackData;
    if (type === "text") {
      const text = record(message.text)?.body;
      if (typeof text !== "string" || text === "") return invalid("The parameter text['body'] is required.");
      if (text.length > TEXT_BODY_MAX) {
        return invalid(`Param text['body'] must be at most ${TEXT_BODY_MAX} characters long.`);
      }
      sent.text = text;
    } else if (type === "template") {
      const template = record(message.template);
      const name = template?.name;
      const language = record(template?.language)?.code;
      if (typeof name !== "string" || name === "") {
        return invalid("The parameter template['name'] is required.");
      }
      if (typeof language !== "string" || language === "") {
        return invalid("The parameter template['language']['code'] is required.");
      }
      const registered = state.templates.find((t) => t.name === name && t.language === language);
      if (!registered) return errorResponse(graphErrors.templateNotFound(name, language));
      const components = Array.isArray(template?.components) ? template.components : [];
      const bodyParameters = components
        .map(record)
        .filter((component) => component?.type === "body")
        .reduce(
          (count, component) =>
            count + (Array.isArray(component?.parameters) ? component.parameters.length : 0),
          0,
        );
      if (bodyParameters !== registered.bodyParameters) {
        return errorResponse(
          graphErrors.templateParameterMismatch(registered.bodyParameters, bodyParameters),
        );
      }
      sent.type = "template";
      sent.template = { name, language };
    } else {
      return invalid(`Param type must be one of {TEMPLATE, TEXT} - got "${type}".`);
    }
    if (state.unreachable.has(waId)) return errorResponse(graphErrors.undeliverable());
    if (sent.type === "text") {
      const last = state.lastInbound.get(`${phoneNumberId}:${waId}`);
      if (!last || now().getTime() - last.getTime() >= TWENTY_FOUR_HOURS_MS) {
        return errorResponse(graphErrors.reengagementRequired());
      }
    }
    state.messages.push(sent);
    const accepted: Record<string, string> = { id: sent.id };
    if (sent.type === "template") accepted.message_status = "accepted";
    return json(200, {
      messaging_product: "whatsapp",
      contacts: [{ input: to, wa_id: waId }],
      messages: [accepted],
    });
  }

  async function handle(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const rawBody = request.method === "GET" ? "" : await request.text();
    const prefix = `/${version}`;
    const path = url.pathname.startsWith(prefix + "/") ? url.pathname.slice(prefix.length) : url.pathname;
    let body: unknown = null;
    if ((request.headers.get("content-type") ?? "").includes("application/json")) {
      try {
        body = JSON.parse(rawBody);
      } catch {
        // Recorded as null; the endpoint reports the missing parameters as Meta would.
      }
    }
    state.requests.push({
      method: request.method,
      path,
      query: Object.fromEntries(url.searchParams),
      headers: Object.fromEntries(request.headers),
      body,
      rawBody,
      at: now(),
    });

    const delayRule = delays.find((rule) =>
      rule.remaining > 0 && matches(rule.matcher, request.method, path)
    );
    if (delayRule) {
      delayRule.remaining--;
      await sleep(delayRule.ms, stopping.signal);
    }
    const fault = faults.find((rule) => rule.remaining > 0 && matches(rule.matcher, request.method, path));
    if (fault) {
      fault.remaining--;
      if (fault.error === "network") return resetConnection();
      if (fault.error !== "lost_reply") return errorResponse(fault.error);
    }
    const response = await route(request, url, path, body);
    // The request took effect; only its answer is lost on the way back.
    return fault?.error === "lost_reply" ? resetConnection() : response;
  }

  function route(request: Request, url: URL, path: string, body: unknown): Response | Promise<Response> {
    if (!url.pathname.startsWith(`/${version}/`)) {
      return errorResponse(graphError(400, 2500, `Unknown path components: ${url.pathname}`));
    }
    const segments = path.split("/").filter(Boolean);
    const isMessages = request.method === "POST" && segments.length === 2 && segments[1] === "messages";
    // The Cloud API answers token errors with 401; the rest of Graph with 400.
    const token = authenticate(request, url, isMessages ? 401 : 400);
    if ("status" in token) return errorResponse(token);

    if (request.method === "GET" && path === "/debug_token") return debugToken(url, token);
    if (request.method === "GET" && segments.length === 1) return getNode(segments[0], url, token);
    if (request.method === "GET" && segments.length === 2 && segments[1] === "leads") {
      return listLeads(segments[0], url, token);
    }
    if (isMessages) return sendMessage(segments[0], token, body);
    if (segments.length === 0) return errorResponse(graphErrors.unsupportedRequest(request.method, "/"));
    if (segments.length === 1) {
      return errorResponse(graphErrors.unsupportedRequest(request.method, segments[0]));
    }
    return errorResponse(graphError(400, 2500, `Unknown path components: /${segments.slice(1).join("/")}`));
  }

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen() {},
    onError(error) {
      // An injected reset is expected; anything else is an emulator bug and must be visible.
      if (error !== EMULATED_RESET) console.error("Graph emulator failed:", error);
      return new Response(null, { status: 500 });
    },
  }, handle);
  let stopped: Promise<void> | undefined;

  const emulator: GraphEmulator = {
    url: `http://127.0.0.1:${server.addr.port}/${version}`,
    appId,
    appSecret,
    appAccessToken,
    state,

    addPage(pageOptions = {}) {
      const page: EmulatedPage = {
        id: pageOptions.id ?? graphId(15),
        name: pageOptions.name ?? "Test Page",
        accessToken: pageOptions.accessToken ?? newToken(),
      };
      state.pages.set(page.id, page);
      addToken(page.accessToken, "PAGE", page.id, PAGE_SCOPES);
      if (pageOptions.expired) emulator.expireToken(page.accessToken);
      return page;
    },

    addForm(pageId, formOptions = {}) {
      if (!state.pages.has(pageId)) throw new Error(`Page "${pageId}" is not registered`);
      const form: EmulatedForm = {
        id: formOptions.id ?? graphId(17),
        pageId,
        name: formOptions.name ?? "Lead form",
      };
      state.forms.set(form.id, form);
      return form;
    },

    addLead(formId, leadOptions = {}) {
      const form = state.forms.get(formId);
      if (!form) throw new Error(`Form "${formId}" is not registered`);
      const isOrganic = leadOptions.isOrganic ?? false;
      const lead: EmulatedLead = {
        id: leadOptions.id ?? graphId(17),
        formId,
        pageId: form.pageId,
        // Graph has second precision.
        createdTime: new Date(Math.floor((leadOptions.createdTime ?? now()).getTime() / 1000) * 1000),
        fieldData: leadOptions.fieldData ?? [],
        platform: leadOptions.platform ?? "fb",
        isOrganic,
      };
      if (!isOrganic) {
        lead.adId = leadOptions.adId ?? graphId(17);
        lead.campaignId = leadOptions.campaignId ?? graphId(17);
      }
      state.leads.set(lead.id, lead);
      return lead;
    },

    addPhoneNumber(phoneOptions = {}) {
      const phone: EmulatedPhoneNumber = {
        id: phoneOptions.id ?? graphId(15),
        accessToken: phoneOptions.accessToken ?? newToken(),
        displayPhoneNumber: phoneOptions.displayPhoneNumber ?? "1555" + randomFrom("0123456789", 7),
        wabaId: phoneOptions.wabaId ?? graphId(15),
      };
      state.phoneNumbers.set(phone.id, phone);
      addToken(phone.accessToken, "SYSTEM_USER", phone.wabaId, WHATSAPP_SCOPES);
      return phone;
    },

    addTemplate(name, templateOptions = {}) {
      const template: EmulatedTemplate = {
        name,
        language: templateOptions.language ?? "en_US",
        bodyParameters: templateOptions.bodyParameters ?? 0,
      };
      state.templates.push(template);
      return template;
    },

    expireToken(token) {
      const known = state.tokens.get(token);
      if (!known) throw new Error(`Token "${token.slice(0, 8)}…" is not registered`);
      known.expiresAt = new Date(now().getTime() - 1000);
    },

    openServiceWindow(phoneNumberId, waId, at = now()) {
      state.lastInbound.set(`${phoneNumberId}:${waId.replace(/^\+/, "")}`, at);
    },

    markUnreachable(waId) {
      state.unreachable.add(waId.replace(/^\+/, ""));
    },

    failNext(matcher, error, times = 1) {
      faults.push({ matcher, error, remaining: times });
    },

    delay(matcher, ms, times = Infinity) {
      delays.push({ matcher, ms, remaining: times });
    },

    clearFaults() {
      faults.length = 0;
      delays.length = 0;
    },

    deliver(targetUrl, payload, deliverOptions = {}) {
      for (const { phoneNumberId, from, at } of inboundMessagesIn(payload)) {
        emulator.openServiceWindow(phoneNumberId, from, at);
      }
      return deliver(targetUrl, payload, {
        appSecret: deliverOptions.appSecret ?? appSecret,
        signature: deliverOptions.signature,
      });
    },

    stop() {
      stopping.abort();
      stopped ??= server.shutdown();
      return stopped;
    },
  };
  return Promise.resolve(emulator);
}

/** The inbound WhatsApp messages in a webhook payload: who wrote to which number, and when. */
function inboundMessagesIn(payload: unknown): { phoneNumberId: string; from: string; at: Date }[] {
  const root = record(payload);
  if (root?.object !== "whatsapp_business_account" || !Array.isArray(root.entry)) return [];
  return root.entry.flatMap((entry) => {
    const changes = record(entry)?.changes;
    return (Array.isArray(changes) ? changes : []).flatMap((change) => {
      const value = record(record(change)?.value);
      const phoneNumberId = record(value?.metadata)?.phone_number_id;
      const messages = value?.messages;
      if (typeof phoneNumberId !== "string" || !Array.isArray(messages)) return [];
      return messages.flatMap((message) => {
        const from = record(message)?.from;
        const timestamp = Number(record(message)?.timestamp);
        if (typeof from !== "string") return [];
        return [{
          phoneNumberId,
          from,
          at: Number.isFinite(timestamp) ? new Date(timestamp * 1000) : new Date(),
        }];
      });
    });
  });
}

/**
 * POSTs a webhook to `targetUrl` the way Meta does: the bytes of `metaJson(payload)` (escaped unicode),
 * `Content-Type: application/json` and `X-Hub-Signature-256: sha256=<HMAC of those bytes with appSecret>`.
 * `signature: "forged"` signs with a different secret; "missing" sends no signature header.
 * The caller reads (or cancels) the returned response's body.
 */
export async function deliver(
  targetUrl: string,
  payload: unknown,
  options: { appSecret: string; signature?: SignatureMode },
): Promise<Response> {
  const bytes = new TextEncoder().encode(metaJson(payload));
  const headers: Record<string, string> = {
    "Content-Type": "application/json",
    "User-Agent": "facebookexternalua",
  };
  const mode = options.signature ?? "valid";
  if (mode !== "missing") {
    const secret = mode === "valid" ? options.appSecret : `forged-${options.appSecret}`;
    headers["X-Hub-Signature-256"] = await signMetaBody(bytes, secret);
  }
  return fetch(targetUrl, { method: "POST", headers, body: bytes });
}

/** A Meta webhook body: `{ object, entry: [{ id, time?, changes: [{ field, value }] }] }`. */
export interface MetaWebhookPayload {
  object: "page" | "whatsapp_business_account";
  entry: { id: string; time?: number; changes: { field: string; value: Record<string, unknown> }[] }[];
}

/** The `leadgen` change Meta sends to a page subscription when someone submits a lead form. */
export function leadgenChange(options: {
  pageId: string;
  formId: string;
  leadgenId: string;
  createdTime?: Date;
  adId?: string;
  adgroupId?: string;
}): MetaWebhookPayload {
  const created = unixSeconds(options.createdTime ?? new Date());
  const value: Record<string, unknown> = {
    form_id: options.formId,
    leadgen_id: options.leadgenId,
    created_time: created,
    page_id: options.pageId,
  };
  if (options.adId) value.ad_id = options.adId;
  if (options.adgroupId) value.adgroup_id = options.adgroupId;
  return {
    object: "page",
    entry: [{ id: options.pageId, time: created, changes: [{ field: "leadgen", value }] }],
  };
}

interface WhatsAppNumber {
  phoneNumberId: string;
  displayPhoneNumber?: string;
  wabaId?: string;
}

function whatsAppPayload(number: WhatsAppNumber, value: Record<string, unknown>): MetaWebhookPayload {
  return {
    object: "whatsapp_business_account",
    entry: [{
      id: number.wabaId ?? "102290129340398",
      changes: [{
        field: "messages",
        value: {
          messaging_product: "whatsapp",
          metadata: {
            display_phone_number: number.displayPhoneNumber ?? "15550783881",
            phone_number_id: number.phoneNumberId,
          },
          ...value,
        },
      }],
    }],
  };
}

/** A text message from `from` (digits) to the business number, as the `messages` webhook carries it. */
export function inboundMessage(
  options: WhatsAppNumber & {
    from: string;
    text?: string;
    name?: string;
    id?: string;
    timestamp?: Date;
  },
): MetaWebhookPayload {
  return whatsAppPayload(options, {
    contacts: [{ profile: { name: options.name ?? "Test Customer" }, wa_id: options.from }],
    messages: [{
      from: options.from,
      id: options.id ?? "wamid." + btoa(randomFrom(ALPHANUMERIC, 36)),
      timestamp: String(unixSeconds(options.timestamp ?? new Date())),
      type: "text",
      text: { body: options.text ?? "Hello" },
    }],
  });
}

/** A delivery status for a sent message; a "failed" status carries WhatsApp's error. */
export function statusUpdate(
  options: WhatsAppNumber & {
    messageId: string;
    recipientId: string;
    status: "sent" | "delivered" | "read" | "failed";
    timestamp?: Date;
    error?: { code: number; title: string; details?: string };
    /** The biz_opaque_callback_data the message was sent with, which its statuses echo. */
    callbackData?: string;
  },
): MetaWebhookPayload {
  const status: Record<string, unknown> = {
    id: options.messageId,
    status: options.status,
    timestamp: String(unixSeconds(options.timestamp ?? new Date())),
    recipient_id: options.recipientId,
  };
  if (options.callbackData !== undefined) status.biz_opaque_callback_data = options.callbackData;
  if (options.status === "failed") {
    const error = options.error ?? { code: 131026, title: "Message undeliverable" };
    status.errors = [{
      code: error.code,
      title: error.title,
      message: error.title,
      error_data: { details: error.details ?? error.title },
      href: "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
    }];
  } else {
    status.conversation = {
      id: randomFrom("0123456789abcdef", 32),
      origin: { type: "utility" },
    };
    status.pricing = { billable: true, pricing_model: "PMP", category: "utility" };
  }
  return whatsAppPayload(options, { statuses: [status] });
}
