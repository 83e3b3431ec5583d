/**
 * The product service over HTTP: platform administrators build the global catalog (industry → category →
 * product) with names unique per parent, everyone signed in reads it (as a tree or level by level with
 * keyset pagination), deletes are refused while something still references a row, and clients enable the
 * catalog products they sell (products.manage) and list them (any member).
 */
import assert from "node:assert/strict";
import { PERMISSIONS } from "../../functions/api/catalog.ts";
import {
  call,
  createTeam,
  createUser,
  db,
  type Reply,
  sessionToken,
  startStack,
  test,
  uniq,
} from "../_helpers.ts";

const stack = startStack({ RATE_LIMIT_PER_USER: "100000" });

const platform = await sessionToken(await createUser({ name: "Platform admin", admin: true }), null);

const MISSING = "00000000-0000-4000-8000-000000000000";

type Team = Awaited<ReturnType<typeof createTeam>>;

/** A client team with a token for the people these tests act as. */
async function teamWithTokens() {
  const team = await createTeam();
  return {
    ...team,
    tokens: {
      owner: await sessionToken(team.users.owner, team.clientId),
      admin: await sessionToken(team.users.admin, team.clientId),
      agent: await sessionToken(team.users.agent, team.clientId),
      viewer: await sessionToken(team.users.viewer, team.clientId),
    },
  };
}

function assertStatus(reply: Reply, status: number, what: string) {
  assert.equal(
    reply.status,
    status,
    `${what}: expected ${status}, got ${reply.status} ${JSON.stringify(reply.body)}`,
  );
}

function assertProblem(reply: Reply, status: number, code: string, what: string) {
  assertStatus(reply, status, what);
  assert.equal(reply.headers.get("content-type"), "application/problem+json", `${what}: problem+json`);
  assert.equal(reply.body.code, code, `${what}: code`);
}

async function createIndustry(name = uniq("Industry")) {
  const reply = await call(stack, "POST", "/api/industries", { token: platform, body: { name } });
  assertStatus(reply, 201, `creating industry ${name}`);
  return reply.body as { id: string; name: string; created_at: string };
}

async function createCategory(industryId: string, name = uniq("Category")) {
  const reply = await call(stack, "POST", `/api/industries/${industryId}/categories`, {
    token: platform,
    body: { name },
  });
  assertStatus(reply, 201, `creating category ${name}`);
  return reply.body as { id: string; industry_id: string; name: string };
}

async function createProduct(categoryId: string, name = uniq("Product")) {
  const reply = await call(stack, "POST", `/api/categories/${categoryId}/products`, {
    token: platform,
    body: { name },
  });
  assertStatus(reply, 201, `creating product ${name}`);
  return reply.body as { id: string; category_id: string; name: string };
}

/** An industry with one category holding one product. */
async function chain() {
  const industry = await createIndustry();
  const category = await createCategory(industry.id);
  const product = await createProduct(category.id);
  return { industry, category, product };
}

const clientProductPath = (clientId: string, productId: string) =>
  `/api/clients/${clientId}/products/${productId}`;

async function enable(team: Team & { tokens: { owner: string } }, productId: string) {
  const reply = await call(stack, "PUT", clientProductPath(team.clientId, productId), {
    token: team.tokens.owner,
  });
  assertStatus(reply, 200, "owner enabling a product");
  return reply;
}

/** Every page of a list, following next_cursor. */
async function allPages(path: string, token: string, limit: number) {
  const items: { id: string; name: string }[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const query: string = `limit=${limit}${cursor ? `&cursor=${cursor}` : ""}`;
    const reply = await call(stack, "GET", `${path}?${query}`, { token });
    assertStatus(reply, 200, `page ${page} of ${path}`);
    assert.ok(reply.body.data.length <= limit, "a page holds at most limit items");
    items.push(...reply.body.data);
    cursor = reply.body.next_cursor;
    if (!cursor) return items;
  }
  throw new Error(`${path} did not end`);
}

// -- Building the catalog -------------------------------------------------------------------------------

