/**
 * File metadata rows, and the reference rule that decides when a blob may go.
 *
 * Blob lifetime: a blob (named by its sha256) is needed while any live file
 * row has that hash, or any non-terminal job names a file (deleted or not)
 * with that hash. File rows are soft-deleted so such jobs still resolve them.
 * Blob commits and blob removals for one hash serialize on a transaction-level
 * advisory lock, so an upload of the same bytes cannot lose its blob to a
 * concurrent delete.
 */
import { and, asc, desc, eq, isNotNull, isNull, notExists, notInArray, or, sql } from "drizzle-orm";
import { alias } from "drizzle-orm/pg-core";
import type { Db } from "./database.ts";
import { StoreError } from "./errors.ts";
import { newId } from "./ids.ts";
import { TERMINAL_STATUSES } from "./job_status.ts";
import { afterCondition, clampLimit, type Page, type PageRequest, toPage } from "./pagination.ts";
import { FILE_PURPOSES, FILE_STATUSES, files, fineTuningJobs } from "./schema.ts";

export type FilePurpose = typeof FILE_PURPOSES[number];
export type FileStatus = typeof FILE_STATUSES[number];

export interface FileRecord {
  id: string;
  filename: string;
  purpose: FilePurpose;
  bytes: number;
  sha256: string;
  status: FileStatus;
  statusDetails: string | null;
  createdAt: Date;
  deletedAt: Date | null;
}

export interface NewFile {
  filename: string;
  purpose: FilePurpose;
  bytes: number;
  sha256: string;
  status?: FileStatus;
  statusDetails?: string | null;
}

export interface FileListRequest extends PageRequest {
  purpose?: FilePurpose;
}

/** Namespace of the blob advisory locks (the second key is the hash's hashtext). */
const BLOB_LOCK_NS = 0x5ca1b10b;

const columns = {
  id: files.id,
  filename: files.filename,
  purpose: files.purpose,
  bytes: files.bytes,
  sha256: files.sha256,
  status: files.status,
  statusDetails: files.statusDetails,
  createdAt: files.createdAt,
  deletedAt: files.deletedAt,
};

async function lockBlob(tx: Db, sha256: string): Promise<void> {
  await tx.execute(sql`select pg_advisory_xact_lock(${BLOB_LOCK_NS}, hashtext(${sha256}))`);
}

async function isReferenced(tx: Db, sha256: string): Promise<boolean> {
  const [live] = await tx.select({ id: files.id }).from(files)
    .where(and(eq(files.sha256, sha256), isNull(files.deletedAt))).limit(1);
  if (live) return true;
  const [job] = await tx.select({ id: fineTuningJobs.id }).from(fineTuningJobs)
    .innerJoin(files, or(eq(files.id, fineTuningJobs.trainingFile), eq(files.id, fineTuningJobs.validationFile)))
    .where(and(eq(files.sha256, sha256), notInArray(fineTuningJobs.status, [...TERMINAL_STATUSES]))).limit(1);
  return job !== undefined;
}

export class FileQueries {
  constructor(private readonly db: Db) {}

  /**
   * Inserts the row. `commitBlob` (e.g. the rename of the staged upload into
   * place) runs first, inside the transaction and under the blob's lock.
   */
  async create(input: NewFile, commitBlob?: () => Promise<void>): Promise<FileRecord> {
    return await this.db.transaction(async (tx) => {
      await lockBlob(tx, input.sha256);
      if (commitBlob) await commitBlob();
      const [row] = await tx.insert(files).values({
        id: newId("file"),
        filename: input.filename,
        purpose: input.purpose,
        bytes: input.bytes,
        sha256: input.sha256,
        status: input.status ?? "processed",
        statusDetails: input.statusDetails ?? null,
      }).returning(columns);
      return row;
    });
  }

  /** Deleted files are not found unless `includeDeleted` (job runners reading a training file). */
  async get(id: string, opts: { includeDeleted?: boolean } = {}): Promise<FileRecord> {
    const [row] = await this.db.select(columns).from(files)
      .where(and(eq(files.id, id), opts.includeDeleted ? undefined : isNull(files.deletedAt))).limit(1);
    if (!row) throw new StoreError("not_found", `No such File object: ${id}`, "id");
    return row;
  }

  async list(req: FileListRequest): Promise<Page<FileRecord>> {
    const limit = clampLimit(req.limit);
    const order = req.order ?? "desc";
    // The cursor may name a file deleted since the previous page: still a valid position.
    const after = await afterCondition(this.db, files, req);
    const rows = await this.db.select(columns).from(files)
      .where(and(isNull(files.deletedAt), req.purpose ? eq(files.purpose, req.purpose) : undefined, after))
      .orderBy(order === "desc" ? desc(files.seq) : asc(files.seq))
      .limit(limit + 1);
    return toPage(rows, limit);
  }

  /** Soft delete. Returns the hash so the caller can try to release the blob. */
  async delete(id: string): Promise<{ id: string; sha256: string }> {
    const [row] = await this.db.update(files).set({ deletedAt: sql`now()` })
      .where(and(eq(files.id, id), isNull(files.deletedAt)))
      .returning({ id: files.id, sha256: files.sha256 });
    if (!row) throw new StoreError("not_found", `No such File object: ${id}`, "id");
    return row;
  }

  /**
   * Runs `removeBlob` if nothing references the hash any more (under the
   * blob's lock). Returns whether it ran.
   */
  async releaseBlobIfUnreferenced(sha256: string, removeBlob: () => Promise<void>): Promise<boolean> {
    return await this.db.transaction(async (tx) => {
      await lockBlob(tx, sha256);
      if (await isReferenced(tx, sha256)) return false;
      // Removing inside the transaction keeps it under the lock; if the commit
      // then failed, nothing in the database changed except the marker below.
      await removeBlob();
      await tx.update(files).set({ blobReleasedAt: sql`now()` })
        .where(and(eq(files.sha256, sha256), isNotNull(files.deletedAt), isNull(files.blobReleasedAt)));
      return true;
    });
  }

  /**
   * Hashes of deleted files whose blob is not yet released and that nothing
   * references any more: what a sweep (e.g. after a job finishes) releases.
   */
  async releasableBlobs(limit = 100): Promise<string[]> {
    const live = alias(files, "live");
    const ref = alias(files, "ref");
    const rows = await this.db.selectDistinct({ sha256: files.sha256 }).from(files).where(and(
      isNotNull(files.deletedAt),
      isNull(files.blobReleasedAt),
      notExists(
        this.db.select({ one: sql`1` }).from(live).where(and(eq(live.sha256, files.sha256), isNull(live.deletedAt))),
      ),
      notExists(
        this.db.select({ one: sql`1` }).from(fineTuningJobs)
          .innerJoin(ref, or(eq(ref.id, fineTuningJobs.trainingFile), eq(ref.id, fineTuningJobs.validationFile)))
          .where(and(eq(ref.sha256, files.sha256), notInArray(fineTuningJobs.status, [...TERMINAL_STATUSES]))),
      ),
    )).limit(clampLimit(limit));
    return rows.map((r) => r.sha256);
  }
}
