/** Job checkpoints (OpenAI `fine_tuning.job.checkpoint`): one per (job, step). */
import { and, asc, desc, eq, getTableColumns } from "drizzle-orm";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { newId } from "./ids.ts";
import { afterCondition, clampLimit, type Page, type PageRequest, toPage } from "./pagination.ts";
import { FOREIGN_KEY_VIOLATION, sqlState, UNIQUE_VIOLATION } from "./pg_errors.ts";
import { fineTuningCheckpoints as checkpoints, type JsonObject } from "./schema.ts";

export type CheckpointRecord = Omit<typeof checkpoints.$inferSelect, "seq">;

export interface NewCheckpoint {
  step: number;
  metrics: JsonObject;
  artifactPath: string;
  /** `ft:<base>:<suffix>:<job-id>:ckpt-step-<step>` (the caller names it). */
  fineTunedModelCheckpoint: string;
}

const { seq: _seq, ...columns } = getTableColumns(checkpoints);

export class CheckpointQueries {
  constructor(private readonly db: Db) {}

  async add(jobId: string, input: NewCheckpoint): Promise<CheckpointRecord> {
    try {
      const [row] = await this.db.insert(checkpoints).values({ id: newId("ftckpt"), jobId, ...input }).returning(
        columns,
      );
      return row;
    } catch (e) {
      const state = sqlState(e);
      if (state === FOREIGN_KEY_VIOLATION) {
        throw new StoreError("not_found", `No such fine-tuning job: ${jobId}`, "fine_tuning_job_id");
      }
      if (state === UNIQUE_VIOLATION) {
        throw new StoreError("conflict", `Job ${jobId} already has a checkpoint at step ${input.step}`, "step");
      }
      throw e;
    }
  }

  async list(jobId: string, req: PageRequest): Promise<Page<CheckpointRecord>> {
    const limit = clampLimit(req.limit);
    const after = await afterCondition(this.db, checkpoints, req, eq(checkpoints.jobId, jobId));
    const rows = await this.db.select(columns).from(checkpoints).where(and(eq(checkpoints.jobId, jobId), after))
      .orderBy((req.order ?? "desc") === "desc" ? desc(checkpoints.seq) : asc(checkpoints.seq))
      .limit(limit + 1);
    return toPage(rows, limit);
  }

  /** The highest-step checkpoint: where a reclaimed job resumes. */
  async latest(jobId: string): Promise<CheckpointRecord | null> {
    const [row] = await this.db.select(columns).from(checkpoints).where(eq(checkpoints.jobId, jobId))
      .orderBy(desc(checkpoints.step)).limit(1);
    return row ?? null;
  }
}
