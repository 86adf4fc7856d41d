/**
 * Content-addressed blobs in the artifact store: key `<prefix><sha256[0:2]>/<sha256>`
 * (by default the store is a directory and the key is `<root>/<sha256[0:2]>/<sha256>`).
 *
 * An upload is streamed into the local `<root>/.tmp/` while it is hashed
 * (`stage`), then moved into the store (`commit`: a rename on local disk, a
 * multipart upload to S3): a blob key only ever holds complete bytes, and
 * equal content is stored once. Reads are checked against the sha256 the
 * blob is named by. Names come from the hash alone, never from anything a
 * client sent.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { ArtifactStore } from "./artifact_store.ts";
import { LocalArtifactStore } from "./local_artifact_store.ts";

export interface StagedBlob {
  readonly tempPath: string;
  readonly sha256: string;
  readonly bytes: number;
}

export interface StageOptions {
  /** Larger content fails with `BlobTooLargeError` as soon as it is exceeded. */
  maxBytes: number;
  /** Sees every chunk in order (e.g. a streaming validator); throwing aborts the stage. */
  inspect?: (chunk: Uint8Array) => void;
}

export class BlobTooLargeError extends Error {
  override name = "BlobTooLargeError";
  constructor(readonly maxBytes: number) {
    super(`File is larger than ${maxBytes} bytes`);
  }
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

export interface BlobStoreOptions {
  /** Where blobs live; default a directory store at `root` (keys then are `<sha[0:2]>/<sha>` under it). */
  artifacts?: ArtifactStore;
  /** Key prefix of the blobs in `artifacts` (e.g. `files/`); default "". */
  prefix?: string;
}

export class BlobStore {
  private constructor(
    /** Local directory: staging (`.tmp/`) always, the blobs too for the default store. */
    readonly root: string,
    readonly artifacts: ArtifactStore,
    readonly prefix: string,
  ) {}

  static async open(root: string, opts: BlobStoreOptions = {}): Promise<BlobStore> {
    await Deno.mkdir(join(root, ".tmp"), { recursive: true });
    return new BlobStore(root, opts.artifacts ?? new LocalArtifactStore(root), opts.prefix ?? "");
  }

  /** The blob's key in the artifact store. */
  keyOf(sha256: string): string {
    // Defence in depth: the hash is the only key component we ever build from data.
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(sha256)}`);
    return `${this.prefix}${sha256.slice(0, 2)}/${sha256}`;
  }

  /** Streams `content` into a temp file, hashing and counting it. */
  async stage(content: AsyncIterable<Uint8Array>, opts: StageOptions): Promise<StagedBlob> {
    const tempPath = join(this.root, ".tmp", `${crypto.randomUUID()}.part`);
    const file = await Deno.open(tempPath, { write: true, createNew: true, mode: 0o600 });
    const hash = createHash("sha256");
    let bytes = 0;
    let ok = false;
    try {
      for await (const chunk of content) {
        bytes += chunk.byteLength;
        if (bytes > opts.maxBytes) throw new BlobTooLargeError(opts.maxBytes);
        opts.inspect?.(chunk);
        hash.update(chunk);
        for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
      }
      // Durable before it can be renamed into place and referenced.
      await file.syncData();
      ok = true;
    } finally {
      file.close();
      if (!ok) await Deno.remove(tempPath).catch(() => {});
    }
    return { tempPath, sha256: hash.digest("hex"), bytes };
  }

  /**
   * Uploads a staged blob ahead of its commit when the store is remote, so the
   * commit (which runs inside a database transaction) only has to see it
   * there. The staged copy stays until commit or discard. A no-op locally.
   */
  async publish(staged: StagedBlob): Promise<void> {
    if (!this.artifacts.remote || await this.exists(staged.sha256)) return;
    await this.artifacts.putFile(this.keyOf(staged.sha256), staged.tempPath, { sha256: staged.sha256 });
  }

  /**
   * Moves a staged blob into place (an atomic rename on the local disk, an
   * upload to an object store). If the content is already stored, the
   * staged copy is dropped instead. Callers serialize this with removals of
   * the same hash (see FileQueries).
   */
  async commit(staged: StagedBlob): Promise<void> {
    if (await this.exists(staged.sha256)) {
      await this.discard(staged);
      return;
    }
    await this.artifacts.putFile(this.keyOf(staged.sha256), staged.tempPath, { sha256: staged.sha256, move: true });
  }

  async discard(staged: StagedBlob): Promise<void> {
    await Deno.remove(staged.tempPath).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async exists(sha256: string): Promise<boolean> {
    return await this.artifacts.exists(this.keyOf(sha256));
  }

  /**
   * The blob's bytes as a stream (the caller must consume or cancel it), or
   * null if absent. The stream fails at its end if the bytes do not hash to
   * `sha256` (ArtifactIntegrityError).
   */
  async read(sha256: string): Promise<{ stream: ReadableStream<Uint8Array>; size: number } | null> {
    const blob = await this.artifacts.get(this.keyOf(sha256), { sha256 });
    return blob && { stream: blob.stream, size: blob.bytes };
  }

  /** Removes the blob; a missing one is fine (already collected). */
  async remove(sha256: string): Promise<void> {
    await this.artifacts.delete(this.keyOf(sha256));
  }

  /** Deletes temp files older than `olderThanMs` (left by a crash mid-upload). */
  async sweepTemp(olderThanMs: number): Promise<number> {
    const dir = join(this.root, ".tmp");
    const cutoff = Date.now() - olderThanMs;
    let removed = 0;
    for await (const entry of Deno.readDir(dir)) {
      if (!entry.isFile || !entry.name.endsWith(".part")) continue;
      const path = join(dir, entry.name);
      const info = await Deno.stat(path).catch(() => null);
      if (info?.mtime && info.mtime.getTime() < cutoff) {
        await Deno.remove(path).catch(() => {});
        removed++;
      }
    }
    return removed;
  }
}