test("catalog routes: a platform administrator creates an industry, a category and a product", async () => {
  const industryName = uniq("Real estate");
  const industry = await call(stack, "POST", "/api/industries", {
    token: platform,
    body: { name: `  ${industryName}  ` },
  });
  assertStatus(industry, 201, "P-01: industry created");
  assert.equal(industry.body.name, industryName, "P-01: the name is stored trimmed");
  assert.match(industry.body.id, /^[0-9a-f-]{36}$/);

  const category = await call(stack, "POST", `/api/industries/${industry.body.id}/categories`, {
    token: platform,
    body: { name: "Apartments" },
  });
  assertStatus(category, 201, "P-02: category created under the industry");
  assert.equal(category.body.industry_id, industry.body.id);

  const product = await call(stack, "POST", `/api/categories/${category.body.id}/products`, {
    token: platform,
    body: { name: "Two-bedroom flat" },
  });
  assertStatus(product, 201, "P-03: product created under the category");
  assert.deepEqual(
    Object.keys(product.body).sort(),
    ["category_id", "created_at", "id", "name", "updated_at"],
  );
  assert.equal(product.body.category_id, category.body.id);

  const read = await call(stack, "GET", `/api/products/${product.body.id}`, { token: platform });
  assertStatus(read, 200, "P-04: the product reads back");
  assert.deepEqual(read.body, product.body);
  assert.deepEqual(
    (await call(stack, "GET", `/api/industries/${industry.body.id}`, { token: platform })).body,
    industry.body,
    "P-04: the industry reads back",
  );
  assert.deepEqual(
    (await call(stack, "GET", `/api/categories/${category.body.id}`, { token: platform })).body,
    category.body,
    "P-04: the category reads back",
  );
});

test("catalog names are unique per parent ignoring case, and may repeat under another parent", async () => {
  const industry = await createIndustry();
  const other = await createIndustry();
  const category = await createCategory(industry.id, "Solar");
  const product = await createProduct(category.id, "Panel 400W");

  assertProblem(
    await call(stack, "POST", "/api/industries", { token: platform, body: { name: industry.name } }),
    409,
    "name_taken",
    "U-01: a second industry with the same name",
  );
  assertProblem(
    await call(stack, "POST", "/api/industries", {
      token: platform,
      body: { name: industry.name.toUpperCase() },
    }),
    409,
    "name_taken",
    "U-02: the same industry name in other letter case",
  );
  assertProblem(
    await call(stack, "POST", `/api/industries/${industry.id}/categories`, {
      token: platform,
      body: { name: "solar" },
    }),
    409,
    "name_taken",
    "U-03: a second category with the same name in the industry",
  );
  assertProblem(
    await call(stack, "POST", `/api/categories/${category.id}/products`, {
      token: platform,
      body: { name: "Panel 400W" },
    }),
    409,
    "name_taken",
    "U-04: a second product with the same name in the category",
  );

  const sameNameElsewhere = await createCategory(other.id, "Solar");
  assert.equal(
    sameNameElsewhere.industry_id,
    other.id,
    "U-05: the same category name under another industry",
  );
  const sameProductElsewhere = await createProduct(sameNameElsewhere.id, "Panel 400W");
  assert.notEqual(sameProductElsewhere.id, product.id, "U-06: the same product name under another category");

  assertProblem(
    await call(stack, "PATCH", `/api/categories/${sameNameElsewhere.id}`, {
      token: platform,
      body: { industry_id: industry.id },
    }),
    409,
    "name_taken",
    "U-07: moving a category into an industry that has one of that name",
  );
  const second = await createIndustry();
  assertProblem(
    await call(stack, "PATCH", `/api/industries/${second.id}`, {
      token: platform,
      body: { name: industry.name },
    }),
    409,
    "name_taken",
    "U-08: renaming an industry to a taken name",
  );
});

