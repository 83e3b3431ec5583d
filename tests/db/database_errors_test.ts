/**
 * apiErrorFromDb() on errors raised by the real database: what validation let through reaches the caller as
 * a 4xx with a generic sentence, never as a 500 or with PostgreSQL's own text.
 */
import assert from "node:assert/strict";
import { apiErrorFromDb, NUL_MESSAGE } from "../../functions/_shared/errors.ts";
import { db, test } from "../_helpers.ts";

async function refusalOf(query: Promise<unknown>) {
  const error = await query.then(() => undefined, (error: unknown) => error);
  assert.ok(error, "the database refused the statement");
  const mapped = apiErrorFromDb(error);
  return mapped && { status: mapped.status, code: mapped.code, detail: mapped.message };
}

test("DE-01: a NUL character in text or jsonb is a 422 invalid_character", async () => {
  const expected = { status: 422, code: "invalid_character", detail: NUL_MESSAGE };
  assert.deepEqual(await refusalOf(db()`select ${"a\u0000b"}::text`), expected, "text");
  assert.deepEqual(await refusalOf(db()`select ${'{"a": "\\u0000"}'}::text::jsonb`), expected, "jsonb");
});

test("DE-02: a malformed uuid is a 422 invalid_value, and a server-side fault stays unmapped", async () => {
  assert.deepEqual(await refusalOf(db()`select ${"not-a-uuid"}::uuid`), {
    status: 422,
    code: "invalid_value",
    detail: "A value has the wrong format",
  });
  assert.equal(await refusalOf(db()`select 1 / 0`), undefined, "division by zero is our fault: a 500");
});
