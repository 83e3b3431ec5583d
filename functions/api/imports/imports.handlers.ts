import type { RouteHandler } from "@hono/zod-openapi";
import { ApiError } from "../../_shared/errors.ts";
import type { AppEnv } from "../../_shared/http.ts";
import * as queries from "./imports.queries.ts";
import type * as routes from "./imports.routes.ts";

export const importGoogleSheets: RouteHandler<typeof routes.importGoogleSheets, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const { from_row: fromRow } = c.req.valid("json");
  const { sql, config } = c.get("deps");
  if (!await queries.sheetsConnected(sql, clientId)) {
    throw new ApiError(
      409,
      "integration_missing",
      "Connect Google Sheets first (PUT /clients/{clientId}/integrations/google-sheets)",
    );
  }
  const job = await queries.enqueueImport(sql, clientId, {
    from_row: fromRow ?? 2,
    requested_by: c.get("caller").userId,
  }, config.queue.max_attempts);
  return c.json({ job_id: job.id, status: job.status }, 202);
};
