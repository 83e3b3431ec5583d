import assert from "node:assert/strict";
import { test } from "../_helpers.ts";
import {
  classifyGraphError,
  createGraphClient,
  fieldDataToLead,
  GraphApiError,
  type GraphErrorAction,
  parseGraphJson,
} from "../../functions/_shared/integrations/graph.ts";
import {
  type GraphEmulator,
  type GraphEmulatorOptions,
  graphErrors,
  inboundMessage,
  startGraphEmulator,
  statusUpdate,
} from "../emulators/graph.ts";

/** Runs `fn` against a fresh emulator and a client pointed at it, stopping the emulator afterwards. */
async function withGraph(
  fn: (graph: GraphEmulator, client: ReturnType<typeof createGraphClient>) => Promise<void>,
  options: GraphEmulatorOptions = {},
) {
  const graph = await startGraphEmulator(options);
  try {
    await fn(graph, createGraphClient({ baseUrl: graph.url, timeoutMs: 2_000 }));
  } finally {
    await graph.stop();
  }
}

/** Awaits a rejection and returns it as a GraphApiError (failing the test for anything else). */
async function graphFailure(promise: Promise<unknown>): Promise<GraphApiError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof GraphApiError, `expected a GraphApiError, got ${error}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

const LEAD_ANSWERS = [
  { name: "full_name", values: ["Zoë Ångström"] },
  { name: "email", values: ["zoe@example.com"] },
  { name: "phone_number", values: ["+4915112345678"] },
];

test("createGraphClient().fetchLead() reads a lead with the page token in the Authorization header", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const form = graph.addForm(page.id);
    const stored = graph.addLead(form.id, {
      fieldData: LEAD_ANSWERS,
      createdTime: new Date("2024-05-01T10:00:00Z"),
    });

    const lead = await client.fetchLead(stored.id, page.accessToken);

    assert.deepEqual(lead, {
      id: stored.id,
      created_time: "2024-05-01T10:00:00+0000",
      form_id: form.id,
      ad_id: stored.adId,
      campaign_id: stored.campaignId,
      platform: "fb",
      is_organic: false,
      field_data: LEAD_ANSWERS,
    });
    const [request] = graph.state.requests;
    assert.equal(request.path, `/${stored.id}`);
    assert.equal(request.headers.authorization, `Bearer ${page.accessToken}`);
    assert.equal(request.query.access_token, undefined, "the token never appears in the URL");
    assert.equal(
      request.query.fields,
      "id,created_time,field_data,form_id,ad_id,campaign_id,platform,is_organic",
    );
  });
});

test("createGraphClient().fetchLead() keeps 17-digit ids exact, even if Graph sent them as bare numbers", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const form = graph.addForm(page.id, { id: "90071992547409931" });
    const stored = graph.addLead(form.id, { id: "12345678901234567", isOrganic: true });
    const lead = await client.fetchLead(stored.id, page.accessToken);
    assert.equal(lead.id, "12345678901234567");
    assert.equal(lead.form_id, "90071992547409931");
    assert.equal(lead.ad_id, undefined, "organic leads have no ad");
    assert.notEqual(String(Number(lead.id)), lead.id, "the id is beyond what a JS number holds exactly");
  });

  const bareNumbers = createGraphClient({
    baseUrl: "https://graph.example/v21.0",
    fetch: () =>
      Promise.resolve(
        new Response(
          '{"id":12345678901234567,"created_time":"2024-05-01T10:00:00+0000","form_id":9007199254740993}',
        ),
      ),
  });
  const lead = await bareNumbers.fetchLead("12345678901234567", "token");
  assert.equal(lead.id, "12345678901234567", "not rounded to 12345678901234568");
  assert.equal(lead.form_id, "9007199254740993", "not rounded to 9007199254740992");
});

test("parseGraphJson() turns only unsafe integers into their exact digits", () => {
  assert.deepEqual(
    parseGraphJson('{"a":12345678901234567890,"b":42,"c":1.5,"d":"7","e":[-9007199254740993]}'),
    {
      a: "12345678901234567890",
      b: 42,
      c: 1.5,
      d: "7",
      e: ["-9007199254740993"],
    },
  );
});

test("createGraphClient().fetchLead() reports an expired page token as token_invalid (190/463)", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage({ expired: true });
    const lead = graph.addLead(graph.addForm(page.id).id);
    const error = await graphFailure(client.fetchLead(lead.id, page.accessToken));
    assert.equal(error.action, "token_invalid");
    assert.equal(error.code, 190);
    assert.equal(error.subcode, 463);
    assert.equal(error.type, "OAuthException");
    assert.equal(error.status, 400);
    assert.equal(error.retryable, false);
    assert.match(error.message, /Session has expired/);
    assert.ok(error.fbtraceId, "fbtrace_id is kept for support requests");
  });
});

test("createGraphClient().fetchLead() reports an unknown token as token_invalid (190)", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const lead = graph.addLead(graph.addForm(page.id).id);
    const error = await graphFailure(client.fetchLead(lead.id, "EAAnot-a-real-token"));
    assert.equal(error.action, "token_invalid");
    assert.equal(error.code, 190);
  });
});

test("createGraphClient().fetchLead() fails an unknown or foreign lead with 100/33", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const otherPage = graph.addPage();
    const lead = graph.addLead(graph.addForm(page.id).id);

    const unknown = await graphFailure(client.fetchLead("11111111111111111", page.accessToken));
    assert.equal(unknown.action, "failed");
    assert.equal(unknown.code, 100);
    assert.equal(unknown.subcode, 33);
    assert.match(unknown.message, /Unsupported get request/);

    const foreign = await graphFailure(client.fetchLead(lead.id, otherPage.accessToken));
    assert.equal(foreign.code, 100, "another page's token cannot see the lead");
    assert.equal(foreign.subcode, 33);
  });
});

test("createGraphClient().fetchLead() refuses a non-numeric id without sending anything", async () => {
  await withGraph(async (graph, client) => {
    const error = await graphFailure(client.fetchLead("../me", "token"));
    assert.equal(error.action, "failed");
    assert.equal(error.type, "InvalidRequest");
    assert.equal(error.status, 0);
    assert.equal(graph.state.requests.length, 0);
  });
});

test("createGraphClient().listFormLeads() pages through every lead created after `since`", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const form = graph.addForm(page.id);
    const otherForm = graph.addForm(page.id);
    const since = new Date("2024-05-01T12:00:00Z");
    const hour = 3_600_000;
    graph.addLead(form.id, { createdTime: new Date(since.getTime() - hour) });
    graph.addLead(form.id, { createdTime: since }); // not strictly after `since`
    const recent = [1, 2, 3, 4, 5].map((n) =>
      graph.addLead(form.id, { createdTime: new Date(since.getTime() + n * hour) })
    );
    graph.addLead(otherForm.id, { createdTime: new Date(since.getTime() + hour) });

    const leads = await client.listFormLeads(form.id, page.accessToken, { since, limit: 2 });

    assert.deepEqual(
      leads.map((lead) => lead.id).sort(),
      recent.map((lead) => lead.id).sort(),
      "exactly the form's leads after since",
    );
    assert.equal(new Set(leads.map((lead) => lead.id)).size, leads.length, "no lead twice");
    const requests = graph.state.requests;
    assert.equal(requests.length, 3, "three pages of at most two");
    assert.deepEqual(JSON.parse(requests[0].query.filtering), [
      { field: "time_created", operator: "GREATER_THAN", value: since.getTime() / 1000 },
    ]);
    assert.equal(requests[0].query.limit, "2");
    assert.equal(requests[0].query.after, undefined);
    assert.ok(requests[1].query.after && requests[2].query.after, "later pages follow the after cursor");
    assert.ok(requests.every((request) => request.path === `/${form.id}/leads`), "always our own base URL");
  });
});

test("createGraphClient().listFormLeads() without `since` returns all leads, and [] for an empty form", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const form = graph.addForm(page.id);
    const empty = graph.addForm(page.id);
    for (let i = 0; i < 3; i++) graph.addLead(form.id);
    assert.equal((await client.listFormLeads(form.id, page.accessToken)).length, 3);
    assert.equal(graph.state.requests[0].query.filtering, undefined);
    assert.deepEqual(await client.listFormLeads(empty.id, page.accessToken), []);
  });
});

test("createGraphClient().debugToken() reports validity, expiry and scopes", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const expired = graph.addPage({ expired: true });

    const valid = await client.debugToken(page.accessToken, graph.appAccessToken);
    assert.equal(valid.is_valid, true);
    assert.equal(valid.expires_at, null, "long-lived page tokens never expire (expires_at 0)");
    assert.ok(valid.scopes.includes("leads_retrieval"));
    assert.equal(valid.type, "PAGE");
    assert.equal(valid.app_id, graph.appId);
    assert.equal(graph.state.requests[0].query.input_token, page.accessToken);

    const stale = await client.debugToken(expired.accessToken, graph.appAccessToken);
    assert.equal(stale.is_valid, false);
    assert.ok(stale.expires_at instanceof Date && stale.expires_at.getTime() < Date.now());
    assert.equal(stale.error?.code, 190);
    assert.equal(stale.error?.subcode, 463);

    const unknown = await client.debugToken("EAAnot-a-real-token", graph.appAccessToken);
    assert.equal(unknown.is_valid, false);
    assert.deepEqual(unknown.scopes, []);
  });
});

test("createGraphClient().debugToken() needs the app access token", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const error = await graphFailure(client.debugToken(page.accessToken, page.accessToken));
    assert.equal(error.action, "failed");
    assert.equal(error.code, 100);
  });
});

test("createGraphClient().sendWhatsAppTemplate() posts the documented body and returns the wamid", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    graph.addTemplate("lead_welcome", { language: "en_US", bodyParameters: 1 });

    const result = await client.sendWhatsAppTemplate({
      phoneNumberId: phone.id,
      accessToken: phone.accessToken,
      to: "+4915112345678",
      templateName: "lead_welcome",
      languageCode: "en_US",
      components: [{ type: "body", parameters: [{ type: "text", text: "Zoë" }] }],
    });

    assert.match(result.messageId, /^wamid\./);
    assert.equal(result.waId, "4915112345678");
    const [request] = graph.state.requests;
    assert.equal(request.method, "POST");
    assert.equal(request.path, `/${phone.id}/messages`);
    assert.equal(request.headers.authorization, `Bearer ${phone.accessToken}`);
    assert.match(request.headers["content-type"], /^application\/json/);
    assert.deepEqual(request.body, {
      messaging_product: "whatsapp",
      recipient_type: "individual",
      to: "4915112345678",
      type: "template",
      template: {
        name: "lead_welcome",
        language: { code: "en_US" },
        components: [{ type: "body", parameters: [{ type: "text", text: "Zoë" }] }],
      },
    });
    assert.equal(graph.state.messages.length, 1);
    assert.equal(graph.state.messages[0].id, result.messageId);
    assert.deepEqual(graph.state.messages[0].template, { name: "lead_welcome", language: "en_US" });
  });
});

test("createGraphClient().sendWhatsAppTemplate() fails an unknown template (132001) or wrong parameters (132000)", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    graph.addTemplate("lead_welcome", { bodyParameters: 1 });
    const send = (templateName: string, languageCode: string, parameters = 1) =>
      client.sendWhatsAppTemplate({
        phoneNumberId: phone.id,
        accessToken: phone.accessToken,
        to: "4915112345678",
        templateName,
        languageCode,
        components: [{ type: "body", parameters: Array(parameters).fill({ type: "text", text: "x" }) }],
      });

    const unknown = await graphFailure(send("no_such_template", "en_US"));
    assert.equal(unknown.code, 132001);
    assert.equal(unknown.action, "failed");
    assert.match(unknown.details ?? "", /no_such_template/);
    assert.equal(
      (await graphFailure(send("lead_welcome", "de_DE"))).code,
      132001,
      "template exists only in en_US",
    );
    const mismatch = await graphFailure(send("lead_welcome", "en_US", 2));
    assert.equal(mismatch.code, 132000);
    assert.equal(mismatch.action, "failed");
    assert.equal(graph.state.messages.length, 0);
  });
});

test("createGraphClient().sendWhatsAppText() needs an open customer-service window (131047 → template_required)", async () => {
  let clock = new Date("2024-05-01T10:00:00Z");
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    const text = () =>
      client.sendWhatsAppText({
        phoneNumberId: phone.id,
        accessToken: phone.accessToken,
        to: "+4915112345678",
        body: "Thanks for your message!",
        previewUrl: true,
      });

    const closed = await graphFailure(text());
    assert.equal(closed.action, "template_required");
    assert.equal(closed.code, 131047);
    assert.equal(closed.retryable, false);

    graph.openServiceWindow(phone.id, "4915112345678");
    const sent = await text();
    assert.match(sent.messageId, /^wamid\./);
    assert.deepEqual(graph.state.requests.at(-1)?.body, {
      messaging_product: "whatsapp",
      recipient_type: "individual",
      to: "4915112345678",
      type: "text",
      text: { preview_url: true, body: "Thanks for your message!" },
    });

    clock = new Date(clock.getTime() + 24 * 3_600_000);
    assert.equal((await graphFailure(text())).action, "template_required", "the window closes after 24 h");
  }, { now: () => clock });
});

test("GraphEmulator.deliver() of an inbound WhatsApp message opens the window for free-form replies", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    const target = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => new Response("ok"));
    try {
      const inbound = inboundMessage({
        phoneNumberId: phone.id,
        displayPhoneNumber: phone.displayPhoneNumber,
        wabaId: phone.wabaId,
        from: "4915112345678",
        text: "Is it still available?",
      });
      const response = await graph.deliver(`http://127.0.0.1:${target.addr.port}/webhooks/whatsapp`, inbound);
      assert.equal(await response.text(), "ok");
    } finally {
      await target.shutdown();
    }
    const sent = await client.sendWhatsAppText({
      phoneNumberId: phone.id,
      accessToken: phone.accessToken,
      to: "4915112345678",
      body: "Yes!",
    });
    const status = statusUpdate({
      phoneNumberId: phone.id,
      messageId: sent.messageId,
      recipientId: "4915112345678",
      status: "delivered",
    });
    const value = status.entry[0].changes[0].value;
    assert.equal(status.object, "whatsapp_business_account");
    assert.deepEqual((value.statuses as { id: string }[])[0].id, sent.messageId);
  });
});

