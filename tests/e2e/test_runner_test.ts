/**
 * The test runner's housekeeping (scripts/test.ts): embedded clusters left by a killed run are removed by the
 * next one, and those of runs still going are left alone.
 */
import assert from "node:assert/strict";
import { startEmbeddedPostgres } from "../../scripts/embedded_postgres.ts";
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
  const pg = await startEmbeddedPostgres({ dataDir: abandoned });
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

test("an embedded server whose free port was taken before it bound starts on another", async () => {
  // Held open, as an outgoing connection or another process could hold the port freePort() had returned.
  const holder = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const taken = (holder.addr as Deno.NetAddr).port;
  const offered: number[] = [];
  const pickPort = () => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const free = (listener.addr as Deno.NetAddr).port;
    listener.close();
    offered.push(offered.length === 0 ? taken : free);
    return offered.at(-1)!;
  };
  const pg = await startEmbeddedPostgres({ dataDir: `${DATA}test-port-${Deno.pid}` }, pickPort);
  try {
    assert.equal(offered.length, 2, "TR-04: the taken port is given up for another");
    assert.equal(pg.port, offered[1], "TR-04: the server runs on the second port");
    assert.ok(await listening(pg.port), "TR-04: and accepts connections");
  } finally {
    holder.close();
    await pg.remove();
  }
});
