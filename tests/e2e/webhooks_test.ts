/**
 * The Meta and WhatsApp webhooks end to end, against the Graph emulator: the verification handshake, the
 * signature check over the raw bytes (escaped and raw non-ASCII bodies, forged and missing signatures), the
 * durable inbox and its routing (idempotent under sequential and concurrent redeliveries, batched entries of
 * several clients, unknown pages parked), the Lead Ads fetch (field mapping, product, external_ref, an
 * expired page token), inbound WhatsApp messages and forward-only delivery statuses.
 *
 * Other test files share the database, so each test asserts only on the rows of its own clients, pages,
 * leads and messages (all with unique ids), and the stack's worker runs only this file's clients' jobs.
 */
import assert from "node:assert/strict";
import { loadConfig } from "../../functions/_shared/config.ts";
import { sealPageToken } from "../../functions/_shared/integrations/credentials.ts";
import { signMetaBody } from "../../functions/_shared/integrations/meta_signature.ts";
import {
  type EmulatedPage,
  inboundMessage,
  leadgenChange,
  type MetaWebhookPayload,
  startGraphEmulator,
  statusUpdate,
} from "../emulators/graph.ts";
import { call, createTeam, db, nested, startStack, test, uniq } from "../_helpers.ts";

const APP_SECRET = `app-secret-${crypto.randomUUID()}`;
const VERIFY_TOKEN = `verify-${crypto.randomUUID()}`;
const WORKER_SECRET = `worker-${crypto.randomUUID()}`;
const graph = await startGraphEmulator({ appSecret: APP_SECRET });
// This file's clients: the stack's worker runs only their jobs (other files' jobs need their own emulators).
const ownClients: string[] = [];
const stack = startStack(
  {
    META_APP_SECRET: APP_SECRET,
    META_VERIFY_TOKEN: VERIFY_TOKEN,
    GRAPH_API_URL: graph.url,
    WORKER_SECRET,
  },
  {},
  { workerClients: () => ownClients },
);
// The stack runs in test mode without ENCRYPTION_KEY, so it opens what this development key seals.
const config = loadConfig({ APP_ENV: "test" });
const META_URL = `${stack.url}/functions/v1/webhooks/meta`;
const WHATSAPP_URL = `${stack.url}/functions/v1/webhooks/whatsapp`;

