/**
 * `.env` for the local entry points (`deno task dev`, `deno task migrate`). Read here rather than with
 * `deno run --env-file`, which warns on every start of a fresh checkout, where there is no `.env` yet.
 */
import process from "node:process";

const DEFAULT_PATH = new URL("../.env", import.meta.url).pathname;

/**
 * Loads the file's variables into the environment when it exists; variables already set keep their values,
 * as with `--env-file`. Returns whether a file was read.
 */
export function loadLocalEnv(path = DEFAULT_PATH): boolean {
  const environment = Deno.env.toObject();
  try {
    process.loadEnvFile(path);
    // Deno's loadEnvFile overwrites variables that are already set; they win, as with --env-file.
    for (const [name, value] of Object.entries(environment)) Deno.env.set(name, value);
    return true;
  } catch (error) {
    if ((error as { code?: string }).code === "ENOENT") return false;
    throw error;
  }
}
