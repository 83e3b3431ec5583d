import { type RouteHandler, z } from "@hono/zod-openapi";
import { asUser } from "../../_shared/db.ts";
import { ApiError } from "../../_shared/errors.ts";
import { type AppEnv, decodeCursor, encodeCursor } from "../../_shared/http.ts";
import * as queries from "./clients.queries.ts";
import type * as routes from "./clients.routes.ts";

const notFound = (id: string) => new ApiError(404, "client_not_found", `Client "${id}" was not found`);

export const createClient: RouteHandler<typeof routes.createClient, AppEnv> = async (c) => {
  const body = c.req.valid("json");
  if (!c.get("caller").isPlatformAdmin) {
    throw new ApiError(403, "permission_denied", "Only platform administrators can create clients");
  }
  const client = await asUser(c.get("deps").sql, c.get("caller").claims, async (tx) => {
    const [{ taken }] = await tx`select exists (select 1 from public.clients where id = ${body.id}) as taken`;
    // Platform administrators see every client, so this check reveals nothing they could not read.
    if (taken) throw new ApiError(409, "client_id_taken", `Client id "${body.id}" is already taken`);
    return await queries.insertClient(tx, body);
  });
  return c.json(client, 201);
};

export const listClients: RouteHandler<typeof routes.listClients, AppEnv> = async (c) => {
  const { limit, cursor } = c.req.valid("query");
  const after = cursor ? decodeCursor(cursor, z.tuple([z.string()]))[0] : undefined;
  const rows = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.listClients(tx, { limit, after }),
  );
  const page = rows.slice(0, limit);
  return c.json({
    data: page,
    next_cursor: rows.length > limit ? encodeCursor([page[page.length - 1].id]) : null,
  }, 200);
};

export const getClient: RouteHandler<typeof routes.getClient, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const client = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.findClient(tx, clientId),
  );
  if (!client) throw notFound(clientId);
  return c.json(client, 200);
};

export const updateClient: RouteHandler<typeof routes.updateClient, AppEnv> = async (c) => {
  const { clientId } = c.req.valid("param");
  const changes = c.req.valid("json");
  const client = await asUser(
    c.get("deps").sql,
    c.get("caller").claims,
    (tx) => queries.updateClient(tx, clientId, changes),
  );
  if (!client) throw notFound(clientId);
  return c.json(client, 200);
};

function setStatus(status: "active" | "inactive"): RouteHandler<typeof routes.deactivateClient, AppEnv> {
  return async (c) => {
    const { clientId } = c.req.valid("param");
    const { sql } = c.get("deps");
    const { claims, isPlatformAdmin } = c.get("caller");
    if (!isPlatformAdmin) {
      // A client the caller cannot see is a 404, as everywhere; a visible one needs agency staff.
      if (!await asUser(sql, claims, (tx) => queries.findClient(tx, clientId))) throw notFound(clientId);
      throw new ApiError(
        403,
        "permission_denied",
        "Only platform administrators can change a client's status",
      );
    }
    const client = await asUser(sql, claims, (tx) => queries.updateClient(tx, clientId, { status }));
    if (!client) throw notFound(clientId);
    return c.json(client, 200);
  };
}

export const deactivateClient = setStatus("inactive");
export const activateClient = setStatus("active");
