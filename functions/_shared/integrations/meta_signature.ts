/**
 * Meta webhook signatures (`X-Hub-Signature-256: sha256=<hex>`), shared by the Facebook/Instagram Lead Ads
 * and the WhatsApp webhooks.
 *
 * Meta signs the exact bytes it sends, and it sends JSON with every non-ASCII character (and "/") escaped.
 * Parsing and re-serialising the body yields different bytes whenever a lead's name has an accent, so the
 * signature must be checked over the raw request body, before any parsing.
 */

import { fromHex, toHex } from "../bytes.ts";

const PREFIX = "sha256=";
// SHA-256 digests are 32 bytes, 64 hex characters.
const DIGEST_HEX_LENGTH = 64;
const encoder = new TextEncoder();

function hmacKey(appSecret: string, usage: "sign" | "verify"): Promise<CryptoKey> {
  // An empty secret would make every forged signature computable by anyone, so it is a configuration error.
  if (appSecret === "") throw new Error("Meta app secret is empty");
  return crypto.subtle.importKey("raw", encoder.encode(appSecret), { name: "HMAC", hash: "SHA-256" }, false, [
    usage,
  ]);
}

/**
 * Checks a Meta webhook signature header against the raw request body.
 * Returns false for a missing or malformed header and for a wrong signature; the comparison is
 * `crypto.subtle.verify`, which runs in constant time, so timing reveals nothing about the expected value.
 * Throws when `appSecret` is empty (a misconfiguration, not a bad request).
 */
export async function verifyMetaSignature(
  rawBody: Uint8Array,
  header: string | null,
  appSecret: string,
): Promise<boolean> {
  const key = await hmacKey(appSecret, "verify");
  if (header === null || !header.startsWith(PREFIX)) return false;
  const hex = header.slice(PREFIX.length).trim();
  const signature = hex.length === DIGEST_HEX_LENGTH ? fromHex(hex) : null;
  if (signature === null) return false;
  return crypto.subtle.verify("HMAC", key, signature, new Uint8Array(rawBody));
}

/** The `X-Hub-Signature-256` header value Meta would send with `rawBody` (for the emulator and tests). */
export async function signMetaBody(rawBody: Uint8Array, appSecret: string): Promise<string> {
  const key = await hmacKey(appSecret, "sign");
  const mac = await crypto.subtle.sign("HMAC", key, new Uint8Array(rawBody));
  return PREFIX + toHex(new Uint8Array(mac));
}

/**
 * Serialises `value` the way Meta's webhooks do: JSON with every non-ASCII UTF-16 unit escaped as a
 * lowercase `\uXXXX` (so "é" becomes `\u00e9` and an emoji becomes its surrogate pair) and "/" as `\/`.
 * The result is pure ASCII and parses back to `value`, but differs byte for byte from `JSON.stringify`.
 */
export function metaJson(value: unknown): string {
  return JSON.stringify(value)
    .replace(/[\u0080-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)
    .replaceAll("/", "\\/");
}
