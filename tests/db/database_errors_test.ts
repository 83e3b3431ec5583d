/**
 * apiErrorFromDb() on errors raised by the real database: what validation let through reaches the caller as
 * a 4xx with a generic sentence, and a clash with a concurrent transaction as a 503 to retry, never as a 500
 * or with PostgreSQL's own text.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { asUser, HIERARCHY_STATEMENT_TIMEOUT, USER_STATEMENT_TIMEOUT } from "../../functions/_shared/db.ts";
import { apiErrorFromDb, UNSTORABLE_TEXT_MESSAGE } from "../../functions/_shared/errors.ts";
import { db, test, withPrivateDatabase } from "../_helpers.ts";

async function refusalOf(query: Promise<unknown>) {
  const error = await query.then(() => undefined, (error: unknown) => error);
  assert.ok(error, "the database refused the statement");
  const mapped = apiErrorFromDb(error);
  return mapped && { status: mapped.status, code: mapped.code, detail: mapped.message };
}

test("DE-01: a NUL character in text or jsonb is a 422 invalid_character", async () => {
  const expected = { status: 422, code: "invalid_character", detail: UNSTORABLE_TEXT_MESSAGE };
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

test("DE-03: a deadlock and a serialisation failure are a 503 concurrent_change to send again", async () => {
  await withPrivateDatabase(async (sql, url) => {
    await sql`create table scratch (id int primary key, n int not null)`;
    await sql`insert into scratch values (1, 0), (2, 0)`;
    const [first, second] = [1, 2].map(() => postgres(url, { max: 1, onnotice: () => {} }));
    try {
      // Each transaction updates one row, then the other's: PostgreSQL fails one of them.
      let firstHolds!: () => void, secondHolds!: () => void;
      const held = [new Promise<void>((r) => firstHolds = r), new Promise<void>((r) => secondHolds = r)];
      const outcomes = await Promise.allSettled([
        first.begin(async (tx) => {
          await tx`update scratch set n = 1 where id = 1`;
          firstHolds();
          await held[1];
          await tx`update scratch set n = 1 where id = 2`;
        }),
        second.begin(async (tx) => {
          await tx`update scratch set n = 2 where id = 2`;
          secondHolds();
          await held[0];
          await tx`update scratch set n = 2 where id = 1`;
        }),
      ]);
      const failed = outcomes.filter((outcome) => outcome.status === "rejected");
      assert.equal(failed.length, 1, "one of the two transactions was chosen to fail");
      const deadlock = (failed[0] as PromiseRejectedResult).reason;
      assert.equal(deadlock.code, "40P01");

      // A repeatable-read transaction updating a row changed since its snapshot.
      const serialisation = await first.begin("isolation level repeatable read", async (tx) => {
        await tx`select n from scratch where id = 1`;
        await second`update scratch set n = 3 where id = 1`;
        await tx`update scratch set n = 4 where id = 1`;
      }).then(() => undefined, (error: unknown) => error as { code: string });
      assert.equal(serialisation?.code, "40001");

      for (const error of [deadlock, serialisation]) {
        const mapped = apiErrorFromDb(error);
        assert.deepEqual(
          mapped &&
            { status: mapped.status, code: mapped.code, detail: mapped.message, headers: mapped.headers },
          {
            status: 503,
            code: "concurrent_change",
            detail: "The request met a concurrent change; send it again",
            headers: { "retry-after": "1" },
          },
        );
      }
    } finally {
      await Promise.all([first.end(), second.end()]);
    }
  });
});

test("DE-04: a user's transaction has a statement timeout, and a statement it stops is a 503 query_timeout", async () => {
  const claims = {
    sub: crypto.randomUUID(),
    role: "authenticated" as const,
    session_id: "s",
    client_id: null,
  };
  const [{ timeout }] = await asUser(
    db(),
    claims,
    (tx) => tx`select current_setting('statement_timeout') as timeout`,
  );
  assert.equal(timeout, USER_STATEMENT_TIMEOUT);
  const [{ longer }] = await asUser(
    db(),
    claims,
    (tx) => tx`select current_setting('statement_timeout') as longer`,
    HIERARCHY_STATEMENT_TIMEOUT,
  );
  assert.equal(longer, HIERARCHY_STATEMENT_TIMEOUT);
  const [{ outside }] = await db()`select current_setting('statement_timeout') as outside`;
  assert.equal(outside, "0", "the timeout ends with the user's transaction");

  // The same stop, shortened: a statement waiting on a row lock another transaction holds.
  await withPrivateDatabase(async (sql, url) => {
    await sql`create table scratch (id int primary key)`;
    await sql`insert into scratch values (1)`;
    const holder = postgres(url, { max: 1, onnotice: () => {} });
    try {
      let locked!: () => void, release!: () => void;
      const isLocked = new Promise<void>((r) => locked = r);
      const released = new Promise<void>((r) => release = r);
      const holding = holder.begin(async (tx) => {
        await tx`select id from scratch where id = 1 for update`;
        locked();
        await released;
      });
      await isLocked;
      const stopped = await sql.begin(async (tx) => {
        await tx`select set_config('statement_timeout', '100ms', true)`;
        await tx`update scratch set id = 1 where id = 1`;
      }).then(() => undefined, (error: unknown) => error as { code: string });
      release();
      await holding;
      assert.equal(stopped?.code, "57014");
      const mapped = apiErrorFromDb(stopped);
      assert.deepEqual(mapped && { status: mapped.status, code: mapped.code, headers: mapped.headers }, {
        status: 503,
        code: "query_timeout",
        headers: { "retry-after": "5" },
      });
    } finally {
      await holder.end();
    }
  });
});
