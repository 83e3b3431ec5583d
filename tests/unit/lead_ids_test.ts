import assert from "node:assert/strict";
import { z } from "zod";
import { newLeadId } from "../../functions/_shared/leads.ts";
import { assertTimeOrderedId } from "../_helpers.ts";

Deno.test("newLeadId() is a UUID version 7 of the given millisecond, with the RFC 9562 variant", () => {
  const now = Date.UTC(2026, 11, 7, 16, 30, 0, 123);
  const id = newLeadId(now);
  assertTimeOrderedId(id, now, now);
  assert.ok(z.uuid().safeParse(id).success, "the API's uuid schema accepts it");
});

Deno.test("newLeadId() sorts by time and never repeats", () => {
  const earlier = newLeadId(1_800_000_000_000);
  const later = newLeadId(1_800_000_000_001);
  assert.ok(earlier < later, `${earlier} sorts before ${later}`);
  const ids = new Set(Array.from({ length: 10_000 }, () => newLeadId(1_800_000_000_000)));
  assert.equal(ids.size, 10_000);
  const before = Date.now();
  assertTimeOrderedId(newLeadId(), before, Date.now());
});
