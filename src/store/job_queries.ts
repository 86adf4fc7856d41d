/**
 * Fine-tuning job rows: creation, compare-and-set status transitions, and the
 * lease protocol that lets several workers (or replicas) share one queue.
 *
 * Leases: `claimNext` atomically moves the oldest claimable job to `running`
 * under the caller's name for `leaseMs`; the holder renews with `heartbeat`.
 * A job whose lease expired (its worker crashed) is claimable again, so work
 * resumes from the last checkpoint elsewhere. Lease times use the database's
 * clock (`now()`), never the replicas'.
 */
import { and, asc, desc, eq, getTableColumns, inArray, lt, or, sql } from "drizzle-orm";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { newId } from "./ids.ts";
import { isTerminal, type JobStatus, predecessors } from "./job_status.ts";
import { afterCondition, clampLimit, type Page, type PageRequest, toPage } from "./pagination.ts";
import { FOREIGN_KEY_VIOLATION, sqlState } from "./pg_errors.ts";
import { insertEvent, type NewEvent } from "./event_queries.ts";
import { fineTuningJobs as jobs, type JobErrorJson, type JsonObject } from "./schema.ts";

export type JobRecord = Omit<typeof jobs.$inferSelect, "seq">;
export type JobError = JobErrorJson;

export interface NewJob {
  model: string;
  trainingFile: string;
  validationFile?: string | null;
  suffix?: string | null;
  seed: number;
  method: JsonObject;
  hyperparameters: JsonObject;
  metadata?: Record<string, string> | null;
  /** Default `validating_files`; `queued` when files were validated up front. */
  status?: "validating_files" | "queued";
}

/** Fields a transition may set alongside the status. */
export interface JobPatch {
  error?: JobError | null;
  fineTunedModel?: string | null;
  trainedTokens?: number | null;
  resultFiles?: string[];
  estimatedFinish?: Date | null;
}

export interface TransitionOptions {
  /** Only from this status (or one of these): a stricter compare-and-set. */
  from?: JobStatus | readonly JobStatus[];
  /** A worker's update: only while it still holds the lease. */
  leaseOwner?: string;
  patch?: JobPatch;
  /** The event announcing the change, written in the same transaction (both or neither: a full disk cannot split them). */
  event?: NewEvent;
}

export type HeartbeatResult =
  | { held: true; job: JobRecord }
  /** The lease is gone: the job was cancelled/paused, or reclaimed after expiry. Stop working on it. */
  | { held: false; status: JobStatus | null };

export interface HeartbeatProgress {
  trainedTokens?: number;
  estimatedFinish?: Date | null;
}

const { seq: _seq, ...columns } = getTableColumns(jobs);

const leaseUntil = (ms: number) => sql`now() + ${Math.max(1, Math.round(ms))} * interval '1 millisecond'`;

export class JobQueries {
  constructor(private readonly db: Db) {}

  /**
   * Inserts the job and, in the same transaction, its first event (`firstEvent`
   * of the new id): a job is never left without the event that announces it,
   * whatever fails in between (a full disk, a lost connection).
   */
  async create(input: NewJob, firstEvent?: (jobId: string) => NewEvent): Promise<JobRecord> {
    try {
      return await this.db.transaction(async (tx) => {
        const [row] = await tx.insert(jobs).values({
          id: newId("ftjob"),
          model: input.model,
          trainingFile: input.trainingFile,
          validationFile: input.validationFile ?? null,
          suffix: input.suffix ?? null,
          seed: input.seed,
          method: input.method,
          hyperparameters: input.hyperparameters,
          metadata: input.metadata ?? null,
          status: input.status ?? "validating_files",
        }).returning(columns);
        if (firstEvent) await insertEvent(tx, row.id, firstEvent(row.id));
        return row;
      });
    } catch (e) {
      if (sqlState(e) === FOREIGN_KEY_VIOLATION) {
        throw new StoreError("not_found", "The training or validation file does not exist", "training_file");
      }
      throw e;
    }
  }

  async get(id: string): Promise<JobRecord> {
    const [row] = await this.db.select(columns).from(jobs).where(eq(jobs.id, id)).limit(1);
    if (!row) throw new StoreError("not_found", `No such fine-tuning job: ${id}`, "fine_tuning_job_id");
    return row;
  }

  async list(req: PageRequest): Promise<Page<JobRecord>> {
    const limit = clampLimit(req.limit);
    const after = await afterCondition(this.db, jobs, req);
    const rows = await this.db.select(columns).from(jobs).where(after)
      .orderBy((req.order ?? "desc") === "desc" ? desc(jobs.seq) : asc(jobs.seq))
      .limit(limit + 1);
    return toPage(rows, limit);
  }

