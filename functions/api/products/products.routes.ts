import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, pageOf, pageQuery, problem, timestamp } from "../routing.ts";

const nameSchema = z.string().trim().min(1).max(200).openapi({
  description: "Unique under its parent, ignoring case",
});

export const industrySchema = z.object({
  id: z.uuid(),
  name: z.string(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Industry");

export const categorySchema = z.object({
  id: z.uuid(),
  industry_id: z.uuid(),
  name: z.string(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Category");

export const productSchema = z.object({
  id: z.uuid(),
  category_id: z.uuid(),
  name: z.string(),
  created_at: timestamp,
  updated_at: timestamp,
}).openapi("Product");

export const catalogSchema = z.object({
  data: z.array(z.object({
    industry: industrySchema,
    categories: z.array(z.object({ category: categorySchema, products: z.array(productSchema) })),
  })),
}).openapi("Catalog");

export const clientProductSchema = z.object({
  client_id: clientIdSchema,
  product_id: z.uuid(),
  name: z.string().openapi({ description: "The product's name" }),
  category_id: z.uuid(),
  category_name: z.string(),
  industry_id: z.uuid(),
  industry_name: z.string(),
  enabled_at: timestamp,
}).openapi("ClientProduct");

const adminOnly = problem("Only platform administrators manage the catalog");
const nameTaken = problem("The parent already has an entry with this name (code name_taken)");
const inUse = problem("Still referenced (code in_use)");

const industryParams = z.object({ industryId: z.uuid() });
const categoryParams = z.object({ categoryId: z.uuid() });
const productParams = z.object({ productId: z.uuid() });
const clientParams = z.object({ clientId: clientIdSchema });
const clientProductParams = z.object({ clientId: clientIdSchema, productId: z.uuid() });

const atLeastOne = (body: object) => Object.keys(body).length > 0;

// -- The whole catalog ----------------------------------------------------------------------------------

export const getCatalog = apiRoute({
  method: "get",
  path: "/catalog",
  tags: ["Products"],
  summary: "Read the whole product catalog as a tree: industries, their categories, their products",
  responses: { 200: jsonResponse(catalogSchema, "Every level ordered by name") },
});

// -- Industries -----------------------------------------------------------------------------------------

export const listIndustries = apiRoute({
  method: "get",
  path: "/industries",
  tags: ["Products"],
  summary: "List industries",
  request: { query: pageQuery },
  responses: { 200: jsonResponse(pageOf(industrySchema), "A page of industries ordered by name") },
});

export const getIndustry = apiRoute({
  method: "get",
  path: "/industries/{industryId}",
  tags: ["Products"],
  summary: "Read an industry",
  request: { params: industryParams },
  responses: { 200: jsonResponse(industrySchema, "The industry") },
});

export const createIndustry = apiRoute({
  method: "post",
  path: "/industries",
  tags: ["Products"],
  summary: "Create an industry (platform administrators)",
  request: { body: jsonBody(z.strictObject({ name: nameSchema }), "The industry") },
  responses: { 201: jsonResponse(industrySchema, "Created"), 403: adminOnly, 409: nameTaken },
});

export const updateIndustry = apiRoute({
  method: "patch",
  path: "/industries/{industryId}",
  tags: ["Products"],
  summary: "Rename an industry (platform administrators)",
  request: {
    params: industryParams,
    body: jsonBody(z.strictObject({ name: nameSchema }), "The new name"),
  },
  responses: { 200: jsonResponse(industrySchema, "The renamed industry"), 403: adminOnly, 409: nameTaken },
});

export const deleteIndustry = apiRoute({
  method: "delete",
  path: "/industries/{industryId}",
  tags: ["Products"],
  summary: "Delete an industry without categories (platform administrators)",
  request: { params: industryParams },
  responses: { 204: { description: "Deleted" }, 403: adminOnly, 409: inUse },
});

// -- Categories -----------------------------------------------------------------------------------------

export const listCategories = apiRoute({
  method: "get",
  path: "/industries/{industryId}/categories",
  tags: ["Products"],
  summary: "List an industry's categories",
  request: { params: industryParams, query: pageQuery },
  responses: { 200: jsonResponse(pageOf(categorySchema), "A page of categories ordered by name") },
});

export const getCategory = apiRoute({
  method: "get",
  path: "/categories/{categoryId}",
  tags: ["Products"],
  summary: "Read a category",
  request: { params: categoryParams },
  responses: { 200: jsonResponse(categorySchema, "The category") },
});

export const createCategory = apiRoute({
  method: "post",
  path: "/industries/{industryId}/categories",
  tags: ["Products"],
  summary: "Create a category in an industry (platform administrators)",
  request: {
    params: industryParams,
    body: jsonBody(z.strictObject({ name: nameSchema }), "The category"),
  },
  responses: { 201: jsonResponse(categorySchema, "Created"), 403: adminOnly, 409: nameTaken },
});

export const updateCategory = apiRoute({
  method: "patch",
  path: "/categories/{categoryId}",
  tags: ["Products"],
  summary: "Rename a category or move it to another industry (platform administrators)",
  request: {
    params: categoryParams,
    body: jsonBody(
      z.strictObject({ name: nameSchema.optional(), industry_id: z.uuid().optional() })
        .refine(atLeastOne, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(categorySchema, "The updated category"), 403: adminOnly, 409: nameTaken },
});

export const deleteCategory = apiRoute({
  method: "delete",
  path: "/categories/{categoryId}",
  tags: ["Products"],
  summary: "Delete a category without products (platform administrators)",
  request: { params: categoryParams },
  responses: { 204: { description: "Deleted" }, 403: adminOnly, 409: inUse },
});

// -- Products -------------------------------------------------------------------------------------------

export const listProducts = apiRoute({
  method: "get",
  path: "/categories/{categoryId}/products",
  tags: ["Products"],
  summary: "List a category's products",
  request: { params: categoryParams, query: pageQuery },
  responses: { 200: jsonResponse(pageOf(productSchema), "A page of products ordered by name") },
});

export const getProduct = apiRoute({
  method: "get",
  path: "/products/{productId}",
  tags: ["Products"],
  summary: "Read a product",
  request: { params: productParams },
  responses: { 200: jsonResponse(productSchema, "The product") },
});

export const createProduct = apiRoute({
  method: "post",
  path: "/categories/{categoryId}/products",
  tags: ["Products"],
  summary: "Create a product in a category (platform administrators)",
  request: {
    params: categoryParams,
    body: jsonBody(z.strictObject({ name: nameSchema }), "The product"),
  },
  responses: { 201: jsonResponse(productSchema, "Created"), 403: adminOnly, 409: nameTaken },
});

export const updateProduct = apiRoute({
  method: "patch",
  path: "/products/{productId}",
  tags: ["Products"],
  summary: "Rename a product or move it to another category (platform administrators)",
  request: {
    params: productParams,
    body: jsonBody(
      z.strictObject({ name: nameSchema.optional(), category_id: z.uuid().optional() })
        .refine(atLeastOne, "Send at least one field"),
      "Fields to change",
    ),
  },
  responses: { 200: jsonResponse(productSchema, "The updated product"), 403: adminOnly, 409: nameTaken },
});

export const deleteProduct = apiRoute({
  method: "delete",
  path: "/products/{productId}",
  tags: ["Products"],
  summary: "Delete a product no client has enabled (platform administrators)",
  request: { params: productParams },
  responses: { 204: { description: "Deleted" }, 403: adminOnly, 409: inUse },
});

// -- A client's products --------------------------------------------------------------------------------

export const listClientProducts = apiRoute({
  method: "get",
  path: "/clients/{clientId}/products",
  tags: ["Products"],
  summary: "List the products a client sells (members of the client)",
  request: { params: clientParams, query: pageQuery },
  responses: {
    200: jsonResponse(
      pageOf(clientProductSchema),
      "A page of enabled products ordered by industry, category and product name",
    ),
  },
});

export const enableClientProduct = apiRoute({
  method: "put",
  path: "/clients/{clientId}/products/{productId}",
  tags: ["Products"],
  summary: "Enable a catalog product for a client (idempotent)",
  permission: "products.manage",
  request: { params: clientProductParams },
  responses: { 200: jsonResponse(clientProductSchema, "The product is enabled (now or already)") },
});

export const disableClientProduct = apiRoute({
  method: "delete",
  path: "/clients/{clientId}/products/{productId}",
  tags: ["Products"],
  summary: "Disable a product for a client; refused while the client's leads reference it",
  permission: "products.manage",
  request: { params: clientProductParams },
  responses: { 204: { description: "Disabled" }, 409: inUse },
});

export const routes = [
  getCatalog,
  listIndustries,
  getIndustry,
  createIndustry,
  updateIndustry,
  deleteIndustry,
  listCategories,
  getCategory,
  createCategory,
  updateCategory,
  deleteCategory,
  listProducts,
  getProduct,
  createProduct,
  updateProduct,
  deleteProduct,
  listClientProducts,
  enableClientProduct,
  disableClientProduct,
];
