/**
 * A full disk, told apart from other failures and reported as what it is:
 * `InsufficientStorageError` (HTTP 507, code `insufficient_storage`) naming
 * the area that could not be written — uploaded files, the database, job
 * checkpoints, model versions, serving directories, exports — and how much
 * space is left. Writers wrap their I/O with `onDiskFull(area, …)`; a full
 * disk nobody named still answers 507 ("the data directory"), never 500.
 *
 * `DiskSpace` reads the free space of the data directory's filesystem for
 * /metrics and /ready and says when it is low ("disk pressure").
 */
import { statfs } from "node:fs/promises";
import { ApiError } from "./errors.ts";

export type StorageArea =
  | "files"
  | "database"
  | "checkpoints"
  | "versions"
  | "serving directories"
  | "exports"
  | "hub downloads"
  | "data directory";

const WHAT: Record<StorageArea, string> = {
  files: "uploaded files",
  database: "the database",
  checkpoints: "job checkpoints",
  versions: "model versions",
  "serving directories": "compiled serving directories",
  exports: "version exports",
  "hub downloads": "hub downloads",
  "data directory": "the data directory",
};

/** ENOSPC / EDQUOT from the filesystem, or SQLSTATE 53100 (disk_full) from PostgreSQL or PGlite, anywhere in the cause chain. */
export function isDiskFull(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 8; e = e.cause, depth++) {
    const code = (e as Error & { code?: unknown }).code;
    if (code === "ENOSPC" || code === "EDQUOT" || code === "53100") return true;
    if (/No space left on device|Disk quota exceeded|\(os error 28\)/.test(e.message)) return true;
  }
  return false;
}

export class InsufficientStorageError extends ApiError {
  override name = "InsufficientStorageError";
  constructor(readonly area: StorageArea, options?: { cause?: unknown; detail?: string }) {
    const detail = options?.detail ?? (options?.cause instanceof Error ? options.cause.message.split("\n")[0] : "");
    super(
      507,
      `Insufficient storage: the disk holding ${WHAT[area]} is full${detail ? ` (${detail})` : ""}. ` +
        "Free space in the data directory and retry.",
      "server_error",
      null,
      "insufficient_storage",
      {},
      { cause: options?.cause },
    );
  }
}

/** Runs `write`, reporting a full disk as `InsufficientStorageError(area)` (an area named deeper wins). */
export async function onDiskFull<T>(area: StorageArea, write: () => Promise<T>): Promise<T> {
  try {
    return await write();
  } catch (e) {
    if (e instanceof InsufficientStorageError || !isDiskFull(e)) throw e;
    throw new InsufficientStorageError(area, { cause: e });
  }
}

export interface DiskUsage {
  path: string;
  freeBytes: number;
  totalBytes: number;
  /** Free space is under the low-water mark: writes may fail with 507 soon (serving goes on). */
  pressure: boolean;
}

export const DEFAULT_DISK_LOW_FREE_BYTES = 1024 ** 3;

/** The free space of one directory's filesystem. */
export class DiskSpace {
  constructor(readonly path: string, readonly lowFreeBytes = DEFAULT_DISK_LOW_FREE_BYTES) {}

  /** Null when the filesystem cannot be asked (e.g. the directory is gone). */
  async usage(): Promise<DiskUsage | null> {
    try {
      const s = await statfs(this.path);
      const freeBytes = Number(s.bavail) * Number(s.bsize);
      return {
        path: this.path,
        freeBytes,
        totalBytes: Number(s.blocks) * Number(s.bsize),
        pressure: freeBytes < this.lowFreeBytes,
      };
    } catch {
      return null;
    }
  }
}