test("createGraphClient() sends biz_opaque_callback_data, which the message's statuses echo", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    graph.addTemplate("lead_welcome");
    const address = { phoneNumberId: phone.id, accessToken: phone.accessToken, to: "+4915100000001" };
    const sent = await client.sendWhatsAppTemplate({
      ...address,
      templateName: "lead_welcome",
      languageCode: "en_US",
      callbackData: "greeting-42",
    });
    const request = graph.state.requests.at(-1)!;
    assert.equal((request.body as Record<string, unknown>).biz_opaque_callback_data, "greeting-42");
    const message = graph.state.messages.find((m) => m.id === sent.messageId)!;
    assert.equal(message.callbackData, "greeting-42");
    const status = statusUpdate({
      phoneNumberId: phone.id,
      messageId: sent.messageId,
      recipientId: message.waId,
      status: "sent",
      callbackData: message.callbackData,
    });
    const [reported] = status.entry[0].changes[0].value.statuses as Record<string, unknown>[];
    assert.equal(reported.biz_opaque_callback_data, "greeting-42");

    const requests = graph.state.requests.length;
    const tooLong = await graphFailure(
      client.sendWhatsAppText({ ...address, body: "Hi", callbackData: "x".repeat(513) }),
    );
    assert.equal(tooLong.action, "failed", "over 512 characters is refused before sending");
    assert.equal(graph.state.requests.length, requests, "nothing was sent");
  });
});

