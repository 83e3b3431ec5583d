/** Lead service: staff's view of leads (list, search, export, manual entry, pipeline, assignment, notes). */
import { createModule } from "../routing.ts";
import * as handlers from "./leads.handlers.ts";
import * as routes from "./leads.routes.ts";

export const leadsRoutes = routes.routes;

export function leadsModule() {
  // The export is registered before /leads/{leadId}, which would otherwise take "export.csv" as an id.
  return createModule()
    .openapi(routes.listLeads, handlers.listLeads)
    .openapi(routes.exportLeads, handlers.exportLeads)
    .openapi(routes.listStatuses, handlers.listStatuses)
    .openapi(routes.createLead, handlers.createLead)
    .openapi(routes.getLead, handlers.getLead)
    .openapi(routes.updateLead, handlers.updateLead)
    .openapi(routes.changeStatus, handlers.changeStatus)
    .openapi(routes.assignLead, handlers.assignLead)
    .openapi(routes.listNotes, handlers.listNotes)
    .openapi(routes.addNote, handlers.addNote)
    .openapi(routes.getTimeline, handlers.getTimeline);
}
