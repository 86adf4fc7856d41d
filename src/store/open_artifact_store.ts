/**
 * Picks the artifact store from the configuration: `ARTIFACT_STORE` unset →
 * the data directory itself (LocalArtifactStore); `s3://bucket/prefix` → an
 * S3-compatible bucket (S3ArtifactStore, with S3_ENDPOINT / S3_FORCE_PATH_STYLE
 * and the AWS variables). Checked once at start: a missing bucket or bad
 * credentials fail start-up with one line, not the first upload.
 */
import type { ArtifactStore } from "./artifact_store.ts";
import { ArtifactStoreConfigError } from "./artifact_store.ts";
import { LocalArtifactStore } from "./local_artifact_store.ts";
import { parseS3Url, S3ArtifactStore, type S3Options } from "./s3_artifact_store.ts";

export interface ArtifactStoreConfig {
  /** `ARTIFACT_STORE`; null = the data directory. */
  url: string | null;
  dataDir: string;
  s3?: S3Options;
}

export async function openArtifactStore(config: ArtifactStoreConfig): Promise<ArtifactStore> {
  let store: ArtifactStore;
  if (config.url === null || config.url === "") {
    store = new LocalArtifactStore(config.dataDir);
  } else if (config.url.startsWith("s3://")) {
    store = new S3ArtifactStore(parseS3Url(config.url), config.s3);
  } else {
    throw new ArtifactStoreConfigError(`ARTIFACT_STORE must be unset (the data directory) or s3://bucket[/prefix]`);
  }
  try {
    await store.check();
  } catch (e) {
    store.close();
    throw e;
  }
  return store;
}