/** Drains the worker until `check` returns a value (not undefined/false), or fails after `ms`. */
async function eventually<T>(check: () => Promise<T | undefined | false>, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const drained = await call(stack, "POST", "/worker", { headers: { "x-worker-secret": WORKER_SECRET } });
    assert.equal(drained.status, 200, JSON.stringify(drained.body));
    const value = await check();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error("Condition not met in time");
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** A client (owner, admin, manager, agents, viewer) whose leads go round robin to its agents. */
async function client() {
  const team = await createTeam(uniq("hooks"));
  ownClients.push(team.clientId);
  return team;
}

/** A product enabled for the client. */
async function product(clientId: string): Promise<string> {
  const [row] = await db()<{ id: string }[]>`
    with i as (insert into public.industries (name) values (${uniq("Industry")}) returning id),
    c as (insert into public.categories (industry_id, name) select i.id, 'Solar' from i returning id),
    p as (insert into public.products (category_id, name) select c.id, 'Panels' from c returning id)
    insert into public.client_products (client_id, product_id) select ${clientId}, p.id from p
    returning product_id as id`;
  return row.id;
}

/** Connects an emulated page (and one of its forms, mapped to `productId`) to a client, token sealed. */
async function connectPage(
  clientId: string,
  options: { productId?: string; expired?: boolean } = {},
): Promise<{ page: EmulatedPage; formId: string }> {
  const page = graph.addPage({ expired: options.expired, name: "Hooks page" });
  const form = graph.addForm(page.id);
  await db()`insert into public.meta_pages (page_id, client_id, name, status)
             values (${page.id}, ${clientId}, ${page.name}, 'ok')`;
  await db()`insert into app.meta_page_tokens (page_id, token_sealed)
             values (${page.id}, ${await sealPageToken(config, page.id, page.accessToken)})`;
  await db()`insert into public.meta_forms (form_id, page_id, client_id, product_id)
             values (${form.id}, ${page.id}, ${clientId}, ${options.productId ?? null})`;
  return { page, formId: form.id };
}

/** Delivers a payload as Meta does (escaped JSON, signed) and returns the status and text. */
async function deliver(
  url: string,
  payload: unknown,
  signature: "valid" | "forged" | "missing" = "valid",
): Promise<{ status: number; text: string }> {
  const response = await graph.deliver(url, payload, { signature });
  return { status: response.status, text: await response.text() };
}

/** The inbox rows whose body mentions `needle` (a unique id). */
function inboxRows(needle: string) {
  return db()<{ status: string; error: string | null; provider: string }[]>`
    select status, error, provider from app.webhook_inbox where strpos(body, ${needle}) > 0 order by id`;
}

function leadsOf(clientId: string) {
  return db()<
    {
      id: string;
      source: string;
      external_ref: string;
      full_name: string | null;
      email: string | null;
      phone: string | null;
      product_id: string | null;
      custom: Record<string, unknown>;
      owner_membership_id: string | null;
    }[]
  >`
    select id, source, external_ref, full_name, email, phone, product_id, custom, owner_membership_id
    from public.leads where client_id = ${clientId} order by created_at`;
}

function jobsFor(key: string) {
  return db()<{ status: string; errors: { message: string; code: string }[]; result: unknown }[]>`
    select status, errors, result from app.jobs where idempotency_key = ${key}`;
}

test("GET /webhooks/meta and /webhooks/whatsapp answer the challenge only for the verify token", async () => {
  for (const path of ["/webhooks/meta", "/webhooks/whatsapp"]) {
    const ok = await fetch(
      `${stack.url}/functions/v1${path}?hub.mode=subscribe&hub.verify_token=${VERIFY_TOKEN}` +
        "&hub.challenge=1158201444",
    );
    assert.equal(ok.status, 200, "WH-01: the right token gets the challenge back");
    assert.equal(await ok.text(), "1158201444", "WH-01: the body is the challenge, as text");

    const wrong = await call(
      stack,
      "GET",
      `${path}?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1158201444`,
    );
    assert.equal(wrong.status, 403, "WH-02: a wrong verify token is refused");
    const mode = await call(
      stack,
      "GET",
      `${path}?hub.mode=unsubscribe&hub.verify_token=${VERIFY_TOKEN}&hub.challenge=1`,
    );
    assert.equal(mode.status, 403, "WH-03: only hub.mode=subscribe is answered");
  }
});

test("POST /webhooks/meta stores a signed leadgen delivery and the worker creates one mapped lead", async () => {
  const team = await client();
  const productId = await product(team.clientId);
  const { page, formId } = await connectPage(team.clientId, { productId });
  const lead = graph.addLead(formId, {
    fieldData: [
      { name: "full_name", values: ["Ada Lovelace"] },
      { name: "email", values: ["ADA@Example.com"] },
      { name: "phone_number", values: ["+1 (415) 555-2671"] },
      { name: "city", values: ["London"] },
    ],
  });
  const reply = await deliver(
    META_URL,
    leadgenChange({ pageId: page.id, formId, leadgenId: lead.id }),
  );
  assert.equal(reply.status, 200, "WH-10: a signed delivery is accepted");
  assert.equal(reply.text, "EVENT_RECEIVED", "WH-10: and answered as Meta expects");

  const [stored] = await eventually(async () => {
    const rows = await leadsOf(team.clientId);
    return rows.length ? rows : undefined;
  });
  assert.equal(stored.source, "meta", "WH-11: the lead's source is meta");
  assert.equal(stored.external_ref, lead.id, "WH-11: external_ref is the leadgen id, digits intact");
  assert.equal(stored.full_name, "Ada Lovelace", "WH-12: field_data is mapped onto the lead");
  assert.equal(stored.email, "ada@example.com", "WH-12: the email is normalised");
  assert.equal(stored.phone, "+14155552671", "WH-12: the phone is normalised to E.164");
  assert.deepEqual(stored.custom, { city: "London" }, "WH-12: other answers land in custom");
  assert.equal(stored.product_id, productId, "WH-13: the form's product is the lead's");
  assert.ok(stored.owner_membership_id, "WH-14: the lead was assigned like every other lead");
  assert.deepEqual(
    (await inboxRows(lead.id)).map((row) => [row.provider, row.status]),
    [["meta", "processed"]],
    "WH-15: the delivery is processed",
  );
  const [job] = await jobsFor(`leadgen:${lead.id}`);
  assert.equal(job.status, "succeeded", "WH-15: the fetch job succeeded");
});

test("POST /webhooks/meta: 3 sequential and 5 concurrent deliveries of one leadgen make one job and one lead", async () => {
  const team = await client();
  const { page, formId } = await connectPage(team.clientId);
  const lead = graph.addLead(formId, { fieldData: [{ name: "email", values: ["twice@example.com"] }] });
  const payload = leadgenChange({ pageId: page.id, formId, leadgenId: lead.id });
  for (let i = 0; i < 3; i++) assert.equal((await deliver(META_URL, payload)).status, 200);
  const concurrent = await Promise.all(Array.from({ length: 5 }, () => deliver(META_URL, payload)));
  assert.deepEqual(concurrent.map((r) => r.status), [200, 200, 200, 200, 200]);

  await eventually(async () => {
    const rows = await inboxRows(lead.id);
    return rows.length === 8 && rows.every((row) => row.status === "processed");
  });
  const jobs = await eventually(async () => {
    const rows = await jobsFor(`leadgen:${lead.id}`);
    return rows.every((row) => row.status === "succeeded") ? rows : undefined;
  });
  assert.equal(jobs.length, 1, "WH-20: eight deliveries of one leadgen are one job");
  const leads = await leadsOf(team.clientId);
  assert.equal(leads.length, 1, "WH-21: and one lead");
  assert.equal(leads[0].email, "twice@example.com");
});

test("POST /webhooks/meta verifies bodies with non-ASCII characters, escaped as Meta sends them or raw", async () => {
  const team = await client();
  const { page, formId } = await connectPage(team.clientId);
  const lead = graph.addLead(formId, {
    fieldData: [
      { name: "full_name", values: ["Zoë Ångström"] },
      { name: "email", values: ["zoe@example.com"] },
      { name: "stadt", values: ["Köln 🏙️"] },
    ],
  });
  const payload = leadgenChange({ pageId: page.id, formId, leadgenId: lead.id });
  (payload.entry[0].changes[0].value as Record<string, unknown>).ad_name = "Zoë's Ångström ad / 2024";
  assert.equal((await deliver(META_URL, payload)).status, 200, "WH-30: escaped non-ASCII verifies");

  // Raw UTF-8 (not escaped): the signature is over these exact bytes, so it verifies too.
  const bytes = new TextEncoder().encode(JSON.stringify(payload));
  const raw = await fetch(META_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-hub-signature-256": await signMetaBody(bytes, APP_SECRET),
    },
    body: bytes,
  });
  assert.equal(raw.status, 200, "WH-31: raw UTF-8 bytes verify");
  await raw.body?.cancel();

  const [stored] = await eventually(async () => {
    const rows = await leadsOf(team.clientId);
    return rows.length ? rows : undefined;
  });
  assert.equal(stored.full_name, "Zoë Ångström", "WH-32: the name is stored exactly");
  assert.deepEqual(stored.custom, { stadt: "Köln 🏙️" }, "WH-32: and the other answers");
  assert.equal((await leadsOf(team.clientId)).length, 1, "WH-33: both deliveries are one lead");
});