test("catalog routes: every category needs an industry and every product a category (404 otherwise)", async () => {
  const { category } = await chain();
  assertProblem(
    await call(stack, "POST", `/api/industries/${MISSING}/categories`, {
      token: platform,
      body: { name: "X" },
    }),
    404,
    "industry_not_found",
    "C-01: a category under an unknown industry",
  );
  assertProblem(
    await call(stack, "POST", `/api/categories/${MISSING}/products`, {
      token: platform,
      body: { name: "X" },
    }),
    404,
    "category_not_found",
    "C-02: a product under an unknown category",
  );
  assertProblem(
    await call(stack, "PATCH", `/api/categories/${category.id}`, {
      token: platform,
      body: { industry_id: MISSING },
    }),
    404,
    "industry_not_found",
    "C-03: moving a category to an unknown industry",
  );
  const product = await createProduct(category.id);
  assertProblem(
    await call(stack, "PATCH", `/api/products/${product.id}`, {
      token: platform,
      body: { category_id: MISSING },
    }),
    404,
    "category_not_found",
    "C-04: moving a product to an unknown category",
  );
  for (
    const [path, code] of [
      [`/api/industries/${MISSING}`, "industry_not_found"],
      [`/api/industries/${MISSING}/categories`, "industry_not_found"],
      [`/api/categories/${MISSING}`, "category_not_found"],
      [`/api/categories/${MISSING}/products`, "category_not_found"],
      [`/api/products/${MISSING}`, "product_not_found"],
    ]
  ) {
    assertProblem(await call(stack, "GET", path, { token: platform }), 404, code, `C-05: GET ${path}`);
  }
  for (
    const [path, code] of [
      [`/api/industries/${MISSING}`, "industry_not_found"],
      [`/api/categories/${MISSING}`, "category_not_found"],
      [`/api/products/${MISSING}`, "product_not_found"],
    ]
  ) {
    assertProblem(
      await call(stack, "PATCH", path, { token: platform, body: { name: "Renamed" } }),
      404,
      code,
      `C-06: PATCH ${path}`,
    );
    assertProblem(await call(stack, "DELETE", path, { token: platform }), 404, code, `C-07: DELETE ${path}`);
  }
  assertProblem(
    await call(stack, "GET", "/api/products/not-a-uuid", { token: platform }),
    422,
    "validation_failed",
    "C-08: a malformed id is invalid input, not a server error",
  );
});

test("catalog routes: invalid bodies and unknown fields are 422", async () => {
  const { industry, category, product } = await chain();
  const cases: Array<[string, string, unknown, string]> = [
    ["POST", "/api/industries", {}, "body.name"],
    ["POST", "/api/industries", { name: "   " }, "body.name"],
    ["POST", "/api/industries", { name: "x".repeat(201) }, "body.name"],
    ["POST", "/api/industries", { name: "Ok", color: "red" }, "body.color"],
    ["POST", `/api/industries/${industry.id}/categories`, { name: 5 }, "body.name"],
    [
      "POST",
      `/api/categories/${category.id}/products`,
      { name: "Ok", category_id: category.id },
      "body.category_id",
    ],
    ["PATCH", `/api/industries/${industry.id}`, {}, "body.name"],
    ["PATCH", `/api/categories/${category.id}`, { industry_id: "nope" }, "body.industry_id"],
    ["PATCH", `/api/products/${product.id}`, { id: MISSING }, "body.id"],
  ];
  for (const [method, path, body, field] of cases) {
    const reply = await call(stack, method, path, { token: platform, body });
    assertProblem(reply, 422, "validation_failed", `V: ${method} ${path} ${JSON.stringify(body)}`);
    assert.ok(
      reply.body.errors.some((e: { path: string }) => e.path === field),
      `V: ${method} ${path} names ${field}: ${JSON.stringify(reply.body.errors)}`,
    );
  }
  const empty = await call(stack, "PATCH", `/api/products/${product.id}`, { token: platform, body: {} });
  assertProblem(empty, 422, "validation_failed", "V: a PATCH without fields");
  assertProblem(
    await call(stack, "GET", "/api/industries?cursor=garbage", { token: platform }),
    422,
    "validation_failed",
    "V: a tampered cursor",
  );
});

