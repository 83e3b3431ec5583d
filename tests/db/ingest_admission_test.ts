/**
 * Admission inside the storing call (sql/0045_one_call_ingest.sql): a call reads its key's count without a
 * lock, stores, and adds its requests to the counter last; two calls that read the same count meet at the
 * counter's row, and the one that commits second checks its places against the first's. Each test holds
 * one call's transaction open after its counting, so the other call provably read the old count and waits
 * at the counter.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import type { Sql } from "../../functions/_shared/db.ts";
import { assembleReplies, type IngestCallResult } from "../../functions/ingest/ingest.replies.ts";
import { createClient, db, insertIngestKey, test, testDatabaseUrl, uniq } from "../_helpers.ts";

/** A key of a new client with the given per-minute limit. */
async function keyWithLimit(limit: number) {
  return insertIngestKey(await createClient(), limit);
}

interface Reply {
  error?: string;
  retry_after?: number;
  rate_limit?: { limit: number; remaining: number; reset: number };
  results?: { outcome: string; lead_id: string }[];
}

/** One call of `count` single-lead requests with the key, as the ingest function makes it. */
function ingest(sql: Sql | postgres.TransactionSql, keyHash: string, count: number) {
  const keys = Array.from(
    { length: count },
    () => ({ key_hash: keyHash, origin: null, scope: "ingest:single" }),
  );
  const items = Array.from({ length: count }, () => [{ index: 0, email: `${uniq("lead")}@example.com` }]);
  return sql<{ call: IngestCallResult }[]>`select app.ingest_requests(${sql.json(keys)}, ${
    JSON.stringify(items)
  }) as call`
    .then(([{ call }]) => assembleReplies(call) as Reply[]);
}

/** A window far enough from its end that both calls count in it. */
async function startOfMinute() {
  const intoMinute = (Date.now() / 1000) % 60;
  if (intoMinute > 50) await new Promise((resolve) => setTimeout(resolve, (61 - intoMinute) * 1000));
}

/**
 * Runs `first` in a transaction and holds it open once it has counted, then starts `second` on another
 * connection, waits until it waits for the counter's row lock, and commits the first.
 */
async function raced(keyHash: string, first: number, second: number) {
  const [one, two] = [1, 2].map(() => postgres(testDatabaseUrl(), { max: 1, onnotice: () => {} }));
  try {
    let release!: () => void;
    const released = new Promise<void>((resolve) => release = resolve);
    let counted!: (replies: Reply[]) => void;
    const firstReplies = new Promise<Reply[]>((resolve) => counted = resolve);
    const transaction = one.begin(async (tx) => {
      counted(await ingest(tx, keyHash, first));
      await released;
    });
    await firstReplies;
    const [{ pid }] = await two<{ pid: number }[]>`select pg_backend_pid() as pid`;
    const secondCall = ingest(two, keyHash, second).then(
      (replies) => ({ replies, error: undefined }),
      (error: { code?: string }) => ({ replies: undefined, error }),
    );
    let waited = false;
    for (let i = 0; i < 400 && !waited; i++) {
      const [row] = await db()<{ waiting: boolean }[]>`
        select wait_event_type = 'Lock' as waiting from pg_stat_activity where pid = ${pid}`;
      waited = row?.waiting ?? false;
      if (!waited) await new Promise((resolve) => setTimeout(resolve, 10));
    }
    assert.ok(waited, "the second call waited at the counter for the first to commit");
    release();
    await transaction;
    return { first: await firstReplies, second: await secondCall };
  } finally {
    await Promise.all([one.end(), two.end()]);
  }
}

