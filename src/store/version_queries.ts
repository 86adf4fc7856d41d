/**
 * Model versions: the immutable record of a trained delta (a migration
 * trigger rejects UPDATE). Looked up by id or by name (`ft:<base>:<suffix>:<job-id>`).
 */
import { and, asc, count, desc, eq, getTableColumns, or } from "drizzle-orm";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { newId } from "./ids.ts";
import { afterCondition, clampLimit, type Page, type PageRequest, toPage } from "./pagination.ts";
import { isTerminal } from "./job_status.ts";
import { FOREIGN_KEY_VIOLATION, sqlState, UNIQUE_VIOLATION } from "./pg_errors.ts";
import { DELTA_FORMATS, fineTuningJobs, type JsonObject, modelAliases, modelVersions as versions } from "./schema.ts";

export type DeltaFormat = typeof DELTA_FORMATS[number];
export type VersionRecord = Omit<typeof versions.$inferSelect, "seq">;

export interface NewVersion {
  name: string;
  baseModel: string;
  jobId?: string | null;
  deltaFormat: DeltaFormat;
  artifactPath: string;
  contentHash: string;
  sizeBytes: number;
  metadata?: JsonObject;
}

export interface VersionListRequest extends PageRequest {
  baseModel?: string;
  jobId?: string;
}

const { seq: _seq, ...columns } = getTableColumns(versions);

export class VersionQueries {
  constructor(private readonly db: Db) {}

  async create(input: NewVersion): Promise<VersionRecord> {
    try {
      const [row] = await this.db.insert(versions).values({
        id: newId("ftver"),
        name: input.name,
        baseModel: input.baseModel,
        jobId: input.jobId ?? null,
        deltaFormat: input.deltaFormat,
        artifactPath: input.artifactPath,
        contentHash: input.contentHash,
        sizeBytes: input.sizeBytes,
        metadata: input.metadata ?? {},
      }).returning(columns);
      return row;
    } catch (e) {
      const state = sqlState(e);
      if (state === UNIQUE_VIOLATION) {
        throw new StoreError("conflict", `Model version ${input.name} already exists`, "name");
      }
      if (state === FOREIGN_KEY_VIOLATION) {
        throw new StoreError("not_found", `No such fine-tuning job: ${input.jobId}`, "job_id");
      }
      throw e;
    }
  }

  /** By id (`ftver-…`) or name (`ft:…`). */
  async get(idOrName: string): Promise<VersionRecord> {
    const row = await this.find(idOrName);
    if (!row) throw new StoreError("not_found", `No such model version: ${idOrName}`, "model");
    return row;
  }

  async find(idOrName: string): Promise<VersionRecord | null> {
    const [row] = await this.db.select(columns).from(versions)
      .where(or(eq(versions.id, idOrName), eq(versions.name, idOrName))).limit(1);
    return row ?? null;
  }

  /**
   * Deletes a version (by id or name) and returns its row, refusing with
   * `conflict` while an alias points at it or its job has not ended (the
   * job may still be producing it, or its checkpoints). The row is locked
   * first, so an alias set concurrently either sees it gone (its foreign key
   * fails) or wins and makes this refuse.
   */
  async delete(idOrName: string): Promise<VersionRecord> {
    return await this.db.transaction(async (tx) => {
      const [row] = await tx.select(columns).from(versions)
        .where(or(eq(versions.id, idOrName), eq(versions.name, idOrName))).limit(1).for("update");
      if (!row) throw new StoreError("not_found", `No such model version: ${idOrName}`, "model");
      const [alias] = await tx.select({ name: modelAliases.name }).from(modelAliases)
        .where(eq(modelAliases.targetVersionId, row.id)).limit(1);
      if (alias) {
        throw new StoreError(
          "conflict",
          `Model ${row.name} cannot be deleted: alias '${alias.name}' points at it (point the alias elsewhere first)`,
          "model",
        );
      }
      if (row.jobId !== null) {
        const [job] = await tx.select({ status: fineTuningJobs.status }).from(fineTuningJobs)
          .where(eq(fineTuningJobs.id, row.jobId)).limit(1);
        if (job && !isTerminal(job.status)) {
          throw new StoreError(
            "conflict",
            `Model ${row.name} cannot be deleted: fine-tuning job ${row.jobId} is still ${job.status} (cancel it first)`,
            "model",
          );
        }
      }
      await tx.delete(versions).where(eq(versions.id, row.id));
      return row;
    });
  }

  /** How many versions store this content (one artifact serves them all). */
  async countByHash(contentHash: string): Promise<number> {
    const [row] = await this.db.select({ n: count() }).from(versions).where(eq(versions.contentHash, contentHash));
    return row?.n ?? 0;
  }

  async list(req: VersionListRequest): Promise<Page<VersionRecord>> {
    const limit = clampLimit(req.limit);
    const after = await afterCondition(this.db, versions, req);
    const rows = await this.db.select(columns).from(versions).where(and(
      req.baseModel !== undefined ? eq(versions.baseModel, req.baseModel) : undefined,
      req.jobId !== undefined ? eq(versions.jobId, req.jobId) : undefined,
      after,
    )).orderBy((req.order ?? "desc") === "desc" ? desc(versions.seq) : asc(versions.seq)).limit(limit + 1);
    return toPage(rows, limit);
  }
}
