/** User service: global accounts and their memberships in clients. */
import { createModule } from "../routing.ts";
import * as handlers from "./members.handlers.ts";
import * as routes from "./members.routes.ts";

export const memberRoutes = routes.routes;

export function membersModule() {
  return createModule()
    .openapi(routes.listMembers, handlers.listMembers)
    .openapi(routes.addMember, handlers.addMember)
    .openapi(routes.updateMember, handlers.updateMember)
    .openapi(routes.removeMember, handlers.removeMember)
    .openapi(routes.getUser, handlers.getUser)
    .openapi(routes.disableUser, handlers.disableUser)
    .openapi(routes.enableUser, handlers.enableUser);
}