async function storedLeads(keyId: string): Promise<number> {
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from public.leads l
    join app.api_keys k on k.client_id = l.client_id where k.id = ${keyId}`;
  return count;
}

async function hits(keyId: string): Promise<number> {
  const [{ hits }] = await db()<{ hits: number }[]>`
    select hits from app.rate_limits where key = ${"key:" + keyId}`;
  return hits;
}

test("IA-01: a call whose places another call took first rolls back whole; sent again, it is refused", async () => {
  await startOfMinute();
  const key = await keyWithLimit(2);
  const { first, second } = await raced(key.hash, 2, 1);
  assert.deepEqual(first.map((reply) => reply.results?.[0].outcome), ["created", "created"]);
  assert.equal(second.error?.code, "40001", "the second call read a count of 0 and its place 0 was taken");
  assert.equal(await storedLeads(key.id), 2, "the second call's lead was rolled back");
  assert.equal(await hits(key.id), 2, "and so was its count");
  const [again] = await ingest(db(), key.hash, 1);
  assert.equal(again.error, "rate_limited");
  assert.equal(await storedLeads(key.id), 2);
});

test("IA-02: a call that raced another but still fits is stored and reports its true place", async () => {
  await startOfMinute();
  const key = await keyWithLimit(5);
  const { first, second } = await raced(key.hash, 2, 2);
  assert.deepEqual(first.map((reply) => reply.rate_limit?.remaining), [4, 3]);
  assert.equal(second.error, undefined);
  // It read a count of 0 (remaining 4 and 3), but came after the first call's 2.
  assert.deepEqual(second.replies?.map((reply) => reply.rate_limit?.remaining), [2, 1]);
  assert.equal(await storedLeads(key.id), 4);
  assert.equal(await hits(key.id), 4);
});

test("IA-03: requests over the limit are counted; refused keys are not, and their items are never read", async () => {
  await startOfMinute();
  const key = await keyWithLimit(1);
  const replies = await ingest(db(), key.hash, 3);
  assert.deepEqual(replies.map((reply) => reply.error), [undefined, "rate_limited", "rate_limited"]);
  assert.equal(await hits(key.id), 3);
  // Items that are not even JSON: only a call with an admitted request parses them.
  const [{ refused }] = await db()<{ refused: IngestCallResult }[]>`
    select app.ingest_requests(${db().json([{ key_hash: key.hash, origin: null, scope: "ingest:single" }])},
      'not json') as refused`;
  assert.equal(assembleReplies(refused)[0].error, "rate_limited");
  const unknown = "00".repeat(32);
  const [{ invalid }] = await db()<{ invalid: IngestCallResult }[]>`
    select app.ingest_requests(${db().json([{ key_hash: unknown, origin: null, scope: "ingest:single" }])},
      'not json') as invalid`;
  assert.equal(assembleReplies(invalid)[0].error, "key_invalid");
  assert.equal(await hits(key.id), 4);
});

test("IA-04: a call counted in the window a later call opened reports that window's reset", async () => {
  await startOfMinute();
  const key = await keyWithLimit(5);
  // A call that started after this one crossed into the next minute and counted 3 requests there first.
  await db()`
    insert into app.rate_limits (key, window_start, hits)
    values (${"key:" + key.id}, date_trunc('minute', now()) + interval '1 minute', 3)`;
  const replies = await ingest(db(), key.hash, 3);
  const [{ left }] = await db()<{ left: number }[]>`
    select extract(epoch from date_trunc('minute', now()) + interval '1 minute' - now())::float8 as left`;
  assert.deepEqual(replies.map((reply) => reply.rate_limit?.remaining ?? reply.error), [
    1,
    0,
    "rate_limited",
  ]);
  for (const reply of replies.slice(0, 2)) {
    const reset = reply.rate_limit!.reset;
    assert.ok(reset > left + 55 && reset <= left + 61, `IA-04: reset ${reset} s is the next window's end`);
  }
  const wait = replies[2].retry_after!;
  assert.ok(wait > left + 55 && wait <= left + 61, `IA-04: retry after ${wait} s, when that window ends`);
  assert.equal(await hits(key.id), 6, "all three were counted in that window");
});
