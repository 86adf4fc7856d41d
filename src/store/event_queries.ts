/**
 * Job events (OpenAI `fine_tuning.job.event`): append-only, listed newest
 * first by default with an `after` cursor. Order is the `seq` identity; one
 * job has one writer at a time (its lease holder), so a job's events commit in
 * sequence order.
 */
import { and, asc, desc, eq, getTableColumns } from "drizzle-orm";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { newId } from "./ids.ts";
import { afterCondition, clampLimit, type Page, type PageRequest, toPage } from "./pagination.ts";
import { FOREIGN_KEY_VIOLATION, sqlState } from "./pg_errors.ts";
import { EVENT_LEVELS, EVENT_TYPES, fineTuningEvents as events, type JsonObject } from "./schema.ts";

export type EventLevel = typeof EVENT_LEVELS[number];
export type EventType = typeof EVENT_TYPES[number];
export type EventRecord = Omit<typeof events.$inferSelect, "seq">;

export interface NewEvent {
  level: EventLevel;
  message: string;
  type?: EventType;
  data?: JsonObject | null;
}

const { seq: _seq, ...columns } = getTableColumns(events);

/** The insert of one event row (an `append`, or a step of a transaction that writes its own status change). */
export function insertEvent(db: Db, jobId: string, event: NewEvent) {
  return db.insert(events).values({
    id: newId("ftevent"),
    jobId,
    level: event.level,
    message: event.message,
    type: event.type ?? "message",
    data: event.data ?? null,
  });
}

export class EventQueries {
  constructor(private readonly db: Db) {}

  async append(jobId: string, input: NewEvent): Promise<EventRecord> {
    try {
      const [row] = await insertEvent(this.db, jobId, input).returning(columns);
      return row;
    } catch (e) {
      if (sqlState(e) === FOREIGN_KEY_VIOLATION) {
        throw new StoreError("not_found", `No such fine-tuning job: ${jobId}`, "fine_tuning_job_id");
      }
      throw e;
    }
  }

  async list(jobId: string, req: PageRequest): Promise<Page<EventRecord>> {
    const limit = clampLimit(req.limit);
    const after = await afterCondition(this.db, events, req, eq(events.jobId, jobId));
    const rows = await this.db.select(columns).from(events).where(and(eq(events.jobId, jobId), after))
      .orderBy((req.order ?? "desc") === "desc" ? desc(events.seq) : asc(events.seq))
      .limit(limit + 1);
    return toPage(rows, limit);
  }
}