test("createGraphClient().sendWhatsAppText() reports an unreachable recipient (131026 → recipient_unreachable)", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    graph.addTemplate("lead_welcome");
    graph.markUnreachable("4915100000000");
    const error = await graphFailure(client.sendWhatsAppTemplate({
      phoneNumberId: phone.id,
      accessToken: phone.accessToken,
      to: "+4915100000000",
      templateName: "lead_welcome",
      languageCode: "en_US",
    }));
    assert.equal(error.action, "recipient_unreachable");
    assert.equal(error.code, 131026);
  });
});

test("createGraphClient().sendWhatsAppText() reports a bad or foreign token (401) as token_invalid or failed", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    const other = graph.addPhoneNumber();
    graph.openServiceWindow(phone.id, "4915112345678");
    const send = (accessToken: string) =>
      client.sendWhatsAppText({ phoneNumberId: phone.id, accessToken, to: "4915112345678", body: "Hi" });

    const invalid = await graphFailure(send("EAAwrong"));
    assert.equal(invalid.action, "token_invalid");
    assert.equal(invalid.status, 401, "the Cloud API answers token errors with 401");

    graph.expireToken(phone.accessToken);
    assert.equal((await graphFailure(send(phone.accessToken))).subcode, 463);

    const foreign = await graphFailure(send(other.accessToken));
    assert.equal(foreign.action, "failed", "a valid token for another number may not send from this one");
    assert.equal(foreign.subcode, 33);
  });
});

