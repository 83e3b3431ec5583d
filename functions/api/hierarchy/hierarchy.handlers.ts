import type { RouteHandler } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import type { AppEnv } from "../../_shared/http.ts";
import { findMember } from "../members/members.queries.ts";
import * as queries from "./hierarchy.queries.ts";
import type * as routes from "./hierarchy.routes.ts";

function relatives(direction: "ancestors" | "descendants"): RouteHandler<typeof routes.listManagers, AppEnv> {
  return async (c) => {
    const { clientId, membershipId } = c.req.valid("param");
    const data = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
      if (!await findMember(tx, clientId, membershipId)) return undefined;
      return await queries.relatives(tx, membershipId, direction);
    });
    if (!data) throw new ApiError(404, "member_not_found", `Member "${membershipId}" was not found`);
    return c.json({ data }, 200);
  };
}

export const listManagers = relatives("ancestors");
export const listSubtree = relatives("descendants");
