import { type RouteHandler, z } from "@hono/zod-openapi";
import type { Context } from "hono";
import { asUser, type Tx } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor } from "../../_shared/http.ts";
import * as queries from "./products.queries.ts";
import type * as routes from "./products.routes.ts";

/** Runs work in the caller's row-level-security transaction. */
function asCaller<T>(c: Context<AppEnv>, work: (tx: Tx) => Promise<T>): Promise<T> {
  return asUser(c.get("deps").sql, c.get("caller").claims, work);
}

/**
 * Catalog writes are for platform administrators. The policies enforce it too; asking first gives a clear
 * 403 instead of a policy violation (the catalog is readable by everyone, so this reveals nothing).
 */
function requirePlatformAdmin(c: Context<AppEnv>) {
  if (!c.get("caller").isPlatformAdmin) {
    throw new ApiError(
      403,
      "permission_denied",
      "Only platform administrators can change the product catalog",
    );
  }
}

const industryNotFound = (id: string) =>
  new ApiError(404, "industry_not_found", `Industry "${id}" was not found`);
const categoryNotFound = (id: string) =>
  new ApiError(404, "category_not_found", `Category "${id}" was not found`);
const productNotFound = (id: string) =>
  new ApiError(404, "product_not_found", `Product "${id}" was not found`);
const nameTaken = (what: string, name: string) =>
  new ApiError(409, "name_taken", `${what} named "${name}" already exists`);
const inUse = (detail: string) => new ApiError(409, "in_use", detail);

const UNIQUE_VIOLATION = "23505";
const FOREIGN_KEY_VIOLATION = "23503";

/**
 * Runs a database write and turns the constraint violations it expects (by error code and constraint
 * name) into the API's answers; anything else goes to the common error handler.
 */
async function translating<T>(
  work: Promise<T>,
  expected: Record<string, () => ApiError>,
): Promise<T> {
  try {
    return await work;
  } catch (error) {
    const { code, constraint_name } = error as { code?: string; constraint_name?: string };
    const mapped = expected[`${code}:${constraint_name}`];
    throw mapped ? mapped() : error;
  }
}

const nameCursor = z.tuple([z.string(), z.uuid()]);

/** Slices the extra row a list query fetched into a page and the cursor of the next one. */
function pageFrom<T>(rows: T[], limit: number, position: (last: T) => unknown[]) {
  const data = rows.slice(0, limit);
  return { data, next_cursor: rows.length > limit ? encodeCursor(position(data[data.length - 1])) : null };
}

// -- The whole catalog ----------------------------------------------------------------------------------

type Catalog = z.infer<typeof routes.catalogSchema>["data"];

export const getCatalog: RouteHandler<typeof routes.getCatalog, AppEnv> = async (c) => {
  const rows = await asCaller(c, (tx) => queries.catalogRows(tx));
  // Rows arrive ordered by industry, then category, then product, so each level only ever appends.
  const tree: Catalog = [];
  for (const row of rows) {
    let industry = tree.at(-1);
    if (industry?.industry.id !== row.industry_id) {
      industry = {
        industry: {
          id: row.industry_id,
          name: row.industry_name,
          created_at: row.industry_created_at,
          updated_at: row.industry_updated_at,
        },
        categories: [],
      };
      tree.push(industry);
    }
    if (row.category_id === null) continue;
    let category = industry.categories.at(-1);
    if (category?.category.id !== row.category_id) {
      category = {
        category: {
          id: row.category_id,
          industry_id: row.industry_id,
          name: row.category_name!,
          created_at: row.category_created_at!,
          updated_at: row.category_updated_at!,
        },
        products: [],
      };
      industry.categories.push(category);
    }
    if (row.product_id === null) continue;
    category.products.push({
      id: row.product_id,
      category_id: row.category_id,
      name: row.product_name!,
      created_at: row.product_created_at!,
      updated_at: row.product_updated_at!,
    });
  }
  return c.json({ data: tree }, 200);
};

// -- Industries -----------------------------------------------------------------------------------------

export const listIndustries: RouteHandler<typeof routes.listIndustries, AppEnv> = async (c) => {
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, nameCursor) : undefined;
  const rows = await asCaller(c, (tx) => queries.listIndustries(tx, { limit, after }));
  return c.json(pageFrom(rows, limit, (last) => [last.name, last.id]), 200);
};

export const getIndustry: RouteHandler<typeof routes.getIndustry, AppEnv> = async (c) => {
  const { industryId } = c.req.valid("param");
  const industry = await asCaller(c, (tx) => queries.findIndustry(tx, industryId));
  if (!industry) throw industryNotFound(industryId);
  return c.json(industry, 200);
};

