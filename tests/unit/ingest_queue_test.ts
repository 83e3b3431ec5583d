/**
 * The ingest queue's grouping rules (functions/ingest/ingest.queue.ts) with a database call the test answers
 * by hand, so what is in flight at each moment is known exactly.
 */
import assert from "node:assert/strict";
import { IngestQueue, type IngestRequest } from "../../functions/ingest/ingest.queue.ts";

const request = (items: number): IngestRequest => ({
  key_hash: "00",
  origin: null,
  scope: items > 1 ? "ingest:batch" : "ingest:single",
  items: Array.from({ length: items }, (_, index) => ({ index })),
});

/** A queue whose calls wait until the test ends them; each reply is the number of items the request had. */
function manualQueue(options: { maxCalls: number; maxItems: number; overlapItems: number }) {
  const calls: Array<{ requests: IngestRequest[]; finish: () => void }> = [];
  const queue = new IngestQueue<number>((requests) =>
    new Promise((resolve) => {
      calls.push({ requests, finish: () => resolve(requests.map((r) => r.items.length)) });
    }), options);
  return { queue, calls };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("a lone request goes at once; the ones that arrive meanwhile wait and leave as one group", async () => {
  const { queue, calls } = manualQueue({ maxCalls: 2, maxItems: 500, overlapItems: 250 });
  const first = queue.submit(request(1));
  assert.equal(calls.length, 1, "IQ-01: no call in flight, so the first request is sent at once");
  const waiting = Array.from({ length: 5 }, () => queue.submit(request(1)));
  assert.equal(calls.length, 1, "IQ-02: five single leads do not open a second call beside the first");
  calls[0].finish();
  assert.equal(await first, 1);
  await settle();
  assert.equal(calls.length, 2);
  assert.equal(calls[1].requests.length, 5, "IQ-03: the waiting requests leave together");
  calls[1].finish();
  assert.deepEqual(await Promise.all(waiting), [1, 1, 1, 1, 1], "IQ-04: each gets its own reply");
});

Deno.test("a second call starts beside a running one once enough items wait, never more than maxCalls", async () => {
  const { queue, calls } = manualQueue({ maxCalls: 2, maxItems: 500, overlapItems: 250 });
  const running = queue.submit(request(1));
  const small = queue.submit(request(100));
  assert.equal(calls.length, 1, "IQ-05: 100 waiting items are not enough for a second call");
  const batch = queue.submit(request(200));
  assert.equal(calls.length, 2, "IQ-06: 300 waiting items start a second call beside the first");
  assert.deepEqual(calls[1].requests.map((r) => r.items.length), [100, 200]);
  const more = queue.submit(request(500));
  assert.equal(calls.length, 2, "IQ-07: two calls are the most in flight");
  calls[0].finish();
  await settle();
  assert.equal(calls.length, 3, "IQ-08: a freed slot takes the next group");
  assert.deepEqual(calls[2].requests.map((r) => r.items.length), [500]);
  calls[1].finish();
  calls[2].finish();
  assert.deepEqual(await Promise.all([running, small, batch, more]), [1, 100, 200, 500]);
});

Deno.test("a group never carries more than maxItems", async () => {
  const { queue, calls } = manualQueue({ maxCalls: 1, maxItems: 500, overlapItems: 250 });
  const replies = [queue.submit(request(1)), queue.submit(request(300)), queue.submit(request(300))];
  calls[0].finish();
  await settle();
  assert.deepEqual(calls[1].requests.map((r) => r.items.length), [300], "IQ-09: 300 + 300 > 500");
  calls[1].finish();
  await settle();
  assert.deepEqual(calls[2].requests.map((r) => r.items.length), [300]);
  calls[2].finish();
  assert.deepEqual(await Promise.all(replies), [1, 300, 300]);
});

/**
 * A queue whose first call (a lone request) succeeds, whose groups fail with `error`, and whose requests sent
 * again alone end as `alone` says.
 */
function failingQueue(error: Error, alone: (request: IngestRequest) => number | Error) {
  const calls: IngestRequest[][] = [];
  const queue = new IngestQueue<number>(
    (requests) => {
      calls.push(requests);
      if (calls.length === 1) return Promise.resolve([requests[0].items.length]);
      if (requests.length > 1) return Promise.reject(error);
      const outcome = alone(requests[0]);
      return outcome instanceof Error ? Promise.reject(outcome) : Promise.resolve([outcome]);
    },
    { maxCalls: 1, maxItems: 500, overlapItems: 250 },
    (failure) => failure === error && error.message === "group-wide",
  );
  return { queue, calls };
}

Deno.test("a failed group's requests are sent again alone, so each meets only its own error", async () => {
  const own = new Error("request 2's own");
  const { queue, calls } = failingQueue(
    new Error("caused by one request"),
    (request) => request.items.length === 2 ? own : request.items.length,
  );
  const first = queue.submit(request(1));
  const group = [1, 2, 3].map((items) => queue.submit(request(items)));
  assert.equal(await first, 1);
  const outcomes = await Promise.allSettled(group);
  assert.deepEqual(
    outcomes.map((o) => o.status === "fulfilled" ? o.value : o.reason),
    [1, own, 3],
    "IQ-10: the others are stored; only the request at fault gets its error",
  );
  assert.deepEqual(calls.map((c) => c.length), [1, 3, 1, 1, 1], "IQ-11: the group once, then each alone");
});

Deno.test("a failure every request would meet (a lock or statement timeout) ends the group without resending", async () => {
  const groupWide = new Error("group-wide");
  const { queue, calls } = failingQueue(groupWide, () => new Error("IQ-12: nothing is sent alone"));
  const first = queue.submit(request(1));
  const group = [1, 2, 3].map((items) => queue.submit(request(items)));
  await first;
  const outcomes = await Promise.allSettled(group);
  assert.deepEqual(
    outcomes.map((o) => o.status === "rejected" && o.reason),
    [groupWide, groupWide, groupWide],
    "IQ-13: every request of the group gets the group's error",
  );
  assert.deepEqual(
    calls.map((c) => c.length),
    [1, 3],
    "IQ-14: one call, so the wait is not repeated per request",
  );
});
