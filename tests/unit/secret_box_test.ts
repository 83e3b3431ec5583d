import assert from "node:assert/strict";
import { test } from "../_helpers.ts";
import { createSecretBox, generateKey } from "../../functions/_shared/integrations/secret_box.ts";

const AAD = "client:acme:whatsapp";

test("SecretBox.open() returns what seal() sealed", async () => {
  const box = createSecretBox(generateKey());
  const secret = '{"token":"EAAG…","note":"ünïcode ✓"}';
  const sealed = await box.seal(secret, AAD);
  assert.match(
    sealed,
    /^v1\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$/,
    "format is v1.<iv>.<ciphertext> in base64url",
  );
  assert.ok(!sealed.includes("EAAG"), "the plaintext does not appear in the sealed value");
  assert.equal(await box.open(sealed, AAD), secret);
});

test("SecretBox.seal() uses a fresh IV, so equal plaintexts seal differently", async () => {
  const box = createSecretBox(generateKey());
  const a = await box.seal("same secret", AAD);
  const b = await box.seal("same secret", AAD);
  assert.notEqual(a.split(".")[1], b.split(".")[1], "IVs differ");
  assert.notEqual(a, b, "ciphertexts differ, so equal credentials cannot be spotted in the database");
});

test("SecretBox.open() rejects a tampered ciphertext or IV", async () => {
  const box = createSecretBox(generateKey());
  const [version, iv, ciphertext] = (await box.seal("page-token", AAD)).split(".");
  const flip = (text: string) => (text[0] === "A" ? "B" : "A") + text.slice(1);
  await assert.rejects(box.open(`${version}.${iv}.${flip(ciphertext)}`, AAD), /failed authentication/);
  await assert.rejects(box.open(`${version}.${flip(iv)}.${ciphertext}`, AAD), /failed authentication/);
  await assert.rejects(box.open(`${version}.${iv}.${ciphertext.slice(0, -4)}`, AAD), /failed authentication/);
  await assert.rejects(box.open(`v2.${iv}.${ciphertext}`, AAD), /unknown format/);
});

test("SecretBox.open() rejects a value sealed under another key", async () => {
  const sealed = await createSecretBox(generateKey()).seal("page-token", AAD);
  await assert.rejects(createSecretBox(generateKey()).open(sealed, AAD), /failed authentication/);
});

test("SecretBox.open() rejects a value moved to another client's row (wrong associated data)", async () => {
  const box = createSecretBox(generateKey());
  const sealed = await box.seal("page-token", "client:acme:whatsapp");
  await assert.rejects(box.open(sealed, "client:globex:whatsapp"), /failed authentication/);
  await assert.rejects(box.open(sealed, "client:acme:meta"), /failed authentication/);
});

test("createSecretBox() refuses a key that is not 32 bytes of base64", () => {
  const bytes = (n: number) => btoa(String.fromCharCode(...new Uint8Array(n).fill(7)));
  assert.throws(() => createSecretBox(bytes(16)), /must decode to 32 bytes, got 16/);
  assert.throws(() => createSecretBox(bytes(33)), /must decode to 32 bytes, got 33/);
  assert.throws(() => createSecretBox(""), /must decode to 32 bytes, got 0/);
  assert.throws(() => createSecretBox("not base64!"), /not valid base64/);
});

test("createSecretBox() accepts url-safe base64 of the same key", async () => {
  const key = generateKey();
  const urlSafe = key.replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
  const sealed = await createSecretBox(key).seal("x", AAD);
  assert.equal(await createSecretBox(urlSafe).open(sealed, AAD), "x");
});

test("generateKey() returns a fresh base64 32-byte key", () => {
  const key = generateKey();
  assert.equal(atob(key).length, 32);
  assert.notEqual(generateKey(), key);
});