export const createIndustry: RouteHandler<typeof routes.createIndustry, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { name } = c.req.valid("json");
  const industry = await translating(asCaller(c, (tx) => queries.insertIndustry(tx, name)), {
    [`${UNIQUE_VIOLATION}:industries_lower_name_key`]: () => nameTaken("An industry", name),
  });
  return c.json(industry, 201);
};

export const updateIndustry: RouteHandler<typeof routes.updateIndustry, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { industryId } = c.req.valid("param");
  const { name } = c.req.valid("json");
  const industry = await translating(asCaller(c, (tx) => queries.updateIndustry(tx, industryId, name)), {
    [`${UNIQUE_VIOLATION}:industries_lower_name_key`]: () => nameTaken("An industry", name),
  });
  if (!industry) throw industryNotFound(industryId);
  return c.json(industry, 200);
};

export const deleteIndustry: RouteHandler<typeof routes.deleteIndustry, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { industryId } = c.req.valid("param");
  const deleted = await translating(asCaller(c, (tx) => queries.deleteIndustry(tx, industryId)), {
    [`${FOREIGN_KEY_VIOLATION}:categories_industry_id_fkey`]: () =>
      inUse("The industry still has categories; delete or move them first"),
  });
  if (!deleted) throw industryNotFound(industryId);
  return c.body(null, 204);
};

// -- Categories -----------------------------------------------------------------------------------------

export const listCategories: RouteHandler<typeof routes.listCategories, AppEnv> = async (c) => {
  const { industryId } = c.req.valid("param");
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, nameCursor) : undefined;
  const rows = await asCaller(c, async (tx) => {
    if (!await queries.findIndustry(tx, industryId)) throw industryNotFound(industryId);
    return await queries.listCategories(tx, industryId, { limit, after });
  });
  return c.json(pageFrom(rows, limit, (last) => [last.name, last.id]), 200);
};

export const getCategory: RouteHandler<typeof routes.getCategory, AppEnv> = async (c) => {
  const { categoryId } = c.req.valid("param");
  const category = await asCaller(c, (tx) => queries.findCategory(tx, categoryId));
  if (!category) throw categoryNotFound(categoryId);
  return c.json(category, 200);
};

export const createCategory: RouteHandler<typeof routes.createCategory, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { industryId } = c.req.valid("param");
  const { name } = c.req.valid("json");
  const category = await translating(asCaller(c, (tx) => queries.insertCategory(tx, industryId, name)), {
    [`${FOREIGN_KEY_VIOLATION}:categories_industry_id_fkey`]: () => industryNotFound(industryId),
    [`${UNIQUE_VIOLATION}:categories_industry_id_lower_name_key`]: () =>
      nameTaken("A category of this industry", name),
  });
  return c.json(category, 201);
};

export const updateCategory: RouteHandler<typeof routes.updateCategory, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { categoryId } = c.req.valid("param");
  const changes = c.req.valid("json");
  const category = await translating(asCaller(c, (tx) => queries.updateCategory(tx, categoryId, changes)), {
    [`${FOREIGN_KEY_VIOLATION}:categories_industry_id_fkey`]: () => industryNotFound(changes.industry_id!),
    [`${UNIQUE_VIOLATION}:categories_industry_id_lower_name_key`]: () =>
      new ApiError(409, "name_taken", "The industry already has a category with this name"),
  });
  if (!category) throw categoryNotFound(categoryId);
  return c.json(category, 200);
};

export const deleteCategory: RouteHandler<typeof routes.deleteCategory, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { categoryId } = c.req.valid("param");
  const deleted = await translating(asCaller(c, (tx) => queries.deleteCategory(tx, categoryId)), {
    [`${FOREIGN_KEY_VIOLATION}:products_category_id_fkey`]: () =>
      inUse("The category still has products; delete or move them first"),
  });
  if (!deleted) throw categoryNotFound(categoryId);
  return c.body(null, 204);
};

// -- Products -------------------------------------------------------------------------------------------

export const listProducts: RouteHandler<typeof routes.listProducts, AppEnv> = async (c) => {
  const { categoryId } = c.req.valid("param");
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, nameCursor) : undefined;
  const rows = await asCaller(c, async (tx) => {
    if (!await queries.findCategory(tx, categoryId)) throw categoryNotFound(categoryId);
    return await queries.listProducts(tx, categoryId, { limit, after });
  });
  return c.json(pageFrom(rows, limit, (last) => [last.name, last.id]), 200);
};

