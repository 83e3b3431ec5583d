/** SQL of the hierarchy service. Runs in the caller's RLS transaction, so invisible members drop out. */
import type { Tx } from "../../_shared/db.ts";
import { MEMBER_SELECT, type MemberRow } from "../members/members.queries.ts";

export function relatives(
  tx: Tx,
  membershipId: string,
  direction: "ancestors" | "descendants",
): Promise<(MemberRow & { depth: number })[]> {
  const source = direction === "ancestors"
    ? tx`app.hierarchy_ancestors(${membershipId})`
    : tx`app.hierarchy_descendants(${membershipId})`;
  return tx<(MemberRow & { depth: number })[]>`
    select member.*, h.depth
    from ${source} h
    cross join lateral (${MEMBER_SELECT(tx)} where m.id = h.membership_id) member
    order by h.depth, member.id`;
}