test("createGraphClient().sendWhatsAppText() refuses a recipient that is not E.164 without sending", async () => {
  await withGraph(async (graph, client) => {
    const phone = graph.addPhoneNumber();
    for (const to of ["015112345678", "+49 151 12345678", "abc", "+1234567890123456"]) {
      const error = await graphFailure(
        client.sendWhatsAppText({ phoneNumberId: phone.id, accessToken: phone.accessToken, to, body: "Hi" }),
      );
      assert.equal(error.type, "InvalidRequest", to);
    }
    assert.equal(graph.state.requests.length, 0);
  });
});

test("GraphEmulator enforces the Cloud API's required message fields", async () => {
  await withGraph(async (graph) => {
    const phone = graph.addPhoneNumber();
    const post = async (body: string, contentType = "application/json") => {
      const response = await fetch(`${graph.url}/${phone.id}/messages`, {
        method: "POST",
        headers: { Authorization: `Bearer ${phone.accessToken}`, "Content-Type": contentType },
        body,
      });
      return { status: response.status, error: (await response.json()).error };
    };
    const cases: [string, RegExp][] = [
      ["not json", /messaging_product is required/],
      ['{"to":"4915112345678","type":"text","text":{"body":"x"}}', /messaging_product is required/],
      ['{"messaging_product":"sms","to":"4915112345678"}', /messaging_product must be one of/],
      ['{"messaging_product":"whatsapp","type":"text","text":{"body":"x"}}', /parameter to is required/],
      ['{"messaging_product":"whatsapp","to":"4915112345678","type":"text","text":{}}', /text\['body'\]/],
      [
        '{"messaging_product":"whatsapp","to":"4915112345678","type":"template","template":{"name":"x"}}',
        /language/,
      ],
      ['{"messaging_product":"whatsapp","to":"4915112345678","type":"image"}', /type must be one of/],
    ];
    for (const [body, message] of cases) {
      const { status, error } = await post(body);
      assert.equal(status, 400, body);
      assert.equal(error.code, 100, body);
      assert.match(error.message, message, body);
    }
    const form = await post("messaging_product=whatsapp", "application/x-www-form-urlencoded");
    assert.equal(form.error.code, 100, "only JSON bodies are read");

    const wrongVersion = await fetch(graph.url.replace("v21.0", "v1.0") + `/${phone.id}`);
    assert.equal((await wrongVersion.json()).error.code, 2500, "a base URL with another version is caught");
  });
});

