/**
 * Cursor pagination shared by every list: rows are ordered by their `seq`
 * identity column, and `after` names the last row of the previous page by id.
 */
import { and, eq, gt, lt, type SQL } from "drizzle-orm";
import type { PgColumn, PgTable } from "drizzle-orm/pg-core";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";

export type Order = "asc" | "desc";

export interface PageRequest {
  /** Id of the last item of the previous page. */
  after?: string | null;
  limit: number;
  /** By creation; default newest first, as OpenAI lists are. */
  order?: Order;
}

export interface Page<T> {
  data: T[];
  hasMore: boolean;
}

export const MAX_PAGE_LIMIT = 10_000;

export function clampLimit(limit: number): number {
  return Math.max(1, Math.min(MAX_PAGE_LIMIT, Math.floor(limit)));
}

/**
 * The `seq` bound for the rows after the cursor. `scope` restricts the cursor
 * to the same list (an event id of another job is not a cursor here).
 */
export async function afterCondition(
  db: Db,
  table: PgTable & { id: PgColumn; seq: PgColumn },
  req: PageRequest,
  scope?: SQL,
): Promise<SQL | undefined> {
  if (req.after === undefined || req.after === null) return undefined;
  const [row] = await db.select({ seq: table.seq }).from(table).where(and(eq(table.id, req.after), scope)).limit(1);
  if (!row) throw new StoreError("invalid_cursor", `No such object for cursor 'after': ${req.after}`, "after");
  return (req.order ?? "desc") === "desc" ? lt(table.seq, row.seq) : gt(table.seq, row.seq);
}

/** Fetch `limit + 1` rows, then split off the probe row into `hasMore`. */
export function toPage<T>(rows: T[], limit: number): Page<T> {
  return { data: rows.slice(0, limit), hasMore: rows.length > limit };
}
