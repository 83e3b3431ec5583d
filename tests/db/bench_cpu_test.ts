/**
 * The benchmark's CPU accounting of the database (scripts/bench/_cpu.ts): what `deno task bench` reports as
 * the database's CPU time per request must hold every backend's work, including a backend that came and
 * went during the run as pgbench's do. A database of its own, so no other test file's backends count.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { databaseCpuMeter, processCpuSeconds } from "../../scripts/bench/_cpu.ts";
import { test, withFreshDatabase } from "../_helpers.ts";

test("databaseCpuMeter() counts a backend that connected, worked and left during the run", async () => {
  await withFreshDatabase(async (url) => {
    const observer = postgres(url, { max: 1, onnotice: () => {} });
    try {
      const meter = await databaseCpuMeter(observer, 20);
      const visitor = postgres(url, { max: 1, onnotice: () => {} });
      let visitorSeconds: number | null;
      try {
        const [{ pid }] = await visitor<{ pid: number }[]>`
          select pg_backend_pid() as pid, count(*) from generate_series(1, 2000000)`;
        visitorSeconds = await processCpuSeconds(pid);
        // Long enough for the meter's next reading, which is all it keeps of a backend that leaves.
        await new Promise((resolve) => setTimeout(resolve, 200));
      } finally {
        await visitor.end();
      }
      const used = await meter.stop();
      assert.ok(visitorSeconds !== null && visitorSeconds > 0, "the backend's own CPU time is readable here");
      assert.ok(
        used !== null && used >= visitorSeconds,
        `counted ${used} s, the visitor used ${visitorSeconds} s`,
      );
      // Besides the visitor, only the observer's own readings ran here.
      assert.ok(used < visitorSeconds + 0.5, `counted ${used} s, the visitor used ${visitorSeconds} s`);
    } finally {
      await observer.end();
    }
  });
});
