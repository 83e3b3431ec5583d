import assert from "node:assert/strict";
import { DOCS_HTML } from "../../functions/_shared/docs.ts";
// The npm package the CDN serves, at the version the page pins (deno.json): its bytes are what the hashes
// must match.
import bundle from "swagger-ui-dist/swagger-ui-bundle.js" with { type: "text" };
import stylesheet from "swagger-ui-dist/swagger-ui.css" with { type: "text" };

/** The text is UTF-8 without a byte-order mark, so encoding it again gives the file's bytes. */
async function sri(text: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-384", new TextEncoder().encode(text)));
  return `sha384-${btoa(String.fromCharCode(...digest))}`;
}

Deno.test("the docs page loads Swagger UI only with integrity hashes of the pinned npm package", async () => {
  const files: Record<string, string> = {
    "swagger-ui-bundle.js": bundle,
    "swagger-ui.css": stylesheet,
  };
  const references = [...DOCS_HTML.matchAll(/(?:src|href)="(https:[^"]+)"\s+integrity="([^"]+)"/g)];
  assert.equal(references.length, 2, "DOCS-01: the script and the stylesheet carry an integrity attribute");
  assert.equal(
    DOCS_HTML.match(/https:\/\//g)?.length,
    2,
    "DOCS-01: nothing else is loaded from another origin",
  );
  for (const [, url, integrity] of references) {
    const match = url.match(/^https:\/\/cdn\.jsdelivr\.net\/npm\/swagger-ui-dist@5\.17\.14\/(.+)$/);
    assert.ok(match, `DOCS-02: ${url} is the pinned package's file`);
    assert.equal(integrity, await sri(files[match[1]]), `DOCS-03: ${match[1]}'s hash matches the package`);
  }
  assert.equal(
    (DOCS_HTML.match(/crossorigin="anonymous"/g) ?? []).length,
    2,
    "DOCS-04: fetched without credentials",
  );
});
