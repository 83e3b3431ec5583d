/**
 * Baseline (a) for the ingest benchmarks: the least an HTTP service can do to store a lead. Bare Hono and
 * postgres.js, no authentication, validation, normalisation, rate limits or triggers: one INSERT (one
 * multi-row INSERT for a batch) of the same columns into bench.plain_leads, which has only a primary key.
 *
 *   DATABASE_URL=... BENCH_PORT=0 BENCH_POOL=20 deno run -A scripts/bench/baseline_server.ts
 *
 * Prints "listening <port>" once it accepts requests; stops on SIGTERM.
 */
import { Hono } from "hono";
import postgres from "postgres";

const COLUMNS = [
  "client_id",
  "source",
  "full_name",
  "email",
  "phone",
  "utm_source",
  "utm_medium",
  "utm_campaign",
  "consent",
  "custom",
  "raw_payload",
] as const;

type Item = Record<string, unknown>;

/** The row the platform would store for a lead, minus everything the platform derives. */
function row(item: Item) {
  return {
    client_id: "bench-ingest",
    source: "website",
    full_name: item.full_name ?? null,
    email: item.email ?? null,
    phone: item.phone ?? null,
    utm_source: item.utm_source ?? null,
    utm_medium: item.utm_medium ?? null,
    utm_campaign: item.utm_campaign ?? null,
    consent: item.consent ?? false,
    custom: item.custom ?? {},
    raw_payload: item,
  };
}

if (import.meta.main) {
  const url = Deno.env.get("DATABASE_URL");
  if (!url) throw new Error("DATABASE_URL is not set");
  const sql = postgres(url, { max: Number(Deno.env.get("BENCH_POOL") ?? "20"), onnotice: () => {} });
  const app = new Hono();
  app.post("/leads", async (c) => {
    const body = await c.req.json() as Item & { leads?: Item[] };
    if (Array.isArray(body.leads)) {
      const ids = await sql<{ id: string }[]>`
        insert into bench.plain_leads ${sql(body.leads.map(row), COLUMNS)} returning id`;
      return c.json({ results: ids.map((r, index) => ({ index, lead_id: r.id })) }, 201);
    }
    const [{ id }] = await sql<{ id: string }[]>`
      insert into bench.plain_leads ${sql(row(body), COLUMNS)} returning id`;
    return c.json({ lead_id: id }, 201);
  });
  const server = Deno.serve({
    port: Number(Deno.env.get("BENCH_PORT") ?? "0"),
    hostname: "127.0.0.1",
    onListen: ({ port }) => console.log(`listening ${port}`),
  }, app.fetch);
  Deno.addSignalListener("SIGTERM", async () => {
    await server.shutdown();
    await sql.end({ timeout: 2 });
    Deno.exit(0);
  });
}
