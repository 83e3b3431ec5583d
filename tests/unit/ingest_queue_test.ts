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
