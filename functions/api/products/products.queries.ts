/** SQL of the product service. Every function runs in the caller's RLS transaction. */
import type { Tx } from "../../_shared/db.ts";

export interface IndustryRow {
  id: string;
  name: string;
  created_at: string;
  updated_at: string;
}

export interface CategoryRow extends IndustryRow {
  industry_id: string;
}

export interface ProductRow extends IndustryRow {
  category_id: string;
}

export interface ClientProductRow {
  client_id: string;
  product_id: string;
  name: string;
  category_id: string;
  category_name: string;
  industry_id: string;
  industry_name: string;
  enabled_at: string;
}

/** A keyset position in a list ordered by (name, id). */
export type NamePosition = [name: string, id: string];

const INDUSTRY = "id, name, created_at, updated_at";
const CATEGORY = "id, industry_id, name, created_at, updated_at";
const PRODUCT = "id, category_id, name, created_at, updated_at";

/** One row of the catalog tree: a product, or an empty category or industry (null columns below it). */
export interface CatalogRow {
  industry_id: string;
  industry_name: string;
  industry_created_at: string;
  industry_updated_at: string;
  category_id: string | null;
  category_name: string | null;
  category_created_at: string | null;
  category_updated_at: string | null;
  product_id: string | null;
  product_name: string | null;
  product_created_at: string | null;
  product_updated_at: string | null;
}

/** The whole catalog in one statement (one snapshot), in display order. */
export function catalogRows(tx: Tx) {
  return tx<CatalogRow[]>`
    select i.id as industry_id, i.name as industry_name,
           i.created_at as industry_created_at, i.updated_at as industry_updated_at,
           c.id as category_id, c.name as category_name,
           c.created_at as category_created_at, c.updated_at as category_updated_at,
           p.id as product_id, p.name as product_name,
           p.created_at as product_created_at, p.updated_at as product_updated_at
    from public.industries i
    left join public.categories c on c.industry_id = i.id
    left join public.products p on p.category_id = c.id
    order by i.name, i.id, c.name, c.id, p.name, p.id`;
}

function after(tx: Tx, position: NamePosition | undefined) {
  return position ? tx`(name, id) > (${position[0]}, ${position[1]}::uuid)` : tx`true`;
}

export function listIndustries(tx: Tx, page: { limit: number; after?: NamePosition }) {
  return tx<IndustryRow[]>`
    select ${tx.unsafe(INDUSTRY)} from public.industries
    where ${after(tx, page.after)}
    order by name, id
    limit ${page.limit + 1}`;
}

export async function findIndustry(tx: Tx, id: string): Promise<IndustryRow | undefined> {
  const [row] = await tx<IndustryRow[]>`select ${
    tx.unsafe(INDUSTRY)
  } from public.industries where id = ${id}`;
  return row;
}

export async function insertIndustry(tx: Tx, name: string): Promise<IndustryRow> {
  const [row] = await tx<IndustryRow[]>`
    insert into public.industries (name) values (${name}) returning ${tx.unsafe(INDUSTRY)}`;
  return row;
}

export async function updateIndustry(tx: Tx, id: string, name: string): Promise<IndustryRow | undefined> {
  const [row] = await tx<IndustryRow[]>`
    update public.industries set name = ${name} where id = ${id} returning ${tx.unsafe(INDUSTRY)}`;
  return row;
}

export async function deleteIndustry(tx: Tx, id: string): Promise<boolean> {
  return (await tx`delete from public.industries where id = ${id} returning id`).length > 0;
}

export function listCategories(
  tx: Tx,
  industryId: string,
  page: { limit: number; after?: NamePosition },
) {
  return tx<CategoryRow[]>`
    select ${tx.unsafe(CATEGORY)} from public.categories
    where industry_id = ${industryId} and ${after(tx, page.after)}
    order by name, id
    limit ${page.limit + 1}`;
}

export async function findCategory(tx: Tx, id: string): Promise<CategoryRow | undefined> {
  const [row] = await tx<CategoryRow[]>`select ${
    tx.unsafe(CATEGORY)
  } from public.categories where id = ${id}`;
  return row;
}

export async function insertCategory(tx: Tx, industryId: string, name: string): Promise<CategoryRow> {
  const [row] = await tx<CategoryRow[]>`
    insert into public.categories (industry_id, name) values (${industryId}, ${name})
    returning ${tx.unsafe(CATEGORY)}`;
  return row;
}

