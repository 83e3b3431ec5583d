import assert from "node:assert/strict";
import { createClient } from "@supabase/supabase-js";
import { SignJWT } from "jose";
import { loadConfig } from "../../functions/_shared/config.ts";
import { createTeam, PASSWORD, startStack, test } from "../_helpers.ts";

const stack = startStack();
const team = await createTeam();
const anonKey = await new SignJWT({ role: "anon", iss: "supabase" }).setProtectedHeader({ alg: "HS256" })
  .sign(new TextEncoder().encode(loadConfig({}).secrets.jwt_secret));
const supabase = createClient(stack.url, anonKey, {
  auth: { persistSession: false, autoRefreshToken: false },
});

test("supabase-js functions.invoke() reaches the api and auth functions of the local stack", async () => {
  const health = await supabase.functions.invoke("api/health", { method: "GET" });
  assert.equal(health.error, null);
  assert.deepEqual(health.data, { status: "ok", database: "ok" });

  const login = await supabase.functions.invoke("auth/login", {
    body: { email: team.users.owner.email, password: PASSWORD },
  });
  assert.equal(login.error, null);
  const token = login.data.access_token;

  const clients = await supabase.functions.invoke("api/clients", {
    method: "GET",
    headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(clients.error, null);
  assert.deepEqual(clients.data.data.map((c: { id: string }) => c.id), [team.clientId]);
});

test("supabase-js surfaces a refused call as a FunctionsHttpError with the problem body", async () => {
  const reply = await supabase.functions.invoke("api/clients", { method: "GET" });
  assert.ok(reply.error, "the anon key alone is not enough");
  assert.equal(reply.error.name, "FunctionsHttpError");
  const problem = await reply.error.context.json();
  assert.equal(problem.status, 401);
  assert.equal(problem.code, "invalid_token");
});
