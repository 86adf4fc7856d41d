/**
 * The S3-compatible backend of the artifact store (`ARTIFACT_STORE=s3://bucket/prefix`),
 * on the AWS SDK v3 (@aws-sdk/client-s3 signs every request; @aws-sdk/lib-storage
 * uploads large objects in parts, a few in flight at once, from a file stream).
 *
 * Endpoint, region and credentials come from the usual AWS variables
 * (AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
 * AWS_SESSION_TOKEN, profiles, instance roles: the SDK's default chain) plus
 * `S3_ENDPOINT` for MinIO-like servers, where path-style addressing is the
 * default (`S3_FORCE_PATH_STYLE=false` turns it off).
 *
 * Each object records its sha256 as user metadata (`x-amz-meta-sha256`),
 * computed from the file before the upload starts; reads hash what they
 * stream and fail at the end on a mismatch (artifact_store.ts).
 */
import {
  DeleteObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  NoSuchKey,
  NotFound,
  PutObjectCommand,
  S3Client,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import {
  type ArtifactInfo,
  type ArtifactRead,
  type ArtifactStore,
  ArtifactStoreConfigError,
  checkKey,
  type PutFileOptions,
  sha256Bytes,
  sha256File,
  verifyingStream,
  writeVerified,
} from "./artifact_store.ts";

export interface S3Location {
  bucket: string;
  /** "" or ending with "/". */
  prefix: string;
}

/** `s3://bucket/some/prefix` → bucket and prefix. */
export function parseS3Url(url: string): S3Location {
  const m = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(\/.*)?$/.exec(url);
  if (!m) throw new ArtifactStoreConfigError(`ARTIFACT_STORE must look like s3://bucket[/prefix], got ${url}`);
  const prefix = (m[2] ?? "").replace(/^\/+|\/+$/g, "");
  if (prefix !== "") checkKey(prefix);
  return { bucket: m[1], prefix: prefix === "" ? "" : `${prefix}/` };
}

export interface S3Options {
  /** S3_ENDPOINT: e.g. http://127.0.0.1:9000 for MinIO-like servers. */
  endpoint?: string;
  /** Default: true when an endpoint is given. */
  forcePathStyle?: boolean;
  /** Default: AWS_REGION, AWS_DEFAULT_REGION, else us-east-1. */
  region?: string;
  /** Explicit credentials (tests); default: the SDK's provider chain. */
  credentials?: { accessKeyId: string; secretAccessKey: string };
  /** Part size of multipart uploads (min 5 MiB). Default 16 MiB. */
  partSize?: number;
  /** Parts in flight per upload. Default 4. */
  queueSize?: number;
}

const DEFAULT_PART_SIZE = 16 * 1024 * 1024;

function isMissing(e: unknown): boolean {
  if (e instanceof NoSuchKey || e instanceof NotFound) return true;
  const err = e as { name?: string; $metadata?: { httpStatusCode?: number } };
  return err?.name === "NoSuchKey" || err?.name === "NotFound" || err?.$metadata?.httpStatusCode === 404;
}

export class S3ArtifactStore implements ArtifactStore {
  readonly kind = "s3" as const;
  readonly remote = true;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly #partSize: number;
  readonly #queueSize: number;

  constructor(location: S3Location, opts: S3Options = {}) {
    this.bucket = location.bucket;
    this.prefix = location.prefix;
    this.#partSize = Math.max(5 * 1024 * 1024, opts.partSize ?? DEFAULT_PART_SIZE);
    this.#queueSize = opts.queueSize ?? 4;
    const env = (name: string) => Deno.env.get(name) || undefined;
    this.client = new S3Client({
      endpoint: opts.endpoint,
      forcePathStyle: opts.forcePathStyle ?? opts.endpoint !== undefined,
      region: opts.region ?? env("AWS_REGION") ?? env("AWS_DEFAULT_REGION") ?? "us-east-1",
      ...(opts.credentials ? { credentials: opts.credentials } : {}),
    });
  }

  get location(): string {
    return `s3://${this.bucket}/${this.prefix}`;
  }

  #key(key: string): string {
    return this.prefix + checkKey(key);
  }

  async head(key: string): Promise<ArtifactInfo | null> {
    try {
      const out = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
      return { key, bytes: out.ContentLength ?? 0, sha256: out.Metadata?.sha256 ?? null };
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
  }

  async exists(key: string): Promise<boolean> {
    return (await this.head(key)) !== null;
  }

  async putFile(key: string, path: string, opts: PutFileOptions = {}): Promise<ArtifactInfo> {
    const sha256 = opts.sha256 ?? await sha256File(path);
    const bytes = (await Deno.stat(path)).size;
    const file = await Deno.open(path, { read: true });
    try {
      const upload = new Upload({
        client: this.client,
        params: {
          Bucket: this.bucket,
          Key: this.#key(key),
          Body: file.readable,
          ContentType: "application/octet-stream",
          Metadata: { sha256 },
        },
        partSize: this.#partSize,
        queueSize: this.#queueSize,
        leavePartsOnError: false,
      });
      await upload.done();
    } finally {
      try {
        file.close();
      } catch {
        // the readable stream closed it already
      }
    }
    if (opts.move) await Deno.remove(path).catch(() => {});
    return { key, bytes, sha256 };
  }

  async putBytes(key: string, bytes: Uint8Array): Promise<ArtifactInfo> {
    const sha256 = sha256Bytes(bytes);
    await this.client.send(
      new PutObjectCommand({
        Bucket: this.bucket,
        Key: this.#key(key),
        Body: bytes,
        ContentLength: bytes.byteLength,
        ContentType: "application/octet-stream",
        Metadata: { sha256 },
      }),
    );
    return { key, bytes: bytes.byteLength, sha256 };
  }

  async get(key: string, opts: { sha256?: string } = {}): Promise<ArtifactRead | null> {
    let out;
    try {
      out = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
    } catch (e) {
      if (isMissing(e)) return null;
      throw e;
    }
    if (!out.Body) throw new Error(`${this.location}${key}: empty response body`);
    const bytes = out.ContentLength ?? null;
    const sha256 = opts.sha256 ?? out.Metadata?.sha256 ?? null;
    const body = out.Body.transformToWebStream() as ReadableStream<Uint8Array>;
    return {
      stream: body.pipeThrough(verifyingStream(`${this.location}${key}`, { sha256, bytes })),
      bytes: bytes ?? 0,
      sha256,
    };
  }

  async getFile(key: string, path: string, opts: { sha256?: string } = {}): Promise<boolean> {
    const read = await this.get(key, opts);
    if (!read) return false;
    await writeVerified(read.stream, path);
    return true;
  }

  async *list(prefix: string): AsyncIterable<ArtifactInfo> {
    if (prefix !== "") checkKey(prefix, { prefix: true });
    let token: string | undefined;
    do {
      const out = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.prefix + prefix, ContinuationToken: token }),
      );
      for (const o of out.Contents ?? []) {
        if (!o.Key) continue;
        yield { key: o.Key.slice(this.prefix.length), bytes: o.Size ?? 0, sha256: null };
      }
      token = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (token);
  }

  async delete(key: string): Promise<void> {
    await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.#key(key) }));
  }

  async deletePrefix(prefix: string): Promise<number> {
    if (!prefix.endsWith("/")) throw new Error(`a prefix to delete ends with "/": ${JSON.stringify(prefix)}`);
    let n = 0;
    let batch: string[] = [];
    const flush = async () => {
      if (batch.length === 0) return;
      const out = await this.client.send(
        new DeleteObjectsCommand({
          Bucket: this.bucket,
          Delete: { Objects: batch.map((Key) => ({ Key })), Quiet: true },
        }),
      );
      const failed = out.Errors?.filter((e) => e.Code !== "NoSuchKey") ?? [];
      if (failed.length > 0) throw new Error(`deleting ${failed[0].Key}: ${failed[0].Code} ${failed[0].Message}`);
      n += batch.length;
      batch = [];
    };
    for await (const o of this.list(prefix)) {
      batch.push(this.prefix + o.key);
      if (batch.length === 1000) await flush();
    }
    await flush();
    return n;
  }

  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      const why = status === 404
        ? "the bucket does not exist"
        : status === 403
        ? "access denied (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        : e instanceof Error
        ? e.message
        : String(e);
      throw new ArtifactStoreConfigError(`artifact store ${this.location} is not usable: ${why}`, { cause: e });
    }
  }

  close(): void {
    this.client.destroy();
  }
}
