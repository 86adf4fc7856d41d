/**
 * Service configuration from the environment, validated once at start-up.
 * Every variable is documented in README.md ("Configuration").
 */
import { z } from "zod";
import { DEFAULT_DISK_LOW_FREE_BYTES } from "./disk_space.ts";
import { DEVICE_REQUESTS, type DeviceRequest } from "./runtime/device.ts";

export const DEFAULT_MODEL = "HuggingFaceTB/SmolLM2-135M-Instruct";
/** OpenAI's own cap for fine-tuning files. */
export const DEFAULT_MAX_UPLOAD_BYTES = 512 * 1024 * 1024;
/** The local cache of a replica on an object store (versions, serving directories, exports). */
export const DEFAULT_ARTIFACT_CACHE_BYTES = 20 * 1024 ** 3;

const ConfigSchema = z.object({
  MODEL: z.string().min(1).default(DEFAULT_MODEL),
  PORT: z.coerce.number().int().min(0).max(65535).default(8000),
  HOST: z.string().min(1).default("127.0.0.1"),
  DATA_DIR: z.string().min(1).default("./data"),
  DEVICE: z.enum(DEVICE_REQUESTS).default("auto"),
  DTYPE: z.enum(["auto", "fp32", "fp16", "bf16"]).default("auto"),
  DATABASE_URL: z.string().min(1).optional(),
  API_KEYS: z.string().optional(),
  MAX_BODY_BYTES: z.coerce.number().int().min(1024).default(4 * 1024 * 1024),
  REQUEST_TIMEOUT_MS: z.coerce.number().int().min(1).optional(),
  MAX_UPLOAD_BYTES: z.coerce.number().int().min(1024).default(DEFAULT_MAX_UPLOAD_BYTES),
  DISK_LOW_FREE_BYTES: z.coerce.number().int().min(0).default(DEFAULT_DISK_LOW_FREE_BYTES),
  ARTIFACT_STORE: z.string().regex(/^s3:\/\//, "must be s3://bucket[/prefix] (unset: the data directory)").optional(),
  S3_ENDPOINT: z.string().url().optional(),
  S3_FORCE_PATH_STYLE: z.enum(["true", "false", "1", "0"]).optional(),
  ARTIFACT_CACHE_BYTES: z.coerce.number().int().min(0).default(DEFAULT_ARTIFACT_CACHE_BYTES),
  JOB_LEASE_MS: z.coerce.number().int().min(100).default(60_000),
});

export interface Config {
  model: string;
  port: number;
  host: string;
  dataDir: string;
  device: DeviceRequest;
  dtype: "auto" | "fp32" | "fp16" | "bf16";
  databaseUrl: string | null;
  apiKeys: string[];
  /** Request bodies above this get a 413. */
  maxBodyBytes: number;
  /** Per-request wall-clock limit (queueing included); null = none. */
  requestTimeoutMs: number | null;
  /** Largest accepted `/v1/files` upload. */
  maxUploadBytes: number;
  /** Free space under DATA_DIR below this is "disk pressure" (/ready, /metrics); a paused-for-space job resumes above it. */
  diskLowFreeBytes: number;
  /** `ARTIFACT_STORE` (s3://bucket/prefix); null = artifacts live in the data directory. */
  artifactStore: string | null;
  /** `S3_ENDPOINT` (MinIO-like servers); null = AWS's own endpoints. */
  s3Endpoint: string | null;
  /** Path-style S3 addressing; null = on when an endpoint is given. */
  s3ForcePathStyle: boolean | null;
  /** Bound of a replica's local cache when artifacts live in an object store. */
  artifactCacheBytes: number;
  /** How long a replica's claim on a running job lasts without a heartbeat. */
  jobLeaseMs: number;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export function loadConfig(env: Record<string, string | undefined>): Config {
  const parsed = ConfigSchema.safeParse(
    Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== "")),
  );
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ConfigError(`invalid environment variable ${issue.path.join(".")}: ${issue.message}`);
  }
  const c = parsed.data;
  return {
    model: c.MODEL,
    port: c.PORT,
    host: c.HOST,
    dataDir: c.DATA_DIR,
    device: c.DEVICE,
    dtype: c.DTYPE,
    databaseUrl: c.DATABASE_URL ?? null,
    apiKeys: (c.API_KEYS ?? "").split(",").map((k) => k.trim()).filter((k) => k.length > 0),
    maxBodyBytes: c.MAX_BODY_BYTES,
    requestTimeoutMs: c.REQUEST_TIMEOUT_MS ?? null,
    maxUploadBytes: c.MAX_UPLOAD_BYTES,
    diskLowFreeBytes: c.DISK_LOW_FREE_BYTES,
    artifactStore: c.ARTIFACT_STORE ?? null,
    s3Endpoint: c.S3_ENDPOINT ?? null,
    s3ForcePathStyle: c.S3_FORCE_PATH_STYLE === undefined ? null : ["true", "1"].includes(c.S3_FORCE_PATH_STYLE),
    artifactCacheBytes: c.ARTIFACT_CACHE_BYTES,
    jobLeaseMs: c.JOB_LEASE_MS,
  };
}