test("POST /webhooks/meta refuses forged and missing signatures with 401 and stores nothing", async () => {
  const leadgenId = String(10n ** 16n + BigInt(Math.floor(Math.random() * 1e15)));
  const payload = leadgenChange({ pageId: "123456789012345", formId: "987654321098765", leadgenId });
  for (
    const [url, signature] of [
      [META_URL, "forged"],
      [META_URL, "missing"],
      [WHATSAPP_URL, "forged"],
      [WHATSAPP_URL, "missing"],
    ] as const
  ) {
    const reply = await deliver(url, payload, signature);
    assert.equal(reply.status, 401, `WH-40: a ${signature} signature is refused`);
    assert.doesNotMatch(reply.text, /EVENT_RECEIVED/);
  }
  const bad = await fetch(META_URL, {
    method: "POST",
    headers: { "content-type": "application/json", "x-hub-signature-256": "sha256=zz" },
    body: JSON.stringify(payload),
  });
  assert.equal(bad.status, 401, "WH-41: a malformed signature is refused");
  await bad.body?.cancel();
  assert.equal((await inboxRows(leadgenId)).length, 0, "WH-42: nothing was stored");

  const notJson = new TextEncoder().encode(`{"object":"page","entry":[${leadgenId}`);
  const invalid = await fetch(META_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-hub-signature-256": await signMetaBody(notJson, APP_SECRET),
    },
    body: notJson,
  });
  assert.equal(invalid.status, 400, "WH-43: a signed body that is not JSON is refused");
  await invalid.body?.cancel();
  assert.equal((await inboxRows(leadgenId)).length, 0, "WH-43: and not stored");
});