const RETRY_FAULTS: [string, () => ReturnType<typeof graphErrors.serverError>, number][] = [
  ["130429 throughput", graphErrors.throughputLimit, 130429],
  ["4 app rate limit", graphErrors.appRateLimit, 4],
  ["80007 WABA rate limit", graphErrors.wabaRateLimit, 80007],
  ["613 calls per hour", graphErrors.callsPerHourLimit, 613],
  ["17 user rate limit", graphErrors.userRateLimit, 17],
  ["500 server error", graphErrors.serverError, 2],
];

for (const [name, fault, code] of RETRY_FAULTS) {
  test(`createGraphClient() reports ${name} as retry_later`, async () => {
    await withGraph(async (graph, client) => {
      const phone = graph.addPhoneNumber();
      graph.addTemplate("lead_welcome");
      graph.failNext({ method: "POST", pathPattern: /\/messages$/ }, fault());
      const send = () =>
        client.sendWhatsAppTemplate({
          phoneNumberId: phone.id,
          accessToken: phone.accessToken,
          to: "4915112345678",
          templateName: "lead_welcome",
          languageCode: "en_US",
        });
      const error = await graphFailure(send());
      assert.equal(error.action, "retry_later");
      assert.equal(error.retryable, true);
      assert.equal(error.code, code);
      assert.match((await send()).messageId, /^wamid\./, "the fault applied once");
    });
  });
}

