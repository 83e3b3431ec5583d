import assert from "node:assert/strict";
import { cpuPerRequest, medianRound, msPerRequest } from "../../scripts/bench/_ingest.ts";

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

Deno.test("msPerRequest() and cpuPerRequest() give each system the CPU of the parts it has", () => {
  assert.equal(msPerRequest(3.2, 20_000), 0.16);
  assert.equal(msPerRequest(null, 20_000), null);
  assert.equal(msPerRequest(1, 0), null, "no requests, no figure");
  const platform = {
    server_cpu_ms_per_request: 0.14,
    database_cpu_ms_per_request: 0.33,
    worker_cpu_ms_per_request: 0.04,
  };
  assert.equal(cpuPerRequest(platform), 0.51, "server, database and worker");
  assert.equal(cpuPerRequest({ ...platform, worker_cpu_ms_per_request: null }), 0.47, "(a) has no worker");
  assert.equal(
    cpuPerRequest({
      server_cpu_ms_per_request: null,
      database_cpu_ms_per_request: 0.12,
      worker_cpu_ms_per_request: null,
    }),
    0.12,
    "pgbench: the database alone",
  );
  assert.equal(cpuPerRequest({ ...platform, database_cpu_ms_per_request: null }), null);
});
