import assert from "node:assert/strict";
import { medianRound } from "../../scripts/bench/_ingest.ts";

const run = (rps: number) =>
  ({ requests_per_second: rps }) as Parameters<typeof medianRound>[0][0]["platform"];

Deno.test("medianRound() picks the round with the median platform/(a) ratio, both figures from that round", () => {
  const rounds = [
    { platform: run(2868), baseline_http: run(5198) },
    { platform: run(3118), baseline_http: run(5581) },
    { platform: run(3535), baseline_http: run(4649) },
  ];
  // Ratios 0.552, 0.559, 0.760: the middle one, not the median of each column (3,118 / 5,198 = 0.60).
  assert.equal(medianRound(rounds), rounds[1]);
  assert.equal(medianRound([rounds[2], rounds[0]]), rounds[0], "the lower middle of an even count");
  assert.equal(
    medianRound([{ platform: null, baseline_http: run(6000) }, rounds[2]]),
    rounds[2],
    "a round missing either system does not count",
  );
  assert.equal(medianRound([{ platform: null, baseline_http: run(6000) }]), null);
});