test("createGraphClient() reports an injected 190 as token_invalid", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const lead = graph.addLead(graph.addForm(page.id).id);
    graph.failNext({ pathPattern: new RegExp(`^/${lead.id}$`) }, graphErrors.tokenExpired());
    const error = await graphFailure(client.fetchLead(lead.id, page.accessToken));
    assert.equal(error.action, "token_invalid");
    assert.equal(error.subcode, 463);
  });
});

test("createGraphClient() reports a reset connection as retry_later (NetworkError)", async () => {
  await withGraph(async (graph, client) => {
    const page = graph.addPage();
    const lead = graph.addLead(graph.addForm(page.id).id);
    graph.failNext({ method: "GET", pathPattern: /.*/ }, "network", 2);
    for (let attempt = 0; attempt < 2; attempt++) {
      const error = await graphFailure(client.fetchLead(lead.id, page.accessToken));
      assert.equal(error.action, "retry_later");
      assert.equal(error.type, "NetworkError");
      assert.equal(error.status, 0);
    }
    assert.equal(
      (await client.fetchLead(lead.id, page.accessToken)).id,
      lead.id,
      "the third attempt succeeds",
    );
  });
});

test("createGraphClient() reports a refused connection as retry_later (NetworkError)", async () => {
  const graph = await startGraphEmulator();
  await graph.stop();
  const client = createGraphClient({ baseUrl: graph.url });
  const error = await graphFailure(client.fetchLead("12345678901234567", "token"));
  assert.equal(error.action, "retry_later");
  assert.equal(error.type, "NetworkError");
  assert.ok(error.cause instanceof TypeError);
});

test("createGraphClient() gives up after timeoutMs and reports retry_later (Timeout)", async () => {
  await withGraph(async (graph) => {
    const page = graph.addPage();
    const lead = graph.addLead(graph.addForm(page.id).id);
    graph.delay({ pathPattern: /.*/ }, 1_000, 1);
    const client = createGraphClient({ baseUrl: graph.url, timeoutMs: 100 });
    const error = await graphFailure(client.fetchLead(lead.id, page.accessToken));
    assert.equal(error.action, "retry_later");
    assert.equal(error.type, "Timeout");
    assert.match(error.message, /within 100 ms/);
  });
});

test("classifyGraphError() maps Meta's documented codes to actions", () => {
  const cases: [number, unknown, GraphErrorAction][] = [
    [400, { error: { code: 190 } }, "token_invalid"],
    [400, { error: { code: 190, error_subcode: 463 } }, "token_invalid"],
    [400, { error: { code: 190, error_subcode: 467 } }, "token_invalid"],
    [400, { error: { code: 102 } }, "token_invalid"],
    [400, { error: { code: 104 } }, "token_invalid"],
    [401, { error: { code: 0 } }, "token_invalid"],
    [400, { error: { code: 130429 } }, "retry_later"],
    [400, { error: { code: 4 } }, "retry_later"],
    [400, { error: { code: 17 } }, "retry_later"],
    [400, { error: { code: 32 } }, "retry_later"],
    [400, { error: { code: 613 } }, "retry_later"],
    [400, { error: { code: 80007 } }, "retry_later"],
    [400, { error: { code: 80005 } }, "retry_later"],
    [400, { error: { code: 1 } }, "retry_later"],
    [503, { error: { code: 2 } }, "retry_later"],
    [400, { error: { code: 12345, is_transient: true } }, "retry_later"],
    [500, { error: { code: 131000 } }, "retry_later"],
    [502, "<html>Bad Gateway</html>", "retry_later"],
    [429, null, "retry_later"],
    [400, { error: { code: 131047 } }, "template_required"],
    [400, { error: { code: 131026 } }, "recipient_unreachable"],
    [400, { error: { code: 100 } }, "failed"],
    [400, { error: { code: 100, error_subcode: 33 } }, "failed"],
    [404, { error: { code: 132001 } }, "failed"],
    [403, { error: { code: 10 } }, "failed"],
    [400, null, "failed"],
  ];
  for (const [status, body, action] of cases) {
    const error = classifyGraphError(status, body);
    assert.equal(error.action, action, `${status} ${JSON.stringify(body)}`);
    assert.equal(error.retryable, action === "retry_later");
  }
});