test("POST /webhooks/meta refuses bodies over the size limit with 413", async () => {
  const big = new TextEncoder().encode(
    JSON.stringify({ object: "page", entry: [], pad: "x".repeat(config.server.max_body_bytes) }),
  );
  const reply = await fetch(META_URL, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "x-hub-signature-256": await signMetaBody(big, APP_SECRET),
    },
    body: big,
  });
  assert.equal(reply.status, 413, "WH-44: an oversized body is refused before it is read whole");
  await reply.body?.cancel();
});

test("POST /webhooks/meta keeps a signed delivery that jsonb refuses as failed, with its error", async () => {
  // Valid JSON that PostgreSQL cannot read as jsonb: a NUL, and nesting past its parser's stack.
  for (
    const [what, value, reason] of [
      ["a NUL", '"\\u0000"', /\\u0000|unicode/i],
      ["20,000 levels of nesting", nested(20_000), /stack depth/i],
    ] as const
  ) {
    const marker = uniq("unreadable");
    const bytes = new TextEncoder().encode(
      `{"object":"page","entry":[{"id":"1","changes":[{"field":"leadgen","value":{"m":"${marker}","v":${value}}}]}]}`,
    );
    const reply = await fetch(META_URL, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        "x-hub-signature-256": await signMetaBody(bytes, APP_SECRET),
      },
      body: bytes,
    });
    assert.equal(reply.status, 200, `WH-45: valid JSON with ${what} is acknowledged`);
    await reply.body?.cancel();
    const [row] = await eventually(async () => {
      const rows = await inboxRows(marker);
      return rows.length && rows[0].status !== "pending" ? rows : undefined;
    });
    assert.equal(row.status, "failed", `WH-45: a body with ${what} is kept as failed`);
    assert.match(row.error ?? "", reason, `WH-45: with the reason for ${what}`);
  }
});

test("The webhooks answer 503 while META_APP_SECRET and META_VERIFY_TOKEN are not configured", async () => {
  const bare = startStack();
  try {
    const get = await call(
      bare,
      "GET",
      "/webhooks/meta?hub.mode=subscribe&hub.verify_token=x&hub.challenge=1",
    );
    assert.equal(get.status, 503, "WH-46: no verify token, no handshake");
    const post = await call(bare, "POST", "/webhooks/whatsapp", { body: { object: "page", entry: [] } });
    assert.equal(post.status, 503, "WH-46: no app secret, no deliveries");
    assert.equal(post.body.code, "webhooks_not_configured");
  } finally {
    await bare.close();
  }
});

