/**
 * `deno task test`: runs every test against a fresh database and prints "N passed, N failed" last.
 * The server is DATABASE_URL's when set, else 127.0.0.1:5432 when one answers, else the embedded
 * PostgreSQL (so a machine with no database still runs everything). The database is dropped afterwards.
 *
 *   deno task test                     # everything
 *   deno task test tests/e2e/auth_test.ts   # some files
 */
import postgres from "postgres";
import { findServer, withDatabase } from "./database_server.ts";
import { removeEmbeddedCluster } from "./embedded_postgres.ts";
import { migrate } from "./migrate.ts";

/**
 * The whole run's time limit (TEST_TIMEOUT_MINUTES): the suite takes about two minutes, so a run still going
 * after this is hung, and is stopped and counted as failed rather than left to use up CI's time.
 */
const timeoutMinutes = Number(Deno.env.get("TEST_TIMEOUT_MINUTES") ?? 20);

/** Runs deno test, echoing its output, and returns the exit code with the passed/failed counts. */
async function runDenoTest(args: string[], env: Record<string, string>) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--parallel", ...args],
    env,
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  let timedOut = false;
  const watchdog = setTimeout(() => {
    timedOut = true;
    console.error(
      `\nThe tests ran longer than ${timeoutMinutes} minutes (TEST_TIMEOUT_MINUTES); stopping them.`,
    );
    child.kill("SIGKILL");
  }, timeoutMinutes * 60_000);
  let tail = "";
  const decoder = new TextDecoder();
  for await (const chunk of child.stdout) {
    await Deno.stdout.write(chunk);
    tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
  }
  const { code } = await child.status;
  clearTimeout(watchdog);
  if (timedOut) return { code: 1, passed: 0, failed: 1 };
  // deno test ends with "ok | 12 passed (3 steps) | 0 failed (…)" or "FAILED | 10 passed | 2 failed".
  // deno-lint-ignore no-control-regex -- strips the colour codes deno test prints
  const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
  const summary = [
    ...plain.matchAll(/(\d+) passed(?: \((\d+) steps?\))? \| (\d+) failed(?: \((\d+) steps?\))?/g),
  ].pop();
  const passed = summary ? Number(summary[1]) + Number(summary[2] ?? 0) : 0;
  const failed = summary ? Number(summary[3]) + Number(summary[4] ?? 0) : code === 0 ? 0 : 1;
  return { code, passed, failed };
}

const DATA = new URL("../.data/", import.meta.url).pathname;

/**
 * Removes the embedded clusters of test runs that are gone (.data/test-<purpose>-<pid>, named after the
 * process that made them): a run stopped by its time limit or killed leaves its servers running.
 */
export async function removeAbandonedClusters() {
  let entries: Deno.DirEntry[];
  try {
    entries = await Array.fromAsync(Deno.readDir(DATA));
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return;
    throw error;
  }
  for (const entry of entries) {
    const pid = entry.isDirectory ? entry.name.match(/^test-[a-z]+-(\d+)$/)?.[1] : undefined;
    if (!pid || await Deno.stat(`/proc/${pid}`).then(() => true, () => false)) continue;
    console.error(`Removing ${entry.name}, left by a test run that is gone`);
    await removeEmbeddedCluster(DATA + entry.name);
  }
}

if (import.meta.main) {
  await removeAbandonedClusters();
  // Without a server on 5432, a cluster of this run's own, so concurrent runs never stop each other's.
  const embedded = { dataDir: `${DATA}test-postgres-${Deno.pid}` };
  const server = await findServer(embedded);
  const database = `lap_test_${Date.now()}_${Deno.pid}`;
  const admin = postgres(server.adminUrl, { max: 1, onnotice: () => {} });
  await admin.unsafe(`create database ${database}`);
  const url = withDatabase(server.adminUrl, database);
  let result = { code: 1, passed: 0, failed: 1 };
  try {
    await migrate(url, { quiet: true });
    const args = Deno.args.length ? Deno.args : ["tests/"];
    result = await runDenoTest(args, {
      ...Deno.env.toObject(),
      APP_ENV: "test",
      LOG_LEVEL: Deno.env.get("LOG_LEVEL") ?? "error",
      TEST_DATABASE_URL: url,
      TEST_ADMIN_DATABASE_URL: server.adminUrl,
    });
  } catch (error) {
    // The migrations failed: no test ran, and the run counts as one failure.
    console.error(error);
  } finally {
    await admin.unsafe(`drop database if exists ${database} with (force)`);
    await admin.end();
    if (server.stop) await removeEmbeddedCluster(embedded.dataDir);
  }
  await removeAbandonedClusters();
  console.log(`${result.passed} passed, ${result.failed} failed`);
  Deno.exit(result.code);
}