  /**
   * Compare-and-set status change: applies only if the job's current status
   * may be followed by `to` (and matches `from`, and the lease is `leaseOwner`'s
   * when given). `running` is reached only through `claimNext`.
   */
  async transition(id: string, to: JobStatus, opts: TransitionOptions = {}): Promise<JobRecord> {
    const allowed = to === "running"
      ? []
      : predecessors(to).filter((s) =>
        opts.from === undefined || (typeof opts.from === "string" ? opts.from === s : opts.from.includes(s))
      );
    if (opts.event && allowed.length > 0) {
      const event = opts.event;
      return await this.db.transaction(async (tx) => {
        const row = await new JobQueries(tx).transition(id, to, { ...opts, event: undefined });
        await insertEvent(tx, id, event);
        return row;
      });
    }
    const patch = opts.patch ?? {};
    const [row] = allowed.length === 0 ? [] : await this.db.update(jobs).set({
      status: to,
      updatedAt: sql`now()`,
      ...(isTerminal(to) ? { finishedAt: sql`now()` } : {}),
      // Every target but `running` (claim only) ends any lease.
      leaseOwner: null,
      leaseExpiresAt: null,
      ...(patch.error !== undefined ? { error: patch.error } : {}),
      ...(patch.fineTunedModel !== undefined ? { fineTunedModel: patch.fineTunedModel } : {}),
      ...(patch.trainedTokens !== undefined ? { trainedTokens: patch.trainedTokens } : {}),
      ...(patch.resultFiles !== undefined ? { resultFiles: patch.resultFiles } : {}),
      ...(patch.estimatedFinish !== undefined ? { estimatedFinish: patch.estimatedFinish } : {}),
    }).where(and(
      eq(jobs.id, id),
      inArray(jobs.status, allowed),
      opts.leaseOwner !== undefined ? eq(jobs.leaseOwner, opts.leaseOwner) : undefined,
    )).returning(columns);
    if (row) return row;
    // Lost the compare-and-set: say why.
    const current = await this.get(id);
    if (opts.leaseOwner !== undefined && current.leaseOwner !== opts.leaseOwner) {
      throw new StoreError("lease_lost", `Job ${id} is not leased to ${opts.leaseOwner} (status ${current.status})`);
    }
    throw new StoreError(
      "invalid_transition",
      `Fine-tuning job ${id} cannot go from '${current.status}' to '${to}'`,
      "fine_tuning_job_id",
    );
  }

  /**
   * Claims the oldest queued job (or running job whose lease expired) for
   * `owner`. `FOR UPDATE SKIP LOCKED` lets concurrent claimers each take a
   * different job without waiting on each other.
   */
  async claimNext(owner: string, leaseMs: number): Promise<JobRecord | null> {
    const next = this.db.select({ id: jobs.id }).from(jobs)
      .where(or(eq(jobs.status, "queued"), and(eq(jobs.status, "running"), lt(jobs.leaseExpiresAt, sql`now()`))))
      .orderBy(asc(jobs.seq)).limit(1)
      .for("update", { skipLocked: true });
    const [row] = await this.db.update(jobs).set({
      status: "running",
      leaseOwner: owner,
      leaseExpiresAt: leaseUntil(leaseMs),
      heartbeatAt: sql`now()`,
      startedAt: sql`coalesce(${jobs.startedAt}, now())`,
      attempts: sql`${jobs.attempts} + 1`,
      updatedAt: sql`now()`,
      // A scalar subquery is evaluated once (an IN (…) could be re-run per row).
    }).where(sql`${jobs.id} = (${next})`).returning(columns);
    return row ?? null;
  }

  /** Renews the lease (and records progress) while `owner` still holds it. */
  async heartbeat(
    id: string,
    owner: string,
    leaseMs: number,
    progress: HeartbeatProgress = {},
  ): Promise<HeartbeatResult> {
    const [row] = await this.db.update(jobs).set({
      leaseExpiresAt: leaseUntil(leaseMs),
      heartbeatAt: sql`now()`,
      updatedAt: sql`now()`,
      ...(progress.trainedTokens !== undefined ? { trainedTokens: progress.trainedTokens } : {}),
      ...(progress.estimatedFinish !== undefined ? { estimatedFinish: progress.estimatedFinish } : {}),
    }).where(and(eq(jobs.id, id), eq(jobs.status, "running"), eq(jobs.leaseOwner, owner))).returning(columns);
    if (row) return { held: true, job: row };
    const [current] = await this.db.select({ status: jobs.status }).from(jobs).where(eq(jobs.id, id)).limit(1);
    return { held: false, status: current?.status ?? null };
  }
}
