/**
 * Connection tests of the integrations: each runs the stored credential against the third party and says
 * whether it works ("ok"), was refused ("broken": a person must fix it) or could not be judged
 * ("unavailable": unreachable, rate limited, or the platform's own Meta app credentials were refused).
 */
import type { Config } from "../../_shared/config.ts";
import {
  classifyGraphError,
  createGraphClient,
  GraphApiError,
  parseGraphJson,
} from "../../_shared/integrations/graph.ts";
import {
  createSheetsClient,
  type ServiceAccountKey,
  SheetsApiError,
} from "../../_shared/integrations/sheets.ts";
import { log } from "../../_shared/http.ts";

export type CheckOutcome =
  | { result: "ok"; detail: null; tokenExpiresAt: Date | null }
  | { result: "broken"; detail: string; tokenExpiresAt: Date | null }
  | { result: "unavailable"; detail: string };

const TIMEOUT_MS = 10_000;
const WHATSAPP_SCOPE = "whatsapp_business_messaging";

const broken = (detail: string, tokenExpiresAt: Date | null = null): CheckOutcome => ({
  result: "broken",
  detail,
  tokenExpiresAt,
});
const unavailable = (detail: string): CheckOutcome => ({ result: "unavailable", detail });

/**
 * Reads the WhatsApp phone number with the token, which proves the token works and reaches that number.
 * graph.ts has no generic node read, so this one GET is made here with its error classification.
 */
async function readPhoneNumber(baseUrl: string, phoneNumberId: string, token: string): Promise<void> {
  const url = new URL(`${baseUrl.replace(/\/+$/, "")}/${phoneNumberId}`);
  url.searchParams.set("fields", "id,display_phone_number,verified_name");
  let status: number;
  let text: string;
  try {
    const response = await fetch(url, {
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      signal: AbortSignal.timeout(TIMEOUT_MS),
    });
    status = response.status;
    text = await response.text();
  } catch (cause) {
    throw new GraphApiError("Graph API could not be reached", {
      status: 0,
      action: "retry_later",
      type: "NetworkError",
      cause,
    });
  }
  let body: unknown = null;
  try {
    body = parseGraphJson(text);
  } catch {
    // Classified by status alone.
  }
  if (status < 200 || status >= 300) throw classifyGraphError(status, body);
}

/**
 * Tests a WhatsApp integration: debug_token (validity, expiry, permission) when the platform's Meta app id
 * and secret are configured, then a read of the configured phone number with the token.
 */
export async function checkWhatsApp(
  config: Config,
  settings: Record<string, unknown>,
  token: string,
): Promise<CheckOutcome> {
  const phoneNumberId = String(settings.phone_number_id ?? "");
  let tokenExpiresAt: Date | null = null;
  const { meta_app_id: appId, meta_app_secret: appSecret } = config.secrets;
  if (appId && appSecret) {
    const graph = createGraphClient({ baseUrl: config.urls.graph_api, timeoutMs: TIMEOUT_MS });
    try {
      const info = await graph.debugToken(token, `${appId}|${appSecret}`);
      if (!info.is_valid) {
        return broken(info.error?.message ?? "Meta says the access token is not valid", info.expires_at);
      }
      if (!info.scopes.includes(WHATSAPP_SCOPE)) {
        return broken(`The access token lacks the ${WHATSAPP_SCOPE} permission`, info.expires_at);
      }
      tokenExpiresAt = info.expires_at;
    } catch (error) {
      // debug_token fails on the platform's app token, not the client's: it says nothing about theirs.
      log("warn", "debug_token failed", { error: error instanceof Error ? error.message : String(error) });
      if (!(error instanceof GraphApiError) || error.action !== "retry_later") {
        return unavailable("Meta refused the platform's app credentials; the token could not be inspected");
      }
      return unavailable("Meta could not be reached or is rate limiting; try again later");
    }
  }
  try {
    await readPhoneNumber(config.urls.graph_api, phoneNumberId, token);
  } catch (error) {
    if (!(error instanceof GraphApiError)) throw error;
    if (error.retryable) return unavailable("Meta could not be reached or is rate limiting; try again later");
    return broken(error.message, tokenExpiresAt);
  }
  return { result: "ok", detail: null, tokenExpiresAt };
}

/**
 * Tests a Google Sheets integration: the service account gets a token and reads the spreadsheet, the
 * configured sheet and its header row, which must hold every configured column header (an empty sheet
 * is fine: the header is written with the first rows).
 */
export async function checkGoogleSheets(
  config: Config,
  settings: Record<string, unknown>,
  keyJson: string,
): Promise<CheckOutcome> {
  let key: ServiceAccountKey;
  try {
    key = JSON.parse(keyJson);
  } catch {
    return broken("The stored service-account key is not JSON; set it again");
  }
  const spreadsheetId = String(settings.spreadsheet_id ?? "");
  const sheet = String(settings.sheet ?? "");
  const columns = Array.isArray(settings.columns) ? settings.columns as { header: string }[] : [];
  const sheets = createSheetsClient({
    sheetsUrl: config.urls.google_sheets,
    tokenUrl: config.urls.google_token,
    retry: { attempts: 2, baseMs: 200, maxMs: 1_000 },
    timeoutMs: TIMEOUT_MS,
  });
  try {
    await sheets.testConnection({ key, spreadsheetId });
    const { header } = await sheets.readRows({ key, spreadsheetId, sheet, limit: 1 });
    const missing = columns.map((column) => column.header).filter((name) => !header.includes(name));
    if (header.length > 0 && missing.length > 0) {
      return broken(`Sheet "${sheet}" header row lacks ${missing.map((name) => `"${name}"`).join(", ")}`);
    }
  } catch (error) {
    if (!(error instanceof SheetsApiError)) throw error;
    if (error.retryable) {
      return unavailable("Google could not be reached or is rate limiting; try again later");
    }
    return broken(error.message);
  }
  return { result: "ok", detail: null, tokenExpiresAt: null };
}
