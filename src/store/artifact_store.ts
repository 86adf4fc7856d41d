/**
 * Where artifacts live: uploaded files, job checkpoints, version deltas and
 * exports. Two backends behind one interface:
 *
 * - `LocalArtifactStore` (default): a directory, the data directory itself,
 *   so keys are today's paths under DATA_DIR (`files/ab/<sha256>`,
 *   `versions/<hash>/delta.safetensors`, …) and nothing is copied twice.
 * - `S3ArtifactStore` (`ARTIFACT_STORE=s3://bucket/prefix`): an S3-compatible
 *   object store shared by every replica; each replica's DATA_DIR is then a
 *   bounded cache of what it needs to run (artifact_cache.ts).
 *
 * Keys are `/`-separated relative paths built by the server from hashes and
 * ids, never from client text. Objects stream in and out (never held whole);
 * large ones upload in parts. Every object written carries its sha256, and
 * every read checks it: a stream whose bytes do not match fails at its end
 * with `ArtifactIntegrityError` instead of ending cleanly.
 */
import { createHash, type Hash } from "node:crypto";

export interface ArtifactInfo {
  key: string;
  bytes: number;
  /** Lower-case hex; null when the backend does not record it (local files written before). */
  sha256: string | null;
}

export interface ArtifactRead {
  /** Ends with an error if the bytes do not hash to `sha256` (the caller must consume or cancel it). */
  stream: ReadableStream<Uint8Array>;
  bytes: number;
  sha256: string | null;
}

export interface PutFileOptions {
  /** The file's sha256 when the caller knows it (content-addressed keys); else it is computed. */
  sha256?: string;
  /** The file may be moved instead of copied (a rename for the local backend, deleted after upload for S3). */
  move?: boolean;
}

export interface ArtifactStore {
  readonly kind: "local" | "s3";
  /** For logs and errors: a directory or `s3://bucket/prefix`. */
  readonly location: string;
  /**
   * True when the store is not this replica's data directory: what a replica
   * writes locally must be uploaded, and what it lacks locally is fetched.
   * False for the local backend, whose keys are the data directory's paths.
   */
  readonly remote: boolean;
  head(key: string): Promise<ArtifactInfo | null>;
  exists(key: string): Promise<boolean>;
  /** Uploads a file (in parts when large); returns what was stored. */
  putFile(key: string, path: string, opts?: PutFileOptions): Promise<ArtifactInfo>;
  /** Small objects (markers, JSON). */
  putBytes(key: string, bytes: Uint8Array): Promise<ArtifactInfo>;
  /** The object as a verified stream, or null when absent. `sha256` overrides the recorded one. */
  get(key: string, opts?: { sha256?: string }): Promise<ArtifactRead | null>;
  /**
   * Downloads into `path` (a temporary sibling renamed into place once the
   * sha256 matched: `path` only ever holds verified bytes). False when absent.
   */
  getFile(key: string, path: string, opts?: { sha256?: string }): Promise<boolean>;
  /** Every object under `prefix` (recursively), in key order. */
  list(prefix: string): AsyncIterable<ArtifactInfo>;
  /** Removes one object; a missing one is fine. */
  delete(key: string): Promise<void>;
  /** Removes every object under `prefix`; returns how many went. */
  deletePrefix(prefix: string): Promise<number>;
  /** Checks the store answers (start-up, readiness); throws with the reason if not. */
  check(): Promise<void>;
  close(): void;
}

/** The bytes read do not match the recorded or expected sha256 (or size): a corrupt or tampered object. */
export class ArtifactIntegrityError extends Error {
  override name = "ArtifactIntegrityError";
}

/** A store that cannot be configured or reached at start (one line, see main.ts). */
export class ArtifactStoreConfigError extends Error {
  override name = "ArtifactStoreConfigError";
}

const KEY_PART = /^[A-Za-z0-9._:+=@-]+$/;

/** Refuses keys that could escape the store's root or mean different things on different backends. */
export function checkKey(key: string, opts: { prefix?: boolean } = {}): string {
  const body = opts.prefix && key.endsWith("/") ? key.slice(0, -1) : key;
  const parts = body.split("/");
  if (
    key.length === 0 || key.length > 900 ||
    parts.some((p) => p === "" || p === "." || p === ".." || !KEY_PART.test(p))
  ) {
    throw new Error(`not a valid artifact key: ${JSON.stringify(key)}`);
  }
  return key;
}

/** A pass-through stream that hashes and counts what flows and fails at the end on a mismatch. */
export function verifyingStream(
  what: string,
  expected: { sha256: string | null; bytes: number | null },
): TransformStream<Uint8Array, Uint8Array> {
  const hash = createHash("sha256");
  let n = 0;
  return new TransformStream({
    transform(chunk, controller) {
      hash.update(chunk);
      n += chunk.byteLength;
      controller.enqueue(chunk);
    },
    flush(controller) {
      if (expected.bytes !== null && n !== expected.bytes) {
        controller.error(new ArtifactIntegrityError(`${what}: read ${n} bytes, expected ${expected.bytes}`));
        return;
      }
      const got = hash.digest("hex");
      if (expected.sha256 !== null && got !== expected.sha256) {
        controller.error(
          new ArtifactIntegrityError(
            `${what}: sha256 ${got.slice(0, 16)}… does not match ${expected.sha256.slice(0, 16)}…`,
          ),
        );
      }
    },
  });
}

/** Feeds the file at `path` to `hash` in 4 MiB reads (the file is never held whole); returns `hash`. */
export async function hashFile(hash: Hash, path: string): Promise<Hash> {
  const file = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(4 << 20);
    for (;;) {
      const n = await file.read(buf);
      if (n === null) break;
      hash.update(buf.subarray(0, n));
    }
  } finally {
    file.close();
  }
  return hash;
}

/** sha256 (hex) of a file, streamed. */
export async function sha256File(path: string): Promise<string> {
  return (await hashFile(createHash("sha256"), path)).digest("hex");
}

export function sha256Bytes(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Writes a verified stream to `path` through a temporary sibling; removes the sibling on any failure. */
export async function writeVerified(stream: ReadableStream<Uint8Array>, path: string): Promise<void> {
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (dir) await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.download-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const file = await Deno.open(tmp, { write: true, createNew: true });
    // pipeTo closes the file on success and aborts (closes) it on a failed stream.
    await stream.pipeTo(file.writable);
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
}
