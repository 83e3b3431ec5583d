import assert from "node:assert/strict";
import { test } from "../_helpers.ts";
import {
  metaJson,
  signMetaBody,
  verifyMetaSignature,
} from "../../functions/_shared/integrations/meta_signature.ts";
import { deliver, inboundMessage, leadgenChange } from "../emulators/graph.ts";

const SECRET = "0123456789abcdef0123456789abcdef";
const encode = (text: string) => new TextEncoder().encode(text);
const payload = {
  object: "page",
  entry: [{
    id: "104050095148573",
    changes: [{ field: "leadgen", value: { leadgen_id: "12345678901234567" } }],
  }],
};

test("verifyMetaSignature() accepts the signature signMetaBody() made over the same bytes", async () => {
  const body = encode(metaJson(payload));
  const header = await signMetaBody(body, SECRET);
  assert.match(header, /^sha256=[0-9a-f]{64}$/, "Meta's header format");
  assert.equal(await verifyMetaSignature(body, header, SECRET), true);
});

test("verifyMetaSignature() accepts upper-case hex digits", async () => {
  const body = encode(metaJson(payload));
  const header = await signMetaBody(body, SECRET);
  assert.equal(await verifyMetaSignature(body, "sha256=" + header.slice(7).toUpperCase(), SECRET), true);
});

test("verifyMetaSignature() rejects a signature made with another secret", async () => {
  const body = encode(metaJson(payload));
  const forged = await signMetaBody(body, "attacker-guess-of-the-secret");
  assert.equal(await verifyMetaSignature(body, forged, SECRET), false);
});

test("verifyMetaSignature() rejects a body changed after signing", async () => {
  const body = encode(metaJson(payload));
  const header = await signMetaBody(body, SECRET);
  const tampered = encode(metaJson(payload).replace("12345678901234567", "12345678901234568"));
  assert.equal(await verifyMetaSignature(tampered, header, SECRET), false);
});

test("verifyMetaSignature() returns false for a missing or malformed header", async () => {
  const body = encode(metaJson(payload));
  const hex = (await signMetaBody(body, SECRET)).slice("sha256=".length);
  const malformed = [
    null,
    "",
    hex, // no algorithm prefix
    `sha1=${hex}`, // the legacy X-Hub-Signature algorithm
    `SHA256=${hex}`,
    `sha256=${hex.slice(0, 63)}`, // truncated
    `sha256=${hex}00`, // too long
    `sha256=${"z".repeat(64)}`, // not hex
    "sha256=",
  ];
  for (const header of malformed) {
    assert.equal(await verifyMetaSignature(body, header, SECRET), false, `header ${JSON.stringify(header)}`);
  }
});

test("verifyMetaSignature() refuses to run with an empty app secret", async () => {
  const body = encode("{}");
  await assert.rejects(verifyMetaSignature(body, "sha256=" + "0".repeat(64), ""), /Meta app secret is empty/);
});

test("metaJson() escapes non-ASCII characters and slashes like Meta, and parses back unchanged", () => {
  const value = { full_name: "José Müller 😀", site: "https://example.com/a", plain: "abc" };
  const text = metaJson(value);
  assert.equal(
    text,
    '{"full_name":"Jos\\u00e9 M\\u00fcller \\ud83d\\ude00","site":"https:\\/\\/example.com\\/a","plain":"abc"}',
  );
  assert.match(text, /^[\x20-\x7e]*$/, "pure printable ASCII");
  assert.deepEqual(JSON.parse(text), value);
});

test("verifyMetaSignature() needs the raw bytes: a re-serialised body with non-ASCII names does not verify", async () => {
  const lead = { field_data: [{ name: "full_name", values: ["Zoë Ångström"] }], url: "https://fb.me/x" };
  const raw = encode(metaJson(lead));
  const header = await signMetaBody(raw, SECRET);
  assert.equal(await verifyMetaSignature(raw, header, SECRET), true, "the bytes Meta sent verify");

  // What a handler would get by parsing first and serialising again: same data, different bytes.
  const reserialised = encode(JSON.stringify(JSON.parse(new TextDecoder().decode(raw))));
  assert.notDeepEqual(reserialised, raw, "JSON.stringify writes UTF-8 where Meta wrote \\u escapes");
  assert.equal(
    await verifyMetaSignature(reserialised, header, SECRET),
    false,
    "so the signature no longer matches",
  );

  // With ASCII-only content and no slashes the two happen to agree, which is why this bug hides in tests.
  const ascii = encode(metaJson({ name: "Zoe" }));
  assert.deepEqual(encode(JSON.stringify(JSON.parse(new TextDecoder().decode(ascii)))), ascii);
});

test("deliver() posts Meta's escaped bytes with a valid, forged or missing X-Hub-Signature-256", async () => {
  const received: { body: Uint8Array; signature: string | null; contentType: string | null }[] = [];
  const target = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (request) => {
    received.push({
      body: new Uint8Array(await request.arrayBuffer()),
      signature: request.headers.get("x-hub-signature-256"),
      contentType: request.headers.get("content-type"),
    });
    return new Response("EVENT_RECEIVED");
  });
  try {
    const url = `http://127.0.0.1:${target.addr.port}/webhooks/meta`;
    const change = inboundMessage({
      phoneNumberId: "106540352242922",
      from: "4915112345678",
      name: "Jürgen",
    });
    for (const signature of ["valid", "forged", "missing"] as const) {
      const response = await deliver(url, change, { appSecret: SECRET, signature });
      assert.equal(await response.text(), "EVENT_RECEIVED");
    }
    const [valid, forged, missing] = received;
    assert.deepEqual(valid.body, encode(metaJson(change)), "the body is metaJson's bytes");
    assert.ok(new TextDecoder().decode(valid.body).includes("J\\u00fcrgen"), "non-ASCII arrives escaped");
    assert.equal(valid.contentType, "application/json");
    assert.equal(await verifyMetaSignature(valid.body, valid.signature, SECRET), true);
    assert.equal(await verifyMetaSignature(forged.body, forged.signature, SECRET), false);
    assert.ok(forged.signature?.startsWith("sha256="), "a forged header is well-formed, only wrong");
    assert.equal(missing.signature, null);
  } finally {
    await target.shutdown();
  }
});

test("leadgenChange() builds Meta's page leadgen webhook shape with string ids and unix times", () => {
  const createdTime = new Date("2024-05-01T10:00:00Z");
  const body = leadgenChange({
    pageId: "104050095148573",
    formId: "98765432109876543",
    leadgenId: "12345678901234567",
    createdTime,
    adId: "23851234567890123",
  });
  assert.deepEqual(body, {
    object: "page",
    entry: [{
      id: "104050095148573",
      time: 1714557600,
      changes: [{
        field: "leadgen",
        value: {
          form_id: "98765432109876543",
          leadgen_id: "12345678901234567",
          created_time: 1714557600,
          page_id: "104050095148573",
          ad_id: "23851234567890123",
        },
      }],
    }],
  });
});
