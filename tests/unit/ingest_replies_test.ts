import assert from "node:assert/strict";
import { assembleReplies } from "../../functions/ingest/ingest.replies.ts";

const KEY_A = "0190f000-0000-7000-8000-00000000000a";
const KEY_B = "0190f000-0000-7000-8000-00000000000b";
const lead = (n: number) => `0190f000-0000-7000-8000-${String(n).padStart(12, "0")}`;

Deno.test("assembleReplies() gives each request its own items in index order and its key's rate-limit state", () => {
  const replies = assembleReplies({
    replies: [
      { client_id: "acme", key_id: KEY_A, rank: 1, limit: 10 },
      { error: "key_revoked" },
      { client_id: "globex", key_id: KEY_B, rank: 1, limit: 5 },
      { client_id: "acme", key_id: KEY_A, rank: 2, limit: 10 },
      { client_id: "acme", key_id: KEY_A, rank: 3, limit: 10 },
    ],
    results: [
      { request: 3, index: 0, outcome: "created", lead_id: lead(4), duplicate_of: null },
      { request: 0, index: 2, outcome: "duplicate", lead_id: lead(3), duplicate_of: lead(1) },
      { request: 2, index: 0, outcome: "existing", lead_id: lead(9), duplicate_of: null, reused: true },
      { request: 0, index: 0, outcome: "created", lead_id: lead(1), duplicate_of: null },
      { request: 0, index: 1, outcome: "existing", lead_id: lead(2), duplicate_of: null, reused: false },
    ],
    bases: { [KEY_A]: 7, [KEY_B]: 0 },
    resets: { [KEY_A]: 42, [KEY_B]: 60 },
  });
  assert.deepEqual(replies, [
    {
      client_id: "acme",
      key_id: KEY_A,
      results: [
        { index: 0, outcome: "created", lead_id: lead(1), duplicate_of: null },
        { index: 1, outcome: "existing", lead_id: lead(2), duplicate_of: null, reused: false },
        { index: 2, outcome: "duplicate", lead_id: lead(3), duplicate_of: lead(1) },
      ],
      rate_limit: { limit: 10, remaining: 2, reset: 42 },
    },
    { error: "key_revoked" },
    {
      client_id: "globex",
      key_id: KEY_B,
      results: [{ index: 0, outcome: "existing", lead_id: lead(9), duplicate_of: null, reused: true }],
      rate_limit: { limit: 5, remaining: 4, reset: 60 },
    },
    {
      client_id: "acme",
      key_id: KEY_A,
      results: [{ index: 0, outcome: "created", lead_id: lead(4), duplicate_of: null }],
      rate_limit: { limit: 10, remaining: 1, reset: 42 },
    },
    // Its one item was invalid before the call, so the database has no result for it.
    { client_id: "acme", key_id: KEY_A, results: [], rate_limit: { limit: 10, remaining: 0, reset: 42 } },
  ]);
});

Deno.test("assembleReplies() never reports a negative remaining count", () => {
  const [reply] = assembleReplies({
    replies: [{ client_id: "acme", key_id: KEY_A, rank: 1, limit: 3 }],
    results: [],
    bases: { [KEY_A]: 9 },
    resets: { [KEY_A]: 5 },
  });
  assert.deepEqual(reply, {
    client_id: "acme",
    key_id: KEY_A,
    results: [],
    rate_limit: { limit: 3, remaining: 0, reset: 5 },
  });
});