export async function updateCategory(
  tx: Tx,
  id: string,
  changes: { name?: string; industry_id?: string },
): Promise<CategoryRow | undefined> {
  const [row] = await tx<CategoryRow[]>`
    update public.categories set
      name = coalesce(${changes.name ?? null}, name),
      industry_id = coalesce(${changes.industry_id ?? null}::uuid, industry_id)
    where id = ${id}
    returning ${tx.unsafe(CATEGORY)}`;
  return row;
}

export async function deleteCategory(tx: Tx, id: string): Promise<boolean> {
  return (await tx`delete from public.categories where id = ${id} returning id`).length > 0;
}

export function listProducts(tx: Tx, categoryId: string, page: { limit: number; after?: NamePosition }) {
  return tx<ProductRow[]>`
    select ${tx.unsafe(PRODUCT)} from public.products
    where category_id = ${categoryId} and ${after(tx, page.after)}
    order by name, id
    limit ${page.limit + 1}`;
}

export async function findProduct(tx: Tx, id: string): Promise<ProductRow | undefined> {
  const [row] = await tx<ProductRow[]>`select ${tx.unsafe(PRODUCT)} from public.products where id = ${id}`;
  return row;
}

export async function insertProduct(tx: Tx, categoryId: string, name: string): Promise<ProductRow> {
  const [row] = await tx<ProductRow[]>`
    insert into public.products (category_id, name) values (${categoryId}, ${name})
    returning ${tx.unsafe(PRODUCT)}`;
  return row;
}

export async function updateProduct(
  tx: Tx,
  id: string,
  changes: { name?: string; category_id?: string },
): Promise<ProductRow | undefined> {
  const [row] = await tx<ProductRow[]>`
    update public.products set
      name = coalesce(${changes.name ?? null}, name),
      category_id = coalesce(${changes.category_id ?? null}::uuid, category_id)
    where id = ${id}
    returning ${tx.unsafe(PRODUCT)}`;
  return row;
}

export async function deleteProduct(tx: Tx, id: string): Promise<boolean> {
  return (await tx`delete from public.products where id = ${id} returning id`).length > 0;
}

/** A position in a client's products, ordered by industry, category and product name. */
export type ClientProductPosition = [industry: string, category: string, product: string, id: string];

const CLIENT_PRODUCT = `
  select cp.client_id, p.id as product_id, p.name, c.id as category_id, c.name as category_name,
         i.id as industry_id, i.name as industry_name, cp.enabled_at
  from public.client_products cp
  join public.products p on p.id = cp.product_id
  join public.categories c on c.id = p.category_id
  join public.industries i on i.id = c.industry_id`;

export function listClientProducts(
  tx: Tx,
  clientId: string,
  page: { limit: number; after?: ClientProductPosition },
) {
  const position = page.after
    ? tx`(i.name, c.name, p.name, p.id) > (${page.after[0]}, ${page.after[1]}, ${page.after[2]},
                                          ${page.after[3]}::uuid)`
    : tx`true`;
  return tx<ClientProductRow[]>`
    ${tx.unsafe(CLIENT_PRODUCT)}
    where cp.client_id = ${clientId} and ${position}
    order by i.name, c.name, p.name, p.id
    limit ${page.limit + 1}`;
}

export async function findClientProduct(
  tx: Tx,
  clientId: string,
  productId: string,
): Promise<ClientProductRow | undefined> {
  const [row] = await tx<ClientProductRow[]>`
    ${tx.unsafe(CLIENT_PRODUCT)}
    where cp.client_id = ${clientId} and cp.product_id = ${productId}`;
  return row;
}

/** Enables a product for a client; enabling it again keeps the first enabled_at. */
export async function enableClientProduct(tx: Tx, clientId: string, productId: string): Promise<void> {
  await tx`
    insert into public.client_products (client_id, product_id) values (${clientId}, ${productId})
    on conflict (client_id, product_id) do nothing`;
}

export async function disableClientProduct(tx: Tx, clientId: string, productId: string): Promise<boolean> {
  const rows = await tx`
    delete from public.client_products where client_id = ${clientId} and product_id = ${productId}
    returning product_id`;
  return rows.length > 0;
}

/** True when the client is one the caller can see (a member of it, or a platform administrator). */
export async function clientVisible(tx: Tx, clientId: string): Promise<boolean> {
  const [row] = await tx<{ visible: boolean }[]>`
    select ${clientId} = any (app.my_client_ids()) or app.is_platform_admin() as visible`;
  return row.visible;
}