test("catalog routes: members of clients, even owners, get 403 on every catalog write and may read", async () => {
  const team = await teamWithTokens();
  const { industry, category, product } = await chain();
  const writes: Array<[string, string, unknown?]> = [
    ["POST", "/api/industries", { name: uniq("Nope") }],
    ["PATCH", `/api/industries/${industry.id}`, { name: uniq("Nope") }],
    ["DELETE", `/api/industries/${industry.id}`],
    ["POST", `/api/industries/${industry.id}/categories`, { name: uniq("Nope") }],
    ["PATCH", `/api/categories/${category.id}`, { name: uniq("Nope") }],
    ["DELETE", `/api/categories/${category.id}`],
    ["POST", `/api/categories/${category.id}/products`, { name: uniq("Nope") }],
    ["PATCH", `/api/products/${product.id}`, { name: uniq("Nope") }],
    ["DELETE", `/api/products/${product.id}`],
    // Unknown ids too: the catalog is readable by everyone, so refusing first leaks nothing.
    ["DELETE", `/api/products/${MISSING}`],
  ];
  for (const token of [team.tokens.owner, team.tokens.agent]) {
    for (const [method, path, body] of writes) {
      assertProblem(
        await call(stack, method, path, { token, body }),
        403,
        "permission_denied",
        `N-01: non-admin ${method} ${path}`,
      );
    }
  }
  assert.deepEqual(
    (await call(stack, "GET", `/api/products/${product.id}`, { token: team.tokens.agent })).body,
    product,
    "N-02: nothing changed, and an agent can read the product",
  );
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from public.categories where industry_id = ${industry.id}`;
  assert.equal(count, 1, "N-03: no category was added");
  assertStatus(
    await call(stack, "GET", `/api/industries/${industry.id}/categories`, { token: team.tokens.viewer }),
    200,
    "N-04: a viewer lists categories",
  );
  const loner = await sessionToken(await createUser({ name: "Member of no client" }), null);
  assertStatus(
    await call(stack, "GET", "/api/catalog", { token: loner }),
    200,
    "N-05: any signed-in user reads",
  );
  assertProblem(
    await call(stack, "GET", "/api/catalog"),
    401,
    "missing_token",
    "N-06: anonymous callers cannot",
  );
});

// -- Reading the catalog --------------------------------------------------------------------------------

test("GET /api/catalog returns industries with their categories and products, each level by name", async () => {
  const tag = uniq("tree");
  const industry = await createIndustry(`${tag} B industry`);
  const emptyIndustry = await createIndustry(`${tag} A empty industry`);
  const second = await createCategory(industry.id, "Zeta");
  const first = await createCategory(industry.id, "Alpha");
  const emptyCategory = await createCategory(industry.id, "Middle");
  const p2 = await createProduct(first.id, "Pear");
  const p1 = await createProduct(first.id, "Apple");
  const p3 = await createProduct(second.id, "Zucchini");

  const reply = await call(stack, "GET", "/api/catalog", { token: platform });
  assertStatus(reply, 200, "T-01: the catalog");
  const mine = reply.body.data.filter((node: { industry: { name: string } }) =>
    node.industry.name.startsWith(tag)
  );
  assert.deepEqual(
    mine.map((node: { industry: { id: string } }) => node.industry.id),
    [emptyIndustry.id, industry.id],
    "T-02: industries ordered by name",
  );
  assert.deepEqual(mine[0], { industry: emptyIndustry, categories: [] }, "T-03: an empty industry is listed");
  assert.deepEqual(
    mine[1].industry,
    industry,
    "T-04: the industry node is the industry as the API returns it",
  );
  assert.deepEqual(
    mine[1].categories,
    [
      { category: first, products: [p1, p2] },
      { category: emptyCategory, products: [] },
      { category: second, products: [p3] },
    ],
    "T-05: categories by name, each with its products by name",
  );
});

test("GET /api/industries, categories and products page with keyset cursors", async () => {
  const tag = uniq("page");
  const industries = [];
  for (const letter of ["e", "a", "d", "b", "c"]) industries.push(await createIndustry(`${tag} ${letter}`));
  const all = await allPages("/api/industries", platform, 2);
  const mine = all.filter((i) => i.name.startsWith(tag)).map((i) => i.name);
  assert.deepEqual(
    mine,
    ["a", "b", "c", "d", "e"].map((l) => `${tag} ${l}`),
    "K-01: every industry once, by name",
  );
  assert.equal(new Set(all.map((i) => i.id)).size, all.length, "K-02: no industry repeats across pages");

  const industry = industries[0];
  const names = ["Gamma", "Alpha", "Epsilon", "Beta", "Delta"];
  const categories = [];
  for (const name of names) categories.push(await createCategory(industry.id, name));
  const pagedCategories = await allPages(`/api/industries/${industry.id}/categories`, platform, 2);
  assert.deepEqual(pagedCategories.map((c) => c.name), [...names].sort(), "K-03: categories by name");

  for (const name of names) await createProduct(categories[0].id, name);
  const pagedProducts = await allPages(`/api/categories/${categories[0].id}/products`, platform, 3);
  assert.deepEqual(pagedProducts.map((p) => p.name), [...names].sort(), "K-04: products by name");

  const exact = await call(stack, "GET", `/api/categories/${categories[0].id}/products?limit=5`, {
    token: platform,
  });
  assert.equal(exact.body.data.length, 5);
  assert.equal(exact.body.next_cursor, null, "K-05: a full last page has no next cursor");
  assertProblem(
    await call(stack, "GET", "/api/industries?limit=0", { token: platform }),
    422,
    "validation_failed",
    "K-06: limit below 1",
  );
});

// -- Changing and deleting the catalog ------------------------------------------------------------------

test("PATCH renames industries, categories and products and moves categories and products", async () => {
  const { industry, category, product } = await chain();
  const other = await chain();

  const industryName = uniq("Renamed industry");
  const renamedIndustry = await call(stack, "PATCH", `/api/industries/${industry.id}`, {
    token: platform,
    body: { name: industryName },
  });
  assertStatus(renamedIndustry, 200, "R-01: industry renamed");
  assert.equal(renamedIndustry.body.name, industryName);
  assert.ok(renamedIndustry.body.updated_at > industry.created_at, "R-01: updated_at moves on");

  const renamedCategory = await call(stack, "PATCH", `/api/categories/${category.id}`, {
    token: platform,
    body: { name: "Renamed category" },
  });
  assertStatus(renamedCategory, 200, "R-02: category renamed");
  assert.equal(renamedCategory.body.name, "Renamed category");
  assert.equal(renamedCategory.body.industry_id, industry.id, "R-02: the category stays in its industry");

  const renamedProduct = await call(stack, "PATCH", `/api/products/${product.id}`, {
    token: platform,
    body: { name: "Renamed product" },
  });
  assertStatus(renamedProduct, 200, "R-03: product renamed");
  assert.equal(renamedProduct.body.name, "Renamed product");

  const caseOnly = await call(stack, "PATCH", `/api/products/${product.id}`, {
    token: platform,
    body: { name: "RENAMED PRODUCT" },
  });
  assertStatus(caseOnly, 200, "R-04: changing only the letter case of a name is not a conflict with itself");

  const moved = await call(stack, "PATCH", `/api/products/${product.id}`, {
    token: platform,
    body: { category_id: other.category.id },
  });
  assertStatus(moved, 200, "R-05: product moved to another category");
  assert.equal(moved.body.category_id, other.category.id);

  const movedCategory = await call(stack, "PATCH", `/api/categories/${category.id}`, {
    token: platform,
    body: { industry_id: other.industry.id },
  });
  assertStatus(movedCategory, 200, "R-06: category moved to another industry");
  assert.equal(movedCategory.body.industry_id, other.industry.id);
});

test("DELETE refuses an industry with categories and a category with products, and deletes empty ones", async () => {
  const { industry, category, product } = await chain();
  assertProblem(
    await call(stack, "DELETE", `/api/industries/${industry.id}`, { token: platform }),
    409,
    "in_use",
    "D-01: an industry with a category",
  );
  assertProblem(
    await call(stack, "DELETE", `/api/categories/${category.id}`, { token: platform }),
    409,
    "in_use",
    "D-02: a category with a product",
  );
  assertStatus(
    await call(stack, "DELETE", `/api/products/${product.id}`, { token: platform }),
    204,
    "D-03: a product no client enabled",
  );
  assertStatus(
    await call(stack, "DELETE", `/api/categories/${category.id}`, { token: platform }),
    204,
    "D-04: the now empty category",
  );
  assertStatus(
    await call(stack, "DELETE", `/api/industries/${industry.id}`, { token: platform }),
    204,
    "D-05: the now empty industry",
  );
  assertProblem(
    await call(stack, "DELETE", `/api/industries/${industry.id}`, { token: platform }),
    404,
    "industry_not_found",
    "D-06: deleting again",
  );
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from public.industries where id = ${industry.id}`;
  assert.equal(count, 0, "D-07: the industry is gone");
});

