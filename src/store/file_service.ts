/**
 * Uploaded files: metadata in the store, bytes in the blob store, and the
 * rules tying them together (what an upload must look like, when a blob may
 * be removed). Routes talk to this, never to the two stores directly.
 *
 * Upload-time checks (purpose `fine-tune`): the file must be non-empty UTF-8.
 * That costs nothing while streaming and fails early with a clear 400; the
 * JSONL structure (one chat example per line) is checked when a job starts,
 * where the errors can name line numbers.
 *
 * Deleting a file hides it at once; its blob stays while another file with
 * the same bytes or a non-terminal job still needs it, and `collectGarbage`
 * (run after jobs end) removes blobs that became unreferenced later.
 */
import { onDiskFull } from "../disk_space.ts";
import { ApiError } from "../errors.ts";
import { type BlobStore, BlobTooLargeError, type StagedBlob } from "./blob_store.ts";
import type { FileListRequest, FilePurpose, FileRecord } from "./file_queries.ts";
import type { Page } from "./pagination.ts";
import type { Store } from "./store.ts";

export type FileErrorCode =
  /** The content exceeds the upload limit. */
  | "file_too_large"
  /** The content fails the purpose's upload checks (empty, not UTF-8). */
  | "invalid_file"
  /** Metadata exists but the bytes are gone (a bug or a tampered data dir). */
  | "content_missing";

const FILE_ERROR_STATUS = { file_too_large: 413, invalid_file: 400, content_missing: 500 } as const;

/** The one error type of the files domain (the store's own failures stay `StoreError`). */
export class FileError extends ApiError {
  override name = "FileError";
  declare readonly code: FileErrorCode;
  constructor(code: FileErrorCode, message: string) {
    super(FILE_ERROR_STATUS[code], message, undefined, code === "content_missing" ? null : "file", code);
  }
}

/** An upload on disk, hashed and checked, not yet a file. */
export interface StagedUpload {
  readonly blob: StagedBlob;
  readonly utf8: boolean;
}

export const MAX_FILENAME_CHARS = 255;

/**
 * The client's filename as display text: control characters (NUL included,
 * which PostgreSQL text cannot hold) removed, length capped. Path-like names
 * are kept as typed; nothing ever uses this as a path.
 */
export function displayFilename(raw: string | null | undefined): string {
  // deno-lint-ignore no-control-regex
  const clean = Array.from((raw ?? "").replace(/[\u0000-\u001f\u007f]/g, "")).slice(0, MAX_FILENAME_CHARS).join("");
  return clean.trim() === "" ? "upload" : clean;
}

/** Streaming UTF-8 check: `push` every chunk, then `finish`. */
class Utf8Check {
  private readonly decoder = new TextDecoder("utf-8", { fatal: true });
  valid = true;

  push(chunk: Uint8Array): void {
    if (!this.valid) return;
    try {
      this.decoder.decode(chunk, { stream: true });
    } catch {
      this.valid = false;
    }
  }

  finish(): boolean {
    this.push(new Uint8Array(0));
    if (this.valid) {
      try {
        this.decoder.decode(); // a truncated trailing sequence fails here
      } catch {
        this.valid = false;
      }
    }
    return this.valid;
  }
}

export interface FileContent {
  file: FileRecord;
  stream: ReadableStream<Uint8Array>;
  size: number;
}

export class FileService {
  constructor(private readonly store: Store, private readonly blobs: BlobStore) {}

  /** Streams the bytes to disk; `FileError("file_too_large")` past `maxBytes`. */
  async stage(content: AsyncIterable<Uint8Array>, maxBytes: number): Promise<StagedUpload> {
    const utf8 = new Utf8Check();
    try {
      const blob = await onDiskFull(
        "files",
        () => this.blobs.stage(content, { maxBytes, inspect: (c) => utf8.push(c) }),
      );
      return { blob, utf8: utf8.finish() };
    } catch (e) {
      if (e instanceof BlobTooLargeError) {
        throw new FileError("file_too_large", `File is larger than the ${maxBytes}-byte upload limit`);
      }
      throw e;
    }
  }

  async discard(staged: StagedUpload): Promise<void> {
    await this.blobs.discard(staged.blob);
  }

  /** Checks the staged bytes for `purpose`, then commits blob and row together. Consumes `staged`. */
  async create(staged: StagedUpload, meta: { filename: string | null; purpose: FilePurpose }): Promise<FileRecord> {
    const { blob } = staged;
    try {
      if (meta.purpose === "fine-tune") {
        if (blob.bytes === 0) throw new FileError("invalid_file", "The file is empty");
        if (!staged.utf8) throw new FileError("invalid_file", "The file is not valid UTF-8 text (JSONL expected)");
      }
      // An object store gets the bytes before the transaction; the commit inside it then only checks they are there.
      await onDiskFull("files", () => this.blobs.publish(blob));
      try {
        return await this.store.files.create(
          { filename: displayFilename(meta.filename), purpose: meta.purpose, bytes: blob.bytes, sha256: blob.sha256 },
          () => this.blobs.commit(blob),
        );
      } catch (e) {
        // Do not leave a published object nothing names (it goes only if nothing else references the hash).
        if (this.blobs.artifacts.remote) await this.releaseBlob(blob.sha256).catch(() => {});
        throw e;
      }
    } finally {
      // Gone if committed; otherwise do not leave it in .tmp.
      await this.blobs.discard(blob);
    }
  }

  get(id: string): Promise<FileRecord> {
    return this.store.files.get(id);
  }

  list(req: FileListRequest): Promise<Page<FileRecord>> {
    return this.store.files.list(req);
  }

  /** Hides the file; removes its blob too when nothing else needs it. */
  async delete(id: string): Promise<{ id: string }> {
    const { sha256 } = await this.store.files.delete(id);
    try {
      await this.releaseBlob(sha256);
    } catch (e) {
      // The file is deleted either way; a later collectGarbage retries the blob.
      console.error(`releasing blob ${sha256} of ${id} failed: ${e}`);
    }
    return { id };
  }

  /** `includeDeleted`: job runners may still read a deleted training file. */
  async content(id: string, opts: { includeDeleted?: boolean } = {}): Promise<FileContent> {
    const file = await this.store.files.get(id, opts);
    const blob = await this.blobs.read(file.sha256);
    if (!blob) throw new FileError("content_missing", `The content of file ${id} is missing`);
    return { file, ...blob };
  }

  /** Releases every blob nothing references any more; returns how many went. */
  async collectGarbage(): Promise<number> {
    let released = 0;
    for (const sha256 of await this.store.files.releasableBlobs()) {
      if (await this.releaseBlob(sha256)) released++;
    }
    return released;
  }

  private async releaseBlob(sha256: string): Promise<boolean> {
    return await this.store.files.releaseBlobIfUnreferenced(sha256, () => this.blobs.remove(sha256));
  }
}