test("POST /webhooks/meta routes batched entries of two clients' pages, and parks an unknown page", async () => {
  const [first, second] = [await client(), await client()];
  const a = await connectPage(first.clientId);
  const b = await connectPage(second.clientId);
  const leadA = graph.addLead(a.formId, { fieldData: [{ name: "email", values: ["a@example.com"] }] });
  const leadB = graph.addLead(b.formId, { fieldData: [{ name: "email", values: ["b@example.com"] }] });
  const unknownPage = String(900000000000000 + Math.floor(Math.random() * 1e13));
  const unknownLeadgen = String(10n ** 16n + BigInt(Math.floor(Math.random() * 1e15)));
  const payload: MetaWebhookPayload = {
    object: "page",
    entry: [
      ...leadgenChange({ pageId: a.page.id, formId: a.formId, leadgenId: leadA.id }).entry,
      ...leadgenChange({ pageId: b.page.id, formId: b.formId, leadgenId: leadB.id }).entry,
    ],
  };
  assert.equal((await deliver(META_URL, payload)).status, 200);
  await eventually(async () =>
    (await leadsOf(first.clientId)).length === 1 && (await leadsOf(second.clientId)).length === 1
  );
  assert.equal(
    (await leadsOf(first.clientId))[0].external_ref,
    leadA.id,
    "WH-50: page A's lead is client A's",
  );
  assert.equal(
    (await leadsOf(second.clientId))[0].external_ref,
    leadB.id,
    "WH-50: page B's lead is client B's",
  );

  const mixed: MetaWebhookPayload = {
    object: "page",
    entry: [
      ...leadgenChange({ pageId: unknownPage, formId: "1234567890", leadgenId: unknownLeadgen }).entry,
    ],
  };
  assert.equal((await deliver(META_URL, mixed)).status, 200, "WH-51: an unknown page is still acknowledged");
  const [parked] = await eventually(async () => {
    const rows = await inboxRows(unknownLeadgen);
    return rows.length && rows[0].status !== "pending" ? rows : undefined;
  });
  assert.equal(parked.status, "unroutable", "WH-51: and parked as unroutable");
  assert.match(parked.error ?? "", new RegExp(unknownPage), "WH-51: naming the page");
  assert.equal((await jobsFor(`leadgen:${unknownLeadgen}`)).length, 0, "WH-52: no job for an unknown page");
});

