/**
 * runSingleUser (scripts/embedded_postgres.ts), which `deno task bench:instructions` measures through: one
 * backend on a stopped cluster, reading its commands from stdin, under a wrapper command when given.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { runSingleUser, startEmbeddedPostgres } from "../../scripts/embedded_postgres.ts";
import { test } from "../_helpers.ts";

const DATA = new URL("../../.data/", import.meta.url).pathname;

test("postgres --single runs the given commands on the stopped cluster, under a wrapper when given", async () => {
  const dataDir = `${DATA}test-single-${Deno.pid}`;
  const pg = await startEmbeddedPostgres({ dataDir });
  try {
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    await sql`create table counted (n int)`;
    await sql`insert into counted select generate_series(1, 3)`;
    await sql.end();
    await pg.stop();

    // Commands end with ";" and an empty line (-j), so one may span lines.
    const input = "insert into counted\nvalues (4);\n\nselect sum(n) as total from counted;\n\n";
    const plain = await runSingleUser(dataDir, "postgres", input);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /total = "10"/, "SU-01: both commands ran, the second seeing the first");

    // `env` runs what follows it, as valgrind does, and shows that the command went through it.
    const wrapped = await runSingleUser(dataDir, "postgres", "select 1 as one;\n\n", [
      "env",
      "LAP_WRAPPED=1",
    ]);
    assert.equal(wrapped.code, 0, wrapped.stderr);
    assert.match(wrapped.stdout, /one = "1"/, "SU-02: the wrapper ran the backend");

    const failed = await runSingleUser(dataDir, "postgres", "select * from missing_table;\n\n");
    assert.match(failed.stderr + failed.stdout, /ERROR:\s+relation "missing_table" does not exist/, "SU-03");

    await pg.start();
    const after = postgres(pg.url, { max: 1, onnotice: () => {} });
    const [{ total }] = await after<{ total: number }[]>`select sum(n)::int as total from counted`;
    await after.end();
    assert.equal(total, 10, "SU-04: what the single backend wrote is there for the server");
  } finally {
    await pg.remove();
  }
});
