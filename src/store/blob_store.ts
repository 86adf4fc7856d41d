/**
 * Content-addressed blobs on local disk: `<root>/<sha256[0:2]>/<sha256>`.
 *
 * An upload is streamed into `<root>/.tmp/` while it is hashed (`stage`), then
 * renamed into place (`commit`): a blob path only ever holds complete bytes,
 * and equal content is stored once. Names come from the hash alone, never
 * from anything a client sent.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

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

export class BlobStore {
  private constructor(readonly root: string) {}

  static async open(root: string): Promise<BlobStore> {
    await Deno.mkdir(join(root, ".tmp"), { recursive: true });
    return new BlobStore(root);
  }

  pathOf(sha256: string): string {
    // Defence in depth: the hash is the only path component we ever build from data.
    if (!SHA256_HEX.test(sha256)) throw new Error(`not a sha256 hex digest: ${JSON.stringify(sha256)}`);
    return join(this.root, sha256.slice(0, 2), sha256);
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
   * Moves a staged blob into place (atomic rename on the same filesystem). If
   * the content is already stored, the staged copy is dropped instead.
   * Callers serialize this with removals of the same hash (see FileQueries).
   */
  async commit(staged: StagedBlob): Promise<void> {
    const target = this.pathOf(staged.sha256);
    if (await this.exists(staged.sha256)) {
      await this.discard(staged);
      return;
    }
    await Deno.mkdir(join(this.root, staged.sha256.slice(0, 2)), { recursive: true });
    await Deno.rename(staged.tempPath, target);
  }

  async discard(staged: StagedBlob): Promise<void> {
    await Deno.remove(staged.tempPath).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
  }

  async exists(sha256: string): Promise<boolean> {
    try {
      return (await Deno.stat(this.pathOf(sha256))).isFile;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return false;
      throw e;
    }
  }

  /** The blob's bytes as a stream (the caller must consume or cancel it), or null if absent. */
  async read(sha256: string): Promise<{ stream: ReadableStream<Uint8Array>; size: number } | null> {
    try {
      const file = await Deno.open(this.pathOf(sha256), { read: true });
      const { size } = await file.stat();
      return { stream: file.readable, size };
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
  }

  /** Removes the blob; a missing one is fine (already collected). */
  async remove(sha256: string): Promise<void> {
    await Deno.remove(this.pathOf(sha256)).catch((e) => {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    });
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