test("DELETE /api/products/{id} is refused while a client has the product enabled", async () => {
  const team = await teamWithTokens();
  const { product } = await chain();
  await enable(team, product.id);
  assertProblem(
    await call(stack, "DELETE", `/api/products/${product.id}`, { token: platform }),
    409,
    "in_use",
    "D-08: a product a client sells",
  );
  assertStatus(
    await call(stack, "DELETE", clientProductPath(team.clientId, product.id), { token: team.tokens.owner }),
    204,
    "D-09: the client disables it",
  );
  assertStatus(
    await call(stack, "DELETE", `/api/products/${product.id}`, { token: platform }),
    204,
    "D-10: then the product can go",
  );
});

// -- A client's products --------------------------------------------------------------------------------

test("PUT /api/clients/{id}/products/{id} enables a product for the client, idempotently", async () => {
  assert.ok("products.manage" in PERMISSIONS, "E-00: the route's permission is in the catalog");
  const team = await teamWithTokens();
  const { industry, category, product } = await chain();

  const first = await enable(team, product.id);
  assert.deepEqual(first.body, {
    client_id: team.clientId,
    product_id: product.id,
    name: product.name,
    category_id: category.id,
    category_name: category.name,
    industry_id: industry.id,
    industry_name: industry.name,
    enabled_at: first.body.enabled_at,
  }, "E-01: the enabled product with its category and industry");

  const again = await enable(team, product.id);
  assert.deepEqual(again.body, first.body, "E-02: enabling twice answers 200 and keeps the first enabled_at");

  const byAdmin = await call(stack, "PUT", clientProductPath(team.clientId, (await chain()).product.id), {
    token: team.tokens.admin,
  });
  assertStatus(byAdmin, 200, "E-03: the client's admin holds products.manage too");

  assertProblem(
    await call(stack, "PUT", clientProductPath(team.clientId, MISSING), { token: team.tokens.owner }),
    404,
    "product_not_found",
    "E-04: enabling an unknown product",
  );
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from public.client_products where client_id = ${team.clientId}`;
  assert.equal(count, 2, "E-05: one row per enabled product");
});

test("client products: agents get 403 and other clients' owners 404 on enable, disable and list", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const { product } = await chain();
  await enable(team, product.id);
  const path = clientProductPath(team.clientId, product.id);

  for (const method of ["PUT", "DELETE"]) {
    assertProblem(
      await call(stack, method, path, { token: team.tokens.agent }),
      403,
      "permission_denied",
      `A-01: an agent ${method}`,
    );
    assertProblem(
      await call(stack, method, path, { token: team.tokens.viewer }),
      403,
      "permission_denied",
      `A-02: a viewer ${method}`,
    );
    assertProblem(
      await call(stack, method, path, { token: other.tokens.owner }),
      404,
      "client_not_found",
      `A-03: another client's owner ${method}`,
    );
  }
  assertProblem(
    await call(stack, "GET", `/api/clients/${team.clientId}/products`, { token: other.tokens.owner }),
    404,
    "client_not_found",
    "A-04: another client's owner cannot list",
  );
  assertProblem(
    await call(stack, "GET", `/api/clients/${uniq("nobody")}/products`, { token: team.tokens.owner }),
    404,
    "client_not_found",
    "A-05: an unknown client looks the same",
  );
  const listed = await call(stack, "GET", `/api/clients/${team.clientId}/products`, {
    token: team.tokens.agent,
  });
  assertStatus(listed, 200, "A-06: an agent lists the client's products");
  assert.deepEqual(listed.body.data.map((p: { product_id: string }) => p.product_id), [product.id]);
  const [{ count }] = await db()<{ count: number }[]>`
    select count(*)::int as count from public.client_products where product_id = ${product.id}`;
  assert.equal(count, 1, "A-07: nobody else enabled or disabled anything");
  const byPlatform = await call(stack, "GET", `/api/clients/${team.clientId}/products`, { token: platform });
  assertStatus(byPlatform, 200, "A-08: platform administrators see every client's products");
});