export const getProduct: RouteHandler<typeof routes.getProduct, AppEnv> = async (c) => {
  const { productId } = c.req.valid("param");
  const product = await asCaller(c, (tx) => queries.findProduct(tx, productId));
  if (!product) throw productNotFound(productId);
  return c.json(product, 200);
};

export const createProduct: RouteHandler<typeof routes.createProduct, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { categoryId } = c.req.valid("param");
  const { name } = c.req.valid("json");
  const product = await translating(asCaller(c, (tx) => queries.insertProduct(tx, categoryId, name)), {
    [`${FOREIGN_KEY_VIOLATION}:products_category_id_fkey`]: () => categoryNotFound(categoryId),
    [`${UNIQUE_VIOLATION}:products_category_id_lower_name_key`]: () =>
      nameTaken("A product of this category", name),
  });
  return c.json(product, 201);
};

export const updateProduct: RouteHandler<typeof routes.updateProduct, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { productId } = c.req.valid("param");
  const changes = c.req.valid("json");
  const product = await translating(asCaller(c, (tx) => queries.updateProduct(tx, productId, changes)), {
    [`${FOREIGN_KEY_VIOLATION}:products_category_id_fkey`]: () => categoryNotFound(changes.category_id!),
    [`${UNIQUE_VIOLATION}:products_category_id_lower_name_key`]: () =>
      new ApiError(409, "name_taken", "The category already has a product with this name"),
  });
  if (!product) throw productNotFound(productId);
  return c.json(product, 200);
};

export const deleteProduct: RouteHandler<typeof routes.deleteProduct, AppEnv> = async (c) => {
  requirePlatformAdmin(c);
  const { productId } = c.req.valid("param");
  const deleted = await translating(asCaller(c, (tx) => queries.deleteProduct(tx, productId)), {
    // Counted across every client, whatever the caller can see: the foreign key check ignores policies.
    [`${FOREIGN_KEY_VIOLATION}:client_products_product_id_fkey`]: () =>
      inUse("Clients have enabled this product; they must disable it first"),
  });
  if (!deleted) throw productNotFound(productId);
  return c.body(null, 204);
};

// -- A client's products --------------------------------------------------------------------------------

const clientNotFound = (id: string) => new ApiError(404, "client_not_found", `Client "${id}" was not found`);

const clientProductCursor = z.tuple([z.string(), z.string(), z.string(), z.uuid()]);

export const listClientProducts: RouteHandler<typeof routes.listClientProducts, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, clientProductCursor) : undefined;
  const rows = await asCaller(c, async (tx) => {
    // Any member may read what the client sells; anyone else gets a 404, so the client's existence stays hidden.
    if (!await queries.clientVisible(tx, clientId)) throw clientNotFound(clientId);
    return await queries.listClientProducts(tx, clientId, { limit, after });
  });
  return c.json(
    pageFrom(rows, limit, (last) => [last.industry_name, last.category_name, last.name, last.product_id]),
    200,
  );
};

export const enableClientProduct: RouteHandler<typeof routes.enableClientProduct, AppEnv> = async (c) => {
  const { clientId, productId } = c.req.valid("param");
  // requirePermission has already answered 404/403 for clients the caller cannot see or manage.
  const enabled = await translating(
    asCaller(c, async (tx) => {
      if (!await queries.findProduct(tx, productId)) throw productNotFound(productId);
      await queries.enableClientProduct(tx, clientId, productId);
      return await queries.findClientProduct(tx, clientId, productId);
    }),
    // The product was deleted between the check and the insert.
    { [`${FOREIGN_KEY_VIOLATION}:client_products_product_id_fkey`]: () => productNotFound(productId) },
  );
  if (!enabled) throw productNotFound(productId);
  return c.json(enabled, 200);
};

export const disableClientProduct: RouteHandler<typeof routes.disableClientProduct, AppEnv> = async (c) => {
  const { clientId, productId } = c.req.valid("param");
  await translating(
    asCaller(c, async (tx) => {
      if (await queries.disableClientProduct(tx, clientId, productId)) return;
      if (!await queries.findProduct(tx, productId)) throw productNotFound(productId);
      throw new ApiError(
        404,
        "product_not_enabled",
        `Product "${productId}" is not enabled for client "${clientId}"`,
      );
    }),
    // Counted over all of the client's leads, whatever the caller can see: the foreign key ignores policies.
    {
      [`${FOREIGN_KEY_VIOLATION}:leads_product_fkey`]: () =>
        inUse("Leads of this client reference the product; it stays enabled"),
    },
  );
  return c.body(null, 204);
};
