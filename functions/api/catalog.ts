/**
 * Every API route and the permission catalog derived from them. The migrate task writes this catalog to
 * public.permissions, so the database knows exactly the permissions the code checks.
 */
import { assignmentRoutes } from "./assignment/index.ts";
import { automationsRoutes } from "./automations/index.ts";
import { clientRoutes } from "./clients/index.ts";
import { hierarchyRoutes } from "./hierarchy/index.ts";
import { importsRoutes } from "./imports/index.ts";
import { integrationsRoutes } from "./integrations/index.ts";
import { jobsRoutes } from "./jobs/index.ts";
import { keysRoutes } from "./keys/index.ts";
import { leadsRoutes } from "./leads/index.ts";
import { memberRoutes } from "./members/index.ts";
import { notificationsRoutes } from "./notifications/index.ts";
import { productsRoutes } from "./products/index.ts";
import { roleRoutes } from "./roles/index.ts";
import { permissionCatalog } from "./routing.ts";
import { webhooksRoutes } from "./webhooks/index.ts";

export const apiRoutes = [
  ...clientRoutes,
  ...memberRoutes,
  ...hierarchyRoutes,
  ...roleRoutes,
  ...productsRoutes,
  ...leadsRoutes,
  ...assignmentRoutes,
  ...keysRoutes,
  ...integrationsRoutes,
  ...importsRoutes,
  ...jobsRoutes,
  ...automationsRoutes,
  ...notificationsRoutes,
  ...webhooksRoutes,
];

/** Permission codes the routes require, with what they allow. */
export const PERMISSIONS: Record<string, string> = permissionCatalog(
  apiRoutes as Array<Record<string, unknown>>,
);
