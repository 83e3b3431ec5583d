/**
 * AES-256-GCM encryption of per-client third-party credentials (WhatsApp tokens, Google service-account
 * keys, Meta page tokens) before they touch the database. WebCrypto only, so it runs unchanged on Supabase.
 *
 * Sealed format: `v1.<base64url iv>.<base64url ciphertext+tag>`. The version prefix leaves room for key
 * rotation; the associated data (e.g. `client:<id>:whatsapp`) is authenticated but not stored, so a
 * ciphertext copied into another client's row fails to open instead of leaking that client's credentials.
 */

/** Seals and opens secrets with one key. */
export interface SecretBox {
  /** Encrypts `plaintext`, bound to `associatedData`, with a fresh random IV. */
  seal(plaintext: string, associatedData: string): Promise<string>;
  /** Decrypts a sealed value; throws when it was tampered with, sealed under another key or other data. */
  open(sealed: string, associatedData: string): Promise<string>;
}

const VERSION = "v1";
// 96-bit IVs are what GCM is specified for; random ones are safe for far more messages than we seal per key.
const IV_BYTES = 12;
const KEY_BYTES = 32;

/**
 * Creates a SecretBox from a base64 (standard or url-safe) 32-byte key, such as `ENCRYPTION_KEY`.
 * Throws at once (so startup fails fast) when the key is not valid base64 or not exactly 32 bytes long.
 */
export function createSecretBox(base64Key: string): SecretBox {
  let raw: Uint8Array<ArrayBuffer>;
  try {
    raw = decodeBase64(base64Key.trim());
  } catch {
    throw new Error("Encryption key is not valid base64");
  }
  if (raw.length !== KEY_BYTES) {
    throw new Error(`Encryption key must decode to ${KEY_BYTES} bytes, got ${raw.length}`);
  }
  // Importing 32 raw bytes as AES-GCM cannot fail, so the factory can stay synchronous.
  const key = crypto.subtle.importKey("raw", raw, "AES-GCM", false, ["encrypt", "decrypt"]);
  const encoder = new TextEncoder();

  return {
    async seal(plaintext, associatedData) {
      const iv = crypto.getRandomValues(new Uint8Array(IV_BYTES));
      const ciphertext = await crypto.subtle.encrypt(
        { name: "AES-GCM", iv, additionalData: encoder.encode(associatedData) },
        await key,
        encoder.encode(plaintext),
      );
      return `${VERSION}.${encodeBase64Url(iv)}.${encodeBase64Url(new Uint8Array(ciphertext))}`;
    },

    async open(sealed, associatedData) {
      const parts = sealed.split(".");
      if (parts.length !== 3 || parts[0] !== VERSION) {
        throw new Error(`Sealed secret has an unknown format (expected "${VERSION}.<iv>.<ciphertext>")`);
      }
      let iv: Uint8Array<ArrayBuffer>;
      let ciphertext: Uint8Array<ArrayBuffer>;
      try {
        iv = decodeBase64(parts[1]);
        ciphertext = decodeBase64(parts[2]);
      } catch {
        throw new Error("Sealed secret is not valid base64url");
      }
      if (iv.length !== IV_BYTES) {
        throw new Error(`Sealed secret has a ${iv.length}-byte IV, expected ${IV_BYTES}`);
      }
      try {
        const plaintext = await crypto.subtle.decrypt(
          { name: "AES-GCM", iv, additionalData: encoder.encode(associatedData) },
          await key,
          ciphertext,
        );
        return new TextDecoder().decode(plaintext);
      } catch {
        // GCM cannot tell these apart, and saying which would help an attacker anyway.
        throw new Error("Sealed secret failed authentication: tampered, wrong key or wrong associated data");
      }
    },
  };
}

/** Returns a fresh random 32-byte key, base64-encoded, for development mode and for `.env` files. */
export function generateKey(): string {
  return encodeBase64(crypto.getRandomValues(new Uint8Array(KEY_BYTES)));
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

function encodeBase64Url(bytes: Uint8Array): string {
  return encodeBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Accepts standard and url-safe base64, padded or not, since keys are pasted from many tools. */
function decodeBase64(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) throw new Error("Invalid base64");
  const standard = text.replaceAll("-", "+").replaceAll("_", "/").replace(/=+$/, "");
  const padded = standard + "=".repeat((4 - (standard.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}
