/**
 * Starts the tests' S3-compatible server (s3rver_main.ts) in its own process
 * on a loopback port with a fresh directory, and gives the settings a server
 * or an S3ArtifactStore needs to use it.
 */
import { ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { S3ArtifactStore } from "../../src/store/s3_artifact_store.ts";
import { ChildProcess } from "./child_process.ts";

export const S3_CREDENTIALS = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" };

export class S3Server {
  private constructor(
    readonly process: ChildProcess,
    readonly directory: string,
    readonly endpoint: string,
    readonly bucket: string,
    readonly client: S3Client,
  ) {}

  static async start(bucket = "scalora-test"): Promise<S3Server> {
    const directory = await Deno.makeTempDir({ prefix: "s3rver-" });
    const process = new ChildProcess("s3rver", [
      "run",
      "-A",
      new URL("./s3rver_main.ts", import.meta.url).pathname,
      directory,
      bucket,
    ], { PATH: Deno.env.get("PATH") ?? "", HOME: Deno.env.get("HOME") ?? "/tmp", ...denoEnv() });
    const port = await process.port(60_000);
    const endpoint = `http://127.0.0.1:${port}`;
    const client = new S3Client({ endpoint, forcePathStyle: true, region: "us-east-1", credentials: S3_CREDENTIALS });
    return new S3Server(process, directory, endpoint, bucket, client);
  }

  /** Environment for a server process using `s3://<bucket>/<prefix>`. */
  env(prefix: string): Record<string, string> {
    return {
      ARTIFACT_STORE: `s3://${this.bucket}/${prefix}`,
      S3_ENDPOINT: this.endpoint,
      AWS_ACCESS_KEY_ID: S3_CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: S3_CREDENTIALS.secretAccessKey,
      AWS_REGION: "us-east-1",
    };
  }

  /** An artifact store on this server under `prefix`. */
  store(prefix: string, opts: { partSize?: number } = {}): S3ArtifactStore {
    return new S3ArtifactStore({ bucket: this.bucket, prefix: prefix ? `${prefix.replace(/\/+$/, "")}/` : "" }, {
      endpoint: this.endpoint,
      credentials: S3_CREDENTIALS,
      ...opts,
    });
  }

  /** Every key in the bucket under `prefix`. */
  async keys(prefix = ""): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const page = await this.client.send(
        new ListObjectsV2Command({ Bucket: this.bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of page.Contents ?? []) if (o.Key) out.push(o.Key);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    return out.sort();
  }

  async stop(): Promise<void> {
    this.client.destroy();
    await this.process.kill("SIGTERM");
    await Deno.remove(this.directory, { recursive: true }).catch(() => {});
  }
}

/** What a child Deno needs from this environment to find its cache and behave the same. */
export function denoEnv(): Record<string, string> {
  const out: Record<string, string> = { NO_COLOR: "1" };
  for (const k of ["DENO_DIR", "XDG_CACHE_HOME", "TMPDIR", "LANG"]) {
    const v = Deno.env.get(k);
    if (v) out[k] = v;
  }
  return out;
}