test("deliveries parked for a page or number nobody had connected are routed once a client connects it", async () => {
  const team = await client();
  // A page whose leads start arriving before the client has connected it.
  const page = graph.addPage({ name: "Early page" });
  const form = graph.addForm(page.id);
  const lead = graph.addLead(form.id, { fieldData: [{ name: "email", values: ["early@example.com"] }] });
  const other = graph.addPage({ name: "Still unknown" });
  const otherLead = graph.addLead(graph.addForm(other.id).id, {
    fieldData: [{ name: "email", values: ["other@example.com"] }],
  });
  const parkedUntilConnected = async (needle: string) =>
    await eventually(async () => {
      const rows = await inboxRows(needle);
      return rows.length && rows[0].status === "unroutable" ? rows : undefined;
    });
  assert.equal(
    (await deliver(META_URL, leadgenChange({ pageId: page.id, formId: form.id, leadgenId: lead.id }))).status,
    200,
  );
  assert.equal(
    (await deliver(META_URL, leadgenChange({ pageId: other.id, formId: "1", leadgenId: otherLead.id })))
      .status,
    200,
  );
  await parkedUntilConnected(lead.id);
  await parkedUntilConnected(otherLead.id);

  await db()`insert into public.meta_pages (page_id, client_id, name, status)
             values (${page.id}, ${team.clientId}, ${page.name}, 'ok')`;
  await db()`insert into app.meta_page_tokens (page_id, token_sealed)
             values (${page.id}, ${await sealPageToken(config, page.id, page.accessToken)})`;
  const [stored] = await eventually(async () => {
    const rows = await leadsOf(team.clientId);
    return rows.length ? rows : undefined;
  });
  assert.equal(
    stored.external_ref,
    lead.id,
    "WH-53: the parked lead reaches the client that connected its page",
  );
  assert.equal(stored.email, "early@example.com");
  assert.equal((await inboxRows(lead.id))[0].status, "processed", "WH-53: and its delivery is processed");
  assert.equal((await inboxRows(otherLead.id))[0].status, "unroutable", "WH-54: another page's stays parked");

  // The same for a WhatsApp message to a number the client connects afterwards.
  const phone = graph.addPhoneNumber();
  const messageId = `wamid.${crypto.randomUUID()}`;
  const waId = `1415556${String(Math.floor(Math.random() * 1e4)).padStart(4, "0")}`;
  const [known] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, phone, owner_membership_id)
    values (${team.clientId}, 'manual', 'Early writer', ${"+" + waId}, ${team.memberships.agent})
    returning id`;
  const message = inboundMessage({
    phoneNumberId: phone.id,
    from: waId,
    id: messageId,
    text: "Anyone there?",
  });
  assert.equal((await deliver(WHATSAPP_URL, message)).status, 200);
  await parkedUntilConnected(messageId);
  await db()`insert into public.integrations (client_id, kind, settings)
             values (${team.clientId}, 'whatsapp', ${db().json({ phone_number_id: phone.id })})`;
  const [received] = await eventually(async () => {
    const rows = await db()<{ lead_id: string; body: string }[]>`
      select lead_id, body from public.lead_messages where provider_message_id = ${messageId}`;
    return rows.length ? rows : undefined;
  });
  assert.deepEqual({ ...received }, { lead_id: known.id, body: "Anyone there?" }, "WH-55: the message lands");
  await eventually(async () => (await inboxRows(messageId))[0].status === "processed");
});

test("meta.fetch_lead with an expired page token flags the page, kills the job readably and tells the owners", async () => {
  const team = await client();
  const { page, formId } = await connectPage(team.clientId, { expired: true });
  const lead = graph.addLead(formId, { fieldData: [{ name: "email", values: ["late@example.com"] }] });
  assert.equal(
    (await deliver(META_URL, leadgenChange({ pageId: page.id, formId, leadgenId: lead.id }))).status,
    200,
  );

  const [job] = await eventually(async () => {
    const rows = await jobsFor(`leadgen:${lead.id}`);
    return rows.length && rows[0].status === "dead" ? rows : undefined;
  });
  const last = job.errors.at(-1)!;
  assert.equal(last.code, "token_invalid", "WH-60: the job died of the token");
  assert.match(last.message, /no longer valid.*reconnect the page/s, "WH-60: with a readable error");
  const [stored] = await db()<{ status: string; status_detail: string }[]>`
    select status, status_detail from public.meta_pages where page_id = ${page.id}`;
  assert.equal(stored.status, "broken", "WH-61: the page is flagged broken");
  assert.match(stored.status_detail, /expired/i, "WH-61: with Graph's reason");
  const notified = await db()<{ user_id: string; title: string }[]>`
    select user_id, title from public.notifications
    where client_id = ${team.clientId} and kind = 'integration.broken'`;
  assert.deepEqual(
    new Set(notified.map((n) => n.user_id)),
    new Set([team.users.owner.id, team.users.admin.id]),
    "WH-62: the client's owner and admin are notified",
  );
  assert.equal(notified.length, 2, "WH-62: once each");
  assert.equal((await leadsOf(team.clientId)).length, 0, "WH-63: no lead without its data");
});

/** A client with a WhatsApp number and a lead (owned by the agent) whose phone writes to it. */
async function whatsAppClient() {
  const team = await client();
  const phone = graph.addPhoneNumber();
  await db()`insert into public.integrations (client_id, kind, settings)
             values (${team.clientId}, 'whatsapp', ${db().json({ phone_number_id: phone.id })})`;
  const waId = `1415555${String(Math.floor(Math.random() * 1e4)).padStart(4, "0")}`;
  const [lead] = await db()<{ id: string }[]>`
    insert into public.leads (client_id, source, full_name, phone, owner_membership_id)
    values (${team.clientId}, 'manual', 'Zoë Ångström', ${"+" + waId}, ${team.memberships.agent})
    returning id`;
  return { team, phoneNumberId: phone.id, waId, leadId: lead.id };
}

test("POST /webhooks/whatsapp stores an inbound message on the lead, its timeline and the owner's notification", async () => {
  const { team, phoneNumberId, waId, leadId } = await whatsAppClient();
  const messageId = `wamid.${crypto.randomUUID()}`;
  const payload = inboundMessage({
    phoneNumberId,
    from: waId,
    id: messageId,
    text: "Hej! Är det ledigt? 👋",
    name: "Zoë",
  });
  assert.equal((await deliver(WHATSAPP_URL, payload)).status, 200);
  assert.equal((await deliver(WHATSAPP_URL, payload)).status, 200, "WH-70: a redelivery is accepted too");

  const notification = await eventually(async () => {
    const [row] = await db()<{ user_id: string; title: string }[]>`
      select user_id, title from public.notifications
      where lead_id = ${leadId} and kind = 'message.received'`;
    return row;
  });
  assert.equal(notification.user_id, team.users.agent.id, "WH-71: the lead's owner is notified");
  const messages = await db()<{ direction: string; status: string; body: string; kind: string }[]>`
    select direction, status, body, kind from public.lead_messages where provider_message_id = ${messageId}`;
  assert.deepEqual(
    [...messages],
    [{ direction: "inbound", status: "received", body: "Hej! Är det ledigt? 👋", kind: "text" }],
    "WH-72: one inbound message on the lead, text intact",
  );
  const timeline = await db()<{ kind: string; data: { preview: string } }[]>`
    select kind, data from public.lead_activities where lead_id = ${leadId} and kind = 'message_received'`;
  assert.equal(timeline.length, 1, "WH-73: one timeline entry");
  assert.equal(timeline[0].data.preview, "Hej! Är det ledigt? 👋");

  const strangerId = `wamid.${crypto.randomUUID()}`;
  const stranger = inboundMessage({
    phoneNumberId,
    from: "14155550999",
    id: strangerId,
    text: "Who is this?",
  });
  assert.equal((await deliver(WHATSAPP_URL, stranger)).status, 200);
  const [job] = await eventually(async () => {
    const rows = await jobsFor(`wa-in:${strangerId}`);
    return rows.length && rows[0].status === "succeeded" ? rows : undefined;
  });
  assert.deepEqual(job.result, { skipped: "no_lead" }, "WH-74: an unknown sender creates nothing");
  assert.equal(
    (await db()`select 1 from public.lead_messages where provider_message_id = ${strangerId}`).length,
    0,
  );
});

test("POST /webhooks/whatsapp status updates, repeated and out of order, never move a status backwards", async () => {
  const { team, phoneNumberId, waId, leadId } = await whatsAppClient();
  const read = `wamid.${crypto.randomUUID()}`;
  const failed = `wamid.${crypto.randomUUID()}`;
  await db()`
    insert into public.lead_messages (client_id, lead_id, direction, provider_message_id, status, kind, body)
    values (${team.clientId}, ${leadId}, 'outbound', ${read}, 'queued', 'template', 'Hi'),
           (${team.clientId}, ${leadId}, 'outbound', ${failed}, 'queued', 'template', 'Hi')`;
  const send = (messageId: string, status: "sent" | "delivered" | "read" | "failed") =>
    deliver(WHATSAPP_URL, statusUpdate({ phoneNumberId, messageId, recipientId: waId, status }));

  for (const status of ["read", "delivered", "sent", "read", "delivered"] as const) {
    assert.equal((await send(read, status)).status, 200);
  }
  assert.equal((await send(failed, "sent")).status, 200);
  const statusOf = async (id: string) =>
    (await db()<{ status: string; error: Record<string, unknown> | null }[]>`
      select status, error from public.lead_messages where provider_message_id = ${id}`)[0];
  await eventually(async () => {
    const jobs = await db()<{ n: number }[]>`
      select count(*)::int as n from app.jobs
      where client_id = ${team.clientId} and kind = 'whatsapp.status' and status <> 'succeeded'`;
    const [{ n }] = await db()<{ n: number }[]>`
      select count(*)::int as n from app.jobs where client_id = ${team.clientId} and kind = 'whatsapp.status'`;
    return jobs[0].n === 0 && n === 4;
  });
  assert.equal((await statusOf(read)).status, "read", "WH-80: read stays read whatever came after");
  assert.equal((await statusOf(failed)).status, "sent");

  assert.equal((await send(failed, "failed")).status, 200);
  await eventually(async () => (await statusOf(failed)).status === "failed");
  assert.equal((await statusOf(failed)).error?.code, 131026, "WH-81: failed keeps WhatsApp's error");
  assert.equal((await send(failed, "delivered")).status, 200);
  assert.equal((await send(read, "failed")).status, 200);
  await eventually(async () => {
    const [{ n }] = await db()<{ n: number }[]>`
      select count(*)::int as n from app.jobs
      where client_id = ${team.clientId} and kind = 'whatsapp.status' and status = 'succeeded'`;
    return n === 7;
  });
  assert.equal((await statusOf(failed)).status, "failed", "WH-82: nothing moves a failed message on");
  assert.equal((await statusOf(read)).status, "read", "WH-83: a read message cannot fail afterwards");
  assert.equal((await statusOf(read)).error, null);
});
