/**
 * The test runner's housekeeping (scripts/test.ts): embedded clusters left by a killed run are removed by the
 * next one, and those of runs still going are left alone.
 */
import assert from "node:assert/strict";
import { freePort, startEmbeddedPostgres } from "../../scripts/embedded_postgres.ts";
import { removeAbandonedClusters } from "../../scripts/test.ts";
import { test } from "../_helpers.ts";

const DATA = new URL("../../.data/", import.meta.url).pathname;

const exists = (path: string) => Deno.stat(path).then(() => true, () => false);

async function listening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

test("the test runner removes the clusters of runs that are gone and keeps those of live ones", async () => {
  // A process that has exited: its pid names the abandoned cluster.
  const gone = new Deno.Command("true").spawn();
  await gone.status;
  const abandoned = `${DATA}test-probe-${gone.pid}`;
  const live = `${DATA}test-probe-${Deno.pid}`;
  const pg = await startEmbeddedPostgres({ dataDir: abandoned, port: freePort() });
  await Deno.mkdir(live, { recursive: true });
  try {
    assert.ok(await listening(pg.port), "the abandoned cluster's server runs");
    await removeAbandonedClusters();
    assert.equal(await listening(pg.port), false, "TR-01: its server is stopped");
    assert.equal(await exists(abandoned), false, "TR-02: its data directory is deleted");
    assert.equal(await exists(`${abandoned}.lock`), false, "TR-02: and its lock file");
    assert.ok(await exists(live), "TR-03: a live run's directory is kept");
  } finally {
    await pg.remove();
    await Deno.remove(live, { recursive: true });
  }
});