test("GET /api/clients/{id}/products lists only that client's enabled products, by industry, category, name", async () => {
  const team = await teamWithTokens();
  const other = await teamWithTokens();
  const tag = uniq("list");
  const industryB = await createIndustry(`${tag} B`);
  const industryA = await createIndustry(`${tag} A`);
  const categoryB = await createCategory(industryB.id, "Cat");
  const categoryA = await createCategory(industryA.id, "Cat");
  const b1 = await createProduct(categoryB.id, "One");
  const a2 = await createProduct(categoryA.id, "Two");
  const a1 = await createProduct(categoryA.id, "One");
  const notEnabled = await createProduct(categoryA.id, "Three");
  const othersOnly = await createProduct(categoryB.id, "Other client's");

  for (const product of [b1, a2, a1]) await enable(team, product.id);
  await enable(other, othersOnly.id);

  const page1 = await call(stack, "GET", `/api/clients/${team.clientId}/products?limit=2`, {
    token: team.tokens.viewer,
  });
  assertStatus(page1, 200, "L-01: first page");
  assert.ok(page1.body.next_cursor, "L-01: a second page follows");
  const page2 = await call(
    stack,
    "GET",
    `/api/clients/${team.clientId}/products?limit=2&cursor=${page1.body.next_cursor}`,
    { token: team.tokens.viewer },
  );
  assertStatus(page2, 200, "L-02: second page");
  assert.equal(page2.body.next_cursor, null);
  const ids = [...page1.body.data, ...page2.body.data].map((p: { product_id: string }) => p.product_id);
  assert.deepEqual(
    ids,
    [a1.id, a2.id, b1.id],
    "L-03: enabled products only, industry then category then name",
  );
  assert.ok(!ids.includes(notEnabled.id) && !ids.includes(othersOnly.id), "L-04: nothing else");
  assert.deepEqual(
    page1.body.data[0],
    {
      client_id: team.clientId,
      product_id: a1.id,
      name: "One",
      category_id: categoryA.id,
      category_name: "Cat",
      industry_id: industryA.id,
      industry_name: industryA.name,
      enabled_at: page1.body.data[0].enabled_at,
    },
    "L-05: each item names its category and industry",
  );

  assertStatus(
    await call(stack, "DELETE", clientProductPath(team.clientId, a2.id), { token: team.tokens.owner }),
    204,
    "L-06: the owner disables a product",
  );
  const after = await call(stack, "GET", `/api/clients/${team.clientId}/products`, {
    token: team.tokens.owner,
  });
  assert.deepEqual(
    after.body.data.map((p: { product_id: string }) => p.product_id),
    [a1.id, b1.id],
    "L-07: the disabled product is no longer listed",
  );
  assertProblem(
    await call(stack, "DELETE", clientProductPath(team.clientId, a2.id), { token: team.tokens.owner }),
    404,
    "product_not_enabled",
    "L-08: disabling a product that is not enabled",
  );
  assertProblem(
    await call(stack, "DELETE", clientProductPath(team.clientId, MISSING), { token: team.tokens.owner }),
    404,
    "product_not_found",
    "L-09: disabling an unknown product",
  );
  assertProblem(
    await call(stack, "GET", `/api/clients/${team.clientId}/products?cursor=e30`, {
      token: team.tokens.owner,
    }),
    422,
    "validation_failed",
    "L-10: a tampered cursor",
  );
});

