/**
 * Every API route and the permission catalog derived from them. The migrate task writes this catalog to
 * public.permissions, so the database knows exactly the permissions the code checks.
 */
import { clientRoutes } from "./clients/index.ts";
import { hierarchyRoutes } from "./hierarchy/index.ts";
import { memberRoutes } from "./members/index.ts";
import { roleRoutes } from "./roles/index.ts";
import { permissionCatalog } from "./routing.ts";

export const apiRoutes = [...clientRoutes, ...memberRoutes, ...hierarchyRoutes, ...roleRoutes];

/** Permission codes the routes require, with what they allow. */
export const PERMISSIONS: Record<string, string> = permissionCatalog(
  apiRoutes as Array<Record<string, unknown>>,
);
