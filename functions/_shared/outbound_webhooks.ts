/**
 * The outbound webhook client: Standard Webhooks signatures (https://www.standardwebhooks.com) and the SSRF
 * guard that keeps clients' endpoint URLs from reaching the platform's own network.
 *
 * Signature: `webhook-signature: v1,<base64 HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")>`,
 * where the secret is the base64 part of `whsec_<base64>`.
 */

const encodeBase64 = (bytes: Uint8Array) => btoa(String.fromCharCode(...bytes));

/** The associated data a signing secret is sealed with (secret box): it only opens for its own endpoint. */
export const webhookSecretContext = (endpointId: string) => `webhook-endpoint:${endpointId}`;

/** A new signing secret in the Standard Webhooks format: `whsec_` and 32 random bytes in base64. */
export function generateSigningSecret(): string {
  return `whsec_${encodeBase64(crypto.getRandomValues(new Uint8Array(32)))}`;
}

function secretBytes(secret: string): Uint8Array<ArrayBuffer> {
  const encoded = secret.startsWith("whsec_") ? secret.slice("whsec_".length) : secret;
  return Uint8Array.from(atob(encoded), (char) => char.charCodeAt(0));
}

const signingKeys = new Map<string, CryptoKey>();

/** The `webhook-signature` header value for one delivery. */
export async function signWebhook(
  secret: string,
  messageId: string,
  timestampSeconds: number,
  body: string,
): Promise<string> {
  let key = signingKeys.get(secret);
  if (!key) {
    key = await crypto.subtle.importKey(
      "raw",
      secretBytes(secret),
      { name: "HMAC", hash: "SHA-256" },
      false,
      [
        "sign",
      ],
    );
    // Bounded: a worker signs for a limited set of endpoints; start over rather than grow without end.
    if (signingKeys.size > 10_000) signingKeys.clear();
    signingKeys.set(secret, key);
  }
  const signed = new TextEncoder().encode(`${messageId}.${timestampSeconds}.${body}`);
  const mac = new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));
  return `v1,${encodeBase64(mac)}`;
}

/** Why a target is refused, or null when it may be called. */
export type TargetRefusal = string | null;

function ipv4Forbidden(address: string): boolean {
  const parts = address.split(".").map(Number);
  if (parts.length !== 4 || parts.some((part) => !Number.isInteger(part) || part < 0 || part > 255)) {
    return true;
  }
  const [a, b] = parts;
  return a === 0 || a === 10 || a === 127 || a >= 224 || // this network, private, loopback, multicast/reserved
    (a === 169 && b === 254) || // link-local (cloud metadata at 169.254.169.254)
    (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || // private
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 192 && b === 0 && parts[2] === 0) || (a === 198 && (b === 18 || b === 19)); // IETF, benchmarking
}

/**
 * True for addresses a webhook must never reach: loopback, private, link-local, unique-local, multicast,
 * unspecified, and IPv4 addresses of those kinds inside IPv6 (mapped or NAT64).
 */
export function isForbiddenAddress(address: string): boolean {
  const ip = address.replace(/^\[|\]$/g, "").toLowerCase();
  if (!ip.includes(":")) return ipv4Forbidden(ip);
  const embedded = ip.match(/^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/)?.[1];
  if (embedded) return ipv4Forbidden(embedded);
  if (ip === "::" || ip === "::1") return true;
  const first = parseInt(ip.split(":")[0] || "0", 16);
  return (first & 0xfe00) === 0xfc00 || // unique local fc00::/7
    (first & 0xffc0) === 0xfe80 || // link-local fe80::/10
    (first & 0xff00) === 0xff00 || // multicast
    ip.startsWith("::ffff:"); // any other mapped form
}

/** The URL of an endpoint when it is well formed: https (http only when local targets are allowed). */
export function checkEndpointUrl(url: string, options: { allowLocalTargets: boolean }): TargetRefusal {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return "The URL is not valid";
  }
  if (parsed.protocol !== "https:" && !(options.allowLocalTargets && parsed.protocol === "http:")) {
    return "Webhook endpoints must use https";
  }
  if (parsed.username || parsed.password) {
    return "Put no credentials in the URL; verify the signature instead";
  }
  if (!options.allowLocalTargets) {
    const host = parsed.hostname.replace(/^\[|\]$/g, "");
    if (host === "localhost" || host.endsWith(".localhost") || host.endsWith(".internal")) {
      return "The URL points at a local host";
    }
    if ((/^[\d.]+$/.test(host) || host.includes(":")) && isForbiddenAddress(host)) {
      return "The URL points at a private or reserved address";
    }
  }
  return null;
}

/**
 * Checks a target right before calling it: the URL rules above, then every address its host name resolves
 * to (so a public name pointing at 127.0.0.1 is refused too).
 */
export async function checkTarget(
  url: string,
  options: { allowLocalTargets: boolean },
): Promise<TargetRefusal> {
  const refusal = checkEndpointUrl(url, options);
  if (refusal || options.allowLocalTargets) return refusal;
  const host = new URL(url).hostname.replace(/^\[|\]$/g, "");
  if (/^[\d.]+$/.test(host) || host.includes(":")) return null;
  const addresses: string[] = [];
  for (const type of ["A", "AAAA"] as const) {
    try {
      addresses.push(...await Deno.resolveDns(host, type));
    } catch {
      // A name without records of one type is normal; no address at all is handled below.
    }
  }
  if (addresses.length === 0) return `The host ${host} does not resolve`;
  const forbidden = addresses.find(isForbiddenAddress);
  return forbidden ? `The host ${host} resolves to a private or reserved address (${forbidden})` : null;
}
