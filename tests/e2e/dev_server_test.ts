/**
 * The README's first command, `deno task dev` (functions/main/index.ts), as a process of its own: on a
 * brand-new database it migrates, seeds the demo data and serves every function with the worker beside them,
 * and it stops cleanly on SIGTERM. A port that is taken is refused with a clear message before the database
 * is touched (a second `./run dev` next to a running one).
 */
import assert from "node:assert/strict";
import { freePort } from "../../scripts/embedded_postgres.ts";
import { test, withFreshDatabase } from "../_helpers.ts";

const ENTRY = new URL("../../functions/main/index.ts", import.meta.url).pathname;

function startDev(env: Record<string, string>) {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ENTRY],
    env: { ...Deno.env.toObject(), APP_ENV: "development", LOG_LEVEL: "error", ...env },
    stdout: "piped",
    stderr: "piped",
  }).spawn();
}

/** Reads a stream until it holds `text`; fails when the stream ends first. */
async function readUntil(stream: ReadableStream<Uint8Array>, text: string): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  while (!seen.includes(text)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the process ended before printing "${text}":\n${seen}`);
    seen += value;
  }
  reader.releaseLock();
  return seen;
}

test("deno task dev migrates and seeds a new database, serves the functions and stops on SIGTERM", async () => {
  await withFreshDatabase(async (url) => {
    const port = freePort();
    const dev = startDev({ DATABASE_URL: url, PORT: String(port) });
    const stderr = new Response(dev.stderr).text();
    try {
      const banner = await readUntil(dev.stdout, "demo logins");
      assert.match(banner, /anon key eyJ/, "DEV-01: it prints the anon key and the demo logins");
      const base = `http://127.0.0.1:${port}/functions/v1`;
      const health = await fetch(`${base}/api/health`);
      assert.equal(health.status, 200, "DEV-02: the api answers");
      await health.body?.cancel();
      const login = await fetch(`${base}/auth/login`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ email: "owner@acme.test", password: "demo-password" }),
      });
      assert.equal(login.status, 200, "DEV-03: a demo login works on the seeded data");
      const { access_token: token } = await login.json();
      const members = await fetch(`${base}/api/clients/acme-realty/members`, {
        headers: { authorization: `Bearer ${token}` },
      });
      assert.equal(members.status, 200, "DEV-04: and reads its client");
      await members.body?.cancel();
    } finally {
      dev.kill("SIGTERM");
    }
    const status = await dev.status;
    assert.equal(status.code, 0, `DEV-05: SIGTERM stops it cleanly:\n${await stderr}`);
  });
});

test("deno task dev refuses a port that is taken, with a clear message and before touching the database", async () => {
  const listener = Deno.listen({ hostname: "0.0.0.0", port: 0 });
  try {
    const { port } = listener.addr as Deno.NetAddr;
    // An address no database answers: the check must come first, or this would be a connection error.
    const dev = startDev({ DATABASE_URL: "postgres://postgres@127.0.0.1:1/none", PORT: String(port) });
    const [status, stdout, stderr] = await Promise.all([
      dev.status,
      new Response(dev.stdout).text(),
      new Response(dev.stderr).text(),
    ]);
    assert.equal(status.code, 1, `DEV-06: it exits with 1\n${stdout}${stderr}`);
    assert.match(stderr, new RegExp(`Port ${port} is already in use`), "DEV-07: saying why");
    assert.match(stderr, /PORT=/, "DEV-08: and how to pick another port");
    assert.doesNotMatch(stderr, /at listen|Uncaught/, "DEV-09: not as a stack trace");
  } finally {
    listener.close();
  }
});
