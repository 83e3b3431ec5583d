import assert from "node:assert/strict";
import { formatUuid, fromHex, sha256, toHex } from "../../functions/_shared/bytes.ts";

Deno.test("sha256() and toHex() give the FIPS 180-2 digests, in lower-case hex as PostgreSQL writes them", async () => {
  assert.equal(
    toHex(await sha256("abc")),
    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
  );
  assert.equal(toHex(await sha256("")), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(toHex(new Uint8Array([0, 9, 10, 255])), "00090aff");
});

Deno.test("fromHex() reads either case and refuses what is not hex of whole bytes", () => {
  assert.deepEqual(fromHex("00090aFF"), new Uint8Array([0, 9, 10, 255]));
  assert.deepEqual(fromHex(""), new Uint8Array([]));
  for (const bad of ["0", "abc", "0g", "zz", " 00", "0x00"]) assert.equal(fromHex(bad), null, bad);
});

Deno.test("formatUuid() writes 16 bytes in the 8-4-4-4-12 form", () => {
  const bytes = Uint8Array.from({ length: 16 }, (_, i) => i * 17);
  assert.equal(formatUuid(bytes), "00112233-4455-6677-8899-aabbccddeeff");
});
