/**
 * Each request's reply from what app.ingest_requests returns for a group (sql/0049): the database hands
 * back the parts (admission, every item's result, the key counts) and the reply is put together here,
 * where it costs a few microseconds instead of jsonb copies in the database.
 */
import type { FieldError } from "../_shared/errors.ts";

export type Outcome = "created" | "duplicate" | "existing" | "invalid";

export interface ItemResult {
  index: number;
  outcome: Outcome;
  lead_id: string | null;
  duplicate_of: string | null;
  errors?: FieldError[];
}

/** An item as stored; "reused": an "existing" item whose lead was stored from another body. */
export type StoredItem = ItemResult & { reused?: boolean };

type Refusal = { error: string; scope?: string; client_id?: string; limit?: number; retry_after?: number };

/** One request's reply: a refusal of its key, or its items' results and the key's rate-limit state. */
export type IngestReply =
  | Refusal
  | {
    error?: undefined;
    client_id: string;
    key_id: string;
    results: StoredItem[];
    rate_limit: { limit: number; remaining: number; reset: number };
  };

/** What app.ingest_requests returns for a group of requests. */
export interface IngestCallResult {
  /** One per request, in order: a refusal, or the admitted request's key and place among its key's requests. */
  replies:
    (Refusal | { error?: undefined; client_id: string; key_id: string; rank: number; limit: number })[];
  /** Every item's result, tagged with its request, in no particular order. */
  results: (StoredItem & { request: number })[];
  /** Per key id: the count of its window before this call, and the seconds until that window ends. */
  bases: Record<string, number>;
  resets: Record<string, number>;
}

export function assembleReplies(call: IngestCallResult): IngestReply[] {
  const resultsOf = new Map<number, StoredItem[]>();
  for (const { request, ...item } of call.results) {
    const results = resultsOf.get(request);
    if (results) results.push(item);
    else resultsOf.set(request, [item]);
  }
  return call.replies.map((reply, request) => {
    if (reply.error !== undefined) return reply;
    const { client_id, key_id, rank, limit } = reply;
    return {
      client_id,
      key_id,
      results: (resultsOf.get(request) ?? []).sort((a, b) => a.index - b.index),
      // A request's place is its rank among the call's requests of its key after those counted before.
      rate_limit: {
        limit,
        remaining: Math.max(limit - call.bases[key_id] - rank, 0),
        reset: call.resets[key_id],
      },
    };
  });
}
