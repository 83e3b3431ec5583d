/**
 * The validation hook reads a JSON body as it arrived (what Hono's validator parsed), and only then: a route
 * whose body is required but may be empty still answers a request that sends no body at all.
 */
import assert from "node:assert/strict";
import { createRoute, z } from "@hono/zod-openapi";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createRouter } from "../../functions/_shared/http.ts";

function app() {
  const router = createRouter("/probe", loadConfig({ APP_ENV: "test" }));
  const route = createRoute({
    method: "post",
    path: "/things",
    request: {
      body: {
        required: true,
        content: { "application/json": { schema: z.object({ note: z.string().optional() }) } },
      },
    },
    responses: { 200: { description: "The body as validated" } },
  });
  router.openapi(route, (c) => c.json({ received: c.req.valid("json") }, 200));
  return router;
}

const post = (init: RequestInit) => app().request("/functions/v1/probe/things", { method: "POST", ...init });

Deno.test("a required body that may be empty: no body at all is validated as {}, not parsed", async () => {
  const reply = await post({});
  assert.equal(reply.status, 200, await reply.clone().text());
  assert.deepEqual(await reply.json(), { received: {} });
});

Deno.test("a JSON body is checked as it arrived: a __proto__ key zod would drop is a 422", async () => {
  const reply = await post({
    headers: { "content-type": "application/json" },
    body: '{"note": "x", "__proto__": {"a": 1}}',
  });
  assert.equal(reply.status, 422, await reply.clone().text());
  const body = await reply.json();
  assert.deepEqual(body.errors.map((e: { path: string; code: string }) => [e.path, e.code]), [
    ["body.__proto__", "reserved_key"],
  ]);
});
