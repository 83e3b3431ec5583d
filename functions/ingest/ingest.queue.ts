/**
 * Natural grouping of ingest requests: a request goes to the database at once when no call is in flight;
 * while one is, the requests that arrive wait and leave together in the next call (a second call starts
 * beside the first only for enough waiting items, such as a full batch). No timer, so a lone request is
 * never delayed, and under load one call (one transaction, one commit) carries many requests. Each request
 * still gets its own reply: the database answers every request of a group on its own
 * (app.ingest_requests, sql/0018_grouped_ingest.sql), and when a grouped call fails as a whole each of its
 * requests is sent again alone, so an error reaches only the request that caused it. A failure that is not
 * any request's doing (the database unreachable, a lock or statement timeout) ends the whole group instead:
 * each request would meet it again, and a wait would be repeated per request.
 */

/** One request as app.ingest_requests takes it. */
export interface IngestRequest {
  /** Hex SHA-256 of the API key. */
  key_hash: string;
  origin: string | null;
  scope: "ingest:single" | "ingest:batch";
  items: Record<string, unknown>[];
}

interface Waiting<R> {
  request: IngestRequest;
  resolve: (reply: R) => void;
  reject: (error: unknown) => void;
}

export interface QueueOptions {
  /** Database calls in flight at once; requests wait for a free one. */
  maxCalls: number;
  /** Most items one call carries (a request bigger than that goes alone). */
  maxItems: number;
  /**
   * Items that must be waiting before a call starts beside one already in flight. Fewer wait for the running
   * call to end and leave as one bigger group, which costs the database less per item.
   */
  overlapItems: number;
}

/**
 * Sends requests through `send` (one database call for a list of requests, replies in the same order),
 * grouping those that wait for a free call slot.
 */
export class IngestQueue<R> {
  #waiting: Waiting<R>[] = [];
  #head = 0;
  #waitingItems = 0;
  #running = 0;

  constructor(
    private readonly send: (requests: IngestRequest[]) => Promise<R[]>,
    private readonly options: QueueOptions,
    /** Whether an error fails every request of a group alike, so sending each alone cannot help. */
    private readonly failsEveryRequest: (error: unknown) => boolean = () => false,
  ) {}

  /** The request's own reply, or the error its own call raised. */
  submit(request: IngestRequest): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.#waiting.push({ request, resolve, reject });
      this.#waitingItems += request.items.length;
      this.#pump();
    });
  }

  #pump() {
    while (this.#running < this.options.maxCalls && this.#head < this.#waiting.length) {
      if (this.#running > 0 && this.#waitingItems < this.options.overlapItems) break;
      const group = [this.#waiting[this.#head++]];
      let items = group[0].request.items.length;
      while (this.#head < this.#waiting.length) {
        const next = this.#waiting[this.#head];
        if (items + next.request.items.length > this.options.maxItems) break;
        items += next.request.items.length;
        group.push(next);
        this.#head++;
      }
      this.#waitingItems -= items;
      if (this.#head === this.#waiting.length) {
        this.#waiting = [];
        this.#head = 0;
      }
      this.#running++;
      this.#run(group).finally(() => {
        this.#running--;
        this.#pump();
      });
    }
  }

  async #run(group: Waiting<R>[]) {
    let replies: R[];
    try {
      replies = await this.send(group.map((waiting) => waiting.request));
    } catch (error) {
      if (group.length === 1 || this.failsEveryRequest(error)) {
        for (const waiting of group) waiting.reject(error);
        return;
      }
      // Alone, each request meets only its own error.
      await Promise.all(group.map(async (waiting) => {
        try {
          const [reply] = await this.send([waiting.request]);
          waiting.resolve(reply);
        } catch (own) {
          waiting.reject(own);
        }
      }));
      return;
    }
    if (replies.length !== group.length) {
      const error = new Error(`ingest_requests answered ${replies.length} of ${group.length} requests`);
      for (const waiting of group) waiting.reject(error);
      return;
    }
    group.forEach((waiting, i) => waiting.resolve(replies[i]));
  }
}
