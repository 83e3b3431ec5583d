import assert from "node:assert/strict";
import { loadLocalEnv } from "../../scripts/local_env.ts";

Deno.test("loadLocalEnv() reads a .env file as --env-file does, and a missing one is no error", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/.env`;
  const names = ["LAP_ENV_TEST_NEW", "LAP_ENV_TEST_SET", "LAP_ENV_TEST_QUOTED"];
  try {
    await Deno.writeTextFile(
      path,
      '# a comment\nLAP_ENV_TEST_NEW=from-file\nLAP_ENV_TEST_SET=from-file\nLAP_ENV_TEST_QUOTED="a b # c"\n',
    );
    Deno.env.set("LAP_ENV_TEST_SET", "from-environment");
    assert.equal(loadLocalEnv(path), true);
    assert.equal(Deno.env.get("LAP_ENV_TEST_NEW"), "from-file");
    assert.equal(
      Deno.env.get("LAP_ENV_TEST_SET"),
      "from-environment",
      "a variable already set keeps its value",
    );
    assert.equal(Deno.env.get("LAP_ENV_TEST_QUOTED"), "a b # c");
    assert.equal(loadLocalEnv(`${dir}/missing.env`), false);
  } finally {
    for (const name of names) Deno.env.delete(name);
    await Deno.remove(dir, { recursive: true });
  }
});
