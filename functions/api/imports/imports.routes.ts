import { z } from "@hono/zod-openapi";
import { clientIdSchema } from "../clients/clients.routes.ts";
import { apiRoute, jsonBody, jsonResponse, problem } from "../routing.ts";

export const importJobSchema = z.object({
  job_id: z.number().int().openapi({
    description: "The sheets.import job; follow it at GET /clients/{clientId}/jobs/{jobId}",
  }),
  status: z.string().openapi({ example: "queued" }),
}).openapi("ImportJob");

export const importGoogleSheets = apiRoute({
  method: "post",
  path: "/clients/{clientId}/imports/google-sheets",
  tags: ["Imports"],
  summary: "Import the rows of the client's Google Sheet as leads (in the background)",
  description:
    "Reads the sheet of the client's Google Sheets integration from `from_row` (default 2, the first " +
    "row under the header) and stores each row as a lead with source google_sheets. Every row is imported " +
    "once (its external_ref is `<spreadsheet id>:<sheet>:<row>`), so importing again adds only new rows. " +
    "Headers map to lead fields through the integration's columns; other columns go into custom. The job's " +
    "result counts created, duplicate and existing leads and lists each invalid row with its errors.",
  permission: "integrations.manage",
  request: {
    params: z.object({ clientId: clientIdSchema }),
    body: jsonBody(
      z.strictObject({
        from_row: z.number().int().min(2).max(10_000_000).optional().openapi({
          description: "First sheet row to import (row 1 is the header)",
        }),
      }),
      "Where to start",
    ),
  },
  responses: {
    202: jsonResponse(importJobSchema, "The import job was queued"),
    409: problem("The client has no enabled Google Sheets integration"),
  },
});

export const routes = [importGoogleSheets];
