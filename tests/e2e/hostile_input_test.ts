/**
 * Malformed input on every documented route of the api, auth and ingest functions (their OpenAPI
 * documents): each path parameter, query parameter and body field in turn, and the whole body, gets values
 * of the wrong type, size or encoding, sent by a caller the route accepts (the client's owner; a live key
 * for ingest). Every answer must be a client error or, where a value happens to be acceptable, a success:
 * never a 5xx. A value that validation lets through and the database refuses shows up here as a 500.
 */
import assert from "node:assert/strict";
import {
  addMember,
  call,
  createClient,
  createUser,
  db,
  nested,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "1000000" });

const HOSTILE: unknown[] = [
  "a\u0000b",
  "\ud800",
  "x".repeat(3000),
  "not-a-uuid",
  "275760-09-14",
  2 ** 53,
  -1,
  1.5,
  true,
  null,
  [],
  { nested: { deeper: ["x"] } },
];

/**
 * Sent only in bodies, as JSON text spliced in as a field's value and inside an object there: 20,000 levels
 * of arrays (past both the JavaScript stack of a recursive walk and PostgreSQL's jsonb parser), a number
 * JSON.parse makes Infinity, and a "__proto__" key (which a JavaScript object literal could not send).
 */
const BODY_ONLY = [nested(20_000), "1e400", '{"__proto__": {"a": 1}}'];

interface Operation {
  parameters?: Array<{ name: string; in: string }>;
  requestBody?: { content?: Record<string, { schema?: { $ref?: string; properties?: object } }> };
}

interface OpenApi {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, { properties?: object }> };
}

/** A query or path value; a lone surrogate cannot be percent-encoded, so it goes as its raw UTF-8 bytes. */
function urlValue(value: unknown): string {
  try {
    return encodeURIComponent(typeof value === "object" ? JSON.stringify(value) : String(value));
  } catch {
    return "%ED%A0%80";
  }
}

test("no documented route answers malformed input with a 5xx", async () => {
  const clientId = await createClient(uniq("hostile"));
  const owner = await createUser({ name: "Owner" });
  const ownerMembership = await addMember(clientId, owner.id, "owner");
  const agent = await addMember(clientId, (await createUser({ name: "Agent" })).id, "agent", ownerMembership);
  const token = await sessionToken(owner, clientId);
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, email, owner_membership_id)
    values (${clientId}, 'api', ${uniq("hostile") + "@example.com"}, ${agent}) returning id`;
  const key = await call(stack, "POST", `/api/clients/${clientId}/api-keys`, {
    token,
    body: { name: "Hostile", rate_limit_per_minute: 1_000_000 },
  });
  assert.equal(key.status, 201);

  const failures: string[] = [];
  const statuses: Record<string, number> = {};
  for (const fn of ["api", "auth", "ingest"]) {
    const doc = (await call(stack, "GET", `/${fn}/openapi.json`)).body as OpenApi;
    for (const [path, operations] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(operations)) {
        const parameters = operation.parameters ?? [];
        const schema = operation.requestBody?.content?.["application/json"]?.schema;
        const body = schema?.$ref ? doc.components?.schemas?.[schema.$ref.split("/").pop()!] : schema;
        const fields = Object.keys(body?.properties ?? {});
        // Real ids where a parameter is not under test: the client, its lead, a random uuid for the rest.
        const fill = (template: string) =>
          template.replace(
            /\{([^}]+)\}/g,
            (_whole, name: string) =>
              /client/i.test(name) ? clientId : /lead/i.test(name) ? lead.id : crypto.randomUUID(),
          );
        const prefix = path.startsWith(`/${fn}/`) ? "" : `/${fn}`;
        const requests: Array<{ url: string; body?: unknown }> = [];
        for (const value of HOSTILE) {
          for (const p of parameters.filter((p) => p.in === "path")) {
            requests.push({ url: prefix + fill(path.replace(`{${p.name}}`, urlValue(value))) });
          }
          for (const q of parameters.filter((p) => p.in === "query")) {
            requests.push({ url: `${prefix}${fill(path)}?${q.name}=${urlValue(value)}` });
          }
          // A body aimed at the real client could delete it; deletions are probed through their parameters.
          if (body && method !== "delete") {
            for (const field of fields) requests.push({ url: prefix + fill(path), body: { [field]: value } });
            requests.push({ url: prefix + fill(path), body: value });
          }
        }
        if (body && method !== "delete") {
          for (const field of fields) {
            const name = JSON.stringify(field);
            for (const value of BODY_ONLY) {
              requests.push({ url: prefix + fill(path), body: `{${name}: ${value}}` });
              requests.push({ url: prefix + fill(path), body: `{${name}: {"inner": ${value}}}` });
            }
          }
        }
        for (const request of requests) {
          const reply = await call(stack, method.toUpperCase(), request.url, {
            token: fn === "ingest" ? undefined : token,
            headers: fn === "ingest" ? { "x-api-key": key.body.secret } : undefined,
            body: request.body,
          });
          statuses[reply.status] = (statuses[reply.status] ?? 0) + 1;
          if (reply.status >= 500) {
            failures.push(
              `${method.toUpperCase()} ${request.url.slice(0, 120)} ${
                JSON.stringify(request.body)?.slice(0, 120) ?? ""
              }: ${reply.status}`,
            );
          }
        }
      }
    }
  }
  assert.deepEqual(failures, [], "malformed input answered with a 5xx");
  // The probes reached validation (a caller the routes accept), not only the authentication gate.
  assert.ok((statuses[422] ?? 0) > 1000, `statuses seen: ${JSON.stringify(statuses)}`);
});