test("classifyGraphError() keeps Meta's message, type, codes, details and fbtrace_id", () => {
  const error = classifyGraphError(400, {
    error: {
      message: "(#131047) Re-engagement message",
      type: "OAuthException",
      code: 131047,
      error_subcode: 2494010,
      error_data: { messaging_product: "whatsapp", details: "More than 24 hours have passed" },
      fbtrace_id: "AbCdEf12345",
    },
  });
  assert.ok(error instanceof GraphApiError && error instanceof Error);
  assert.equal(error.name, "GraphApiError");
  assert.equal(error.message, "(#131047) Re-engagement message");
  assert.equal(error.type, "OAuthException");
  assert.equal(error.status, 400);
  assert.equal(error.code, 131047);
  assert.equal(error.subcode, 2494010);
  assert.equal(error.details, "More than 24 hours have passed");
  assert.equal(error.fbtraceId, "AbCdEf12345");

  const bare = classifyGraphError(502, "<html>");
  assert.equal(bare.message, "Graph API request failed with status 502");
  assert.equal(bare.code, null);
  assert.equal(bare.type, "HttpError");
});

test("fieldDataToLead() maps Meta's standard questions and keeps the rest in custom", () => {
  assert.deepEqual(
    fieldDataToLead([
      { name: "full_name", values: ["Zoë Ångström"] },
      { name: "email", values: [" zoe@example.com "] },
      { name: "phone_number", values: ["+4915112345678"] },
      { name: "city", values: ["Berlin"] },
      { name: "which_products_interest_you?", values: ["Solar", "Battery"] },
      { name: "comments", values: [""] },
    ]),
    {
      full_name: "Zoë Ångström",
      email: "zoe@example.com",
      phone: "+4915112345678",
      custom: { city: "Berlin", "which_products_interest_you?": "Solar, Battery" },
    },
  );
});

test("fieldDataToLead() joins first and last name and falls back to work email and phone", () => {
  assert.deepEqual(
    fieldDataToLead([
      { name: "first_name", values: ["Ada"] },
      { name: "last_name", values: ["Lovelace"] },
      { name: "work_email", values: ["ada@example.com"] },
      { name: "work_phone_number", values: ["+442071234567"] },
      { name: "company_name", values: ["Analytical Engines"] },
    ]),
    {
      full_name: "Ada Lovelace",
      email: "ada@example.com",
      phone: "+442071234567",
      custom: { company_name: "Analytical Engines" },
    },
  );
  assert.deepEqual(fieldDataToLead([{ name: "first_name", values: ["Ada"] }]), {
    full_name: "Ada",
    custom: {},
  });
  // A question an advertiser named like an Object property is an ordinary answer (Deno has no __proto__
  // accessor, so assignment keeps the key).
  const odd = fieldDataToLead([
    { name: "email", values: ["ada@example.com"] },
    { name: "__proto__", values: ["kept"] },
    { name: "constructor", values: ["also kept"] },
  ]);
  assert.deepEqual(Object.entries(odd.custom), [["__proto__", "kept"], ["constructor", "also kept"]]);
});

test("fieldDataToLead() keeps first/last name and work email in custom when the main fields are present", () => {
  assert.deepEqual(
    fieldDataToLead([
      { name: "full_name", values: ["Ada King"] },
      { name: "first_name", values: ["Ada"] },
      { name: "email", values: ["ada@home.example"] },
      { name: "work_email", values: ["ada@work.example"] },
    ]),
    {
      full_name: "Ada King",
      email: "ada@home.example",
      custom: { first_name: "Ada", work_email: "ada@work.example" },
    },
  );
  assert.deepEqual(fieldDataToLead([]), { custom: {} });
});
