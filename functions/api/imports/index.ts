/**
 * Imports service: brings leads in from a client's connected sources in the background; today the rows of
 * the client's Google Sheet (the `sheets.import` job, functions/worker/sheets_import.ts).
 */
import { createModule } from "../routing.ts";
import * as handlers from "./imports.handlers.ts";
import * as routes from "./imports.routes.ts";

export const importsRoutes = routes.routes;

export function importsModule() {
  return createModule().openapi(routes.importGoogleSheets, handlers.importGoogleSheets);
}
