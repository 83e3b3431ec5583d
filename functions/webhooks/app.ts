/**
 * The webhooks function: Meta (Facebook/Instagram Lead Ads) and WhatsApp Cloud API webhooks.
 *
 *   GET  /webhooks/meta, /webhooks/whatsapp    the subscription handshake (hub.mode, hub.verify_token,
 *                                              hub.challenge), answered with the challenge as text
 *   POST /webhooks/meta, /webhooks/whatsapp    a delivery: X-Hub-Signature-256 is checked over the raw bytes
 *                                              before anything is parsed, then the raw body is stored in
 *                                              app.webhook_inbox in one statement and 200 is answered
 *
 * Nothing else happens in the request: Meta retries a delivery that is not answered quickly, so the worker
 * routes the stored body into jobs (app.route_webhook_inbox, sql/0025) and runs them. The body is stored as
 * received, never re-serialised, and is read as jsonb in SQL, so Graph ids (decimal strings above 2^53) never
 * pass through a JavaScript number. A forged or unsigned delivery is refused with 401 and leaves nothing but
 * a log line (with the request id and the reason, never the body).
 */
import { sameSecret } from "../_shared/auth.ts";
import { ApiError } from "../_shared/errors.ts";
import { createRouter, type Deps, log, readBody } from "../_shared/http.ts";
import { verifyMetaSignature } from "../_shared/integrations/meta_signature.ts";

type Provider = "meta" | "whatsapp";

const PROVIDERS: Provider[] = ["meta", "whatsapp"];
const MAX_CHALLENGE = 200;

function notConfigured(what: string): ApiError {
  return new ApiError(503, "webhooks_not_configured", `Webhooks are not configured: ${what} is not set`);
}

/** Builds the webhooks function's app with its dependencies, for production and tests alike. */
export function createWebhooksApp(deps: Deps) {
  const { config, sql } = deps;
  const app = createRouter("/webhooks", config);

  for (const provider of PROVIDERS) {
    app.get(`/${provider}`, async (c) => {
      const expected = config.secrets.meta_verify_token;
      if (!expected) throw notConfigured("META_VERIFY_TOKEN");
      const mode = c.req.query("hub.mode");
      const token = c.req.query("hub.verify_token") ?? "";
      const challenge = c.req.query("hub.challenge") ?? "";
      if (mode !== "subscribe" || !(await sameSecret(token, expected))) {
        log("warn", "webhook verification refused", {
          request_id: c.get("requestId"),
          provider,
          reason: mode !== "subscribe" ? "mode" : "verify_token",
        });
        throw new ApiError(403, "verification_failed", "The verification token does not match");
      }
      if (challenge === "" || challenge.length > MAX_CHALLENGE) {
        throw new ApiError(400, "invalid_challenge", "Send hub.challenge (at most 200 characters)");
      }
      return c.text(challenge, 200);
    });

    app.post(`/${provider}`, async (c) => {
      const appSecret = config.secrets.meta_app_secret;
      if (!appSecret) throw notConfigured("META_APP_SECRET");
      const raw = await readBody(c.req.raw, config.server.max_body_bytes);
      const header = c.req.header("x-hub-signature-256") ?? null;
      if (!(await verifyMetaSignature(raw, header, appSecret))) {
        log("warn", "webhook signature rejected", {
          request_id: c.get("requestId"),
          provider,
          reason: header === null ? "signature_missing" : "signature_invalid",
          bytes: raw.byteLength,
        });
        throw new ApiError(401, "invalid_signature", "The X-Hub-Signature-256 signature is missing or wrong");
      }
      // Checked for shape only; the parsed value is dropped and SQL reads the stored text as jsonb.
      let text: string;
      let shapeOk = false;
      try {
        text = new TextDecoder("utf-8", { fatal: true }).decode(raw);
        const parsed = JSON.parse(text);
        shapeOk = typeof parsed === "object" && parsed !== null && !Array.isArray(parsed) &&
          typeof parsed.object === "string";
      } catch {
        text = "";
      }
      if (!shapeOk) {
        log("warn", "webhook body refused", { request_id: c.get("requestId"), provider, reason: "not_json" });
        throw new ApiError(400, "malformed_body", 'Send a JSON object with an "object" field');
      }
      const [row] = await sql<{ id: string }[]>`
        insert into app.webhook_inbox (provider, body) values (${provider}, ${text}) returning id::text`;
      log("info", "webhook stored", { request_id: c.get("requestId"), provider, inbox_id: row.id });
      return c.text("EVENT_RECEIVED", 200);
    });
  }

  return app;
}