test("DELETE /api/clients/{id}/products/{id} is refused while the client's leads reference the product", async () => {
  const team = await teamWithTokens();
  const { product } = await chain();
  await enable(team, product.id);
  await db()`
    insert into public.leads (client_id, source, email, product_id)
    values (${team.clientId}, 'manual', ${`${uniq("lead")}@example.com`}, ${product.id})`;
  assertProblem(
    await call(stack, "DELETE", clientProductPath(team.clientId, product.id), { token: team.tokens.owner }),
    409,
    "in_use",
    "L-11: leads still reference the product",
  );
  assertProblem(
    await call(stack, "DELETE", `/api/products/${product.id}`, { token: platform }),
    409,
    "in_use",
    "L-12: nor can the catalog product go",
  );
  const listed = await call(stack, "GET", `/api/clients/${team.clientId}/products`, {
    token: team.tokens.owner,
  });
  assert.deepEqual(
    listed.body.data.map((p: { product_id: string }) => p.product_id),
    [product.id],
    "L-13: the product stays enabled",
  );
});

test("OpenAPI documents the product routes and products.manage on the client routes", async () => {
  const reply = await call(stack, "GET", "/api/openapi.json");
  assertStatus(reply, 200, "O-01: the document");
  const paths = reply.body.paths;
  for (
    const path of [
      "/api/catalog",
      "/api/industries",
      "/api/industries/{industryId}",
      "/api/industries/{industryId}/categories",
      "/api/categories/{categoryId}",
      "/api/categories/{categoryId}/products",
      "/api/products/{productId}",
      "/api/clients/{clientId}/products",
      "/api/clients/{clientId}/products/{productId}",
    ]
  ) {
    assert.ok(paths[path], `O-02: ${path} is documented`);
  }
  assert.equal(paths["/api/clients/{clientId}/products/{productId}"].put["x-permission"], "products.manage");
  assert.equal(
    paths["/api/clients/{clientId}/products/{productId}"].delete["x-permission"],
    "products.manage",
  );
});
