/**
 * The service graph, composed once: store and files → model registry (base
 * model, versions, aliases with hot-swap) → fine-tuning runner → Hono app.
 * main.ts serves it; end-to-end tests build the same thing on a loopback port.
 */
import { join } from "node:path";
import type { OpenAPIHono } from "@hono/zod-openapi";
import type { AppEnv } from "../routes/app_env.ts";
import { type AppDeps, buildApp } from "./app.ts";
import type { Config } from "./config.ts";
import { DiskSpace } from "./disk_space.ts";
import { BaseModels } from "./registry/base_models.ts";
import { AliasCoordinator } from "./registry/hot_swap.ts";
import { ModelEvaluator } from "./registry/model_evaluator.ts";
import { ModelRegistry } from "./registry/model_registry.ts";
import { loadRegistryConfig } from "./registry/registry_config.ts";
import { RegistryVersionSink } from "./registry/version_sink.ts";
import { VersionService } from "./registry/versions.ts";
import { chooseDevice, type Device } from "./runtime/device.ts";
import { CheckpointStore } from "./jobs/checkpoint_store.ts";
import type { ArtifactStore } from "./store/artifact_store.ts";
import { BlobStore } from "./store/blob_store.ts";
import { LocalCache } from "./store/local_cache.ts";
import { openArtifactStore } from "./store/open_artifact_store.ts";
import { FileService } from "./store/file_service.ts";
import { openStore, type Store } from "./store/store.ts";
import { createFineTuning, type FineTuning } from "./jobs/fine_tuning_setup.ts";

const DTYPES = { fp32: "float32", fp16: "float16", bf16: "bfloat16" } as const;

export interface Services {
  app: OpenAPIHono<AppEnv>;
  device: Device;
  store: Store;
  registry: ModelRegistry;
  coordinator: AliasCoordinator;
  versions: VersionService;
  fineTuning: FineTuning;
  /** Where artifacts live: the data directory, or an S3-compatible bucket shared by replicas. */
  artifacts: ArtifactStore;
  /** Loads the base model; /ready answers 200 once it resolves. */
  warm(): Promise<void>;
  /** Checkpoints and re-queues the running job, drains engines, closes the store. */
  close(): Promise<void>;
}

export interface ServiceOptions {
  /** One structured line per request; default JSON on stdout (tests pass their own). */
  logRequest?: AppDeps["logRequest"];
  /** How often a job paused for a full disk checks for room (default 10 s). */
  diskPollMs?: number;
}

export async function createServices(
  config: Config,
  env: Record<string, string | undefined>,
  opts: ServiceOptions = {},
): Promise<Services> {
  const registryConfig = loadRegistryConfig(env);
  const choice = chooseDevice(config.device);
  const device = choice.device;
  console.log(JSON.stringify({ device, reason: choice.reason }));

  const artifacts = await openArtifactStore({
    url: config.artifactStore,
    dataDir: config.dataDir,
    s3: { endpoint: config.s3Endpoint ?? undefined, forcePathStyle: config.s3ForcePathStyle ?? undefined },
  });
  if (artifacts.remote) console.log(JSON.stringify({ artifact_store: artifacts.location }));
  const store = await openStore({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  const disk = new DiskSpace(config.dataDir, config.diskLowFreeBytes);
  // On an object store the data directory is a bounded cache of what this replica runs.
  const cache = artifacts.remote
    ? new LocalCache({
      root: config.dataDir,
      budgetBytes: config.artifactCacheBytes,
      roots: ["versions", "compiled/patched", "compiled/full", "exports"],
    })
    : undefined;
  const blobs = await BlobStore.open(join(config.dataDir, "files"), { artifacts, prefix: "files/" });
  await blobs.sweepTemp(24 * 3600_000); // leftovers of uploads cut off by a crash
  const files = new FileService(store, blobs);

  const bases = new BaseModels([{ id: config.model }], {
    dataDir: config.dataDir,
    device: choice,
    dtype: config.dtype === "auto" ? undefined : DTYPES[config.dtype],
  });
  const versions = new VersionService({
    store,
    bases,
    compileMode: registryConfig.compileMode,
    denseDtype: registryConfig.denseDtype,
    artifacts,
    cache,
  });
  const registry = new ModelRegistry({
    versions,
    memoryBudgetBytes: registryConfig.memoryBudgetBytes,
    leaseTtlMs: registryConfig.leaseTtlMs,
    probe: { timeoutMs: registryConfig.probeTimeoutMs },
  });
  await registry.refresh();
  registry.refreshEvery(registryConfig.refreshMs);
  const coordinator = new AliasCoordinator({
    store,
    registry,
    // Eval-gated promotions score models with the training engine's validation loss, on the serving device.
    evaluator: new ModelEvaluator({ versions, device }),
    onEvent: (e) => console.log(JSON.stringify({ alias_event: e })),
  });
  await coordinator.start();
  // NOTIFY carries alias changes between replicas; this re-read catches one that got lost.
  coordinator.refreshEvery(registryConfig.refreshMs);

  const fineTuning = createFineTuning({
    store,
    files,
    // "await": a job reports success once its model is loaded and validated, so
    // the first request to it (or to an alias switched to it) is served at once.
    sink: new RegistryVersionSink({ versions, registry, coordinator, warm: "await" }),
    baseModels: bases,
    dataDir: config.dataDir,
    // A job paused because the disk filled resumes once DATA_DIR has room again.
    runner: {
      device,
      disk,
      diskPollMs: opts.diskPollMs,
      leaseMs: config.jobLeaseMs,
      // With a shared store, any replica that claims the job resumes it from there.
      checkpoints: new CheckpointStore(artifacts),
    },
  });
  await fineTuning.runner.start(); // re-queues a job a crash left running

  let ready = false;
  const app = buildApp({
    models: registry,
    ready: () => ready,
    apiKeys: config.apiKeys,
    maxBodyBytes: config.maxBodyBytes,
    requestTimeoutMs: config.requestTimeoutMs ?? undefined,
    files: { files, maxUploadBytes: config.maxUploadBytes },
    fineTuning: fineTuning.service,
    coordinator,
    versions,
    logRequest: opts.logRequest,
    disk,
    dashboard: { registry, runningJob: () => fineTuning.runner.activeJob },
    database: config.databaseUrl === null ? undefined : () => store.ping(),
    replica: () => ({ id: fineTuning.runner.owner, trainingJob: fineTuning.runner.activeJob }),
  });
  return {
    app,
    device,
    store,
    registry,
    coordinator,
    versions,
    fineTuning,
    artifacts,
    warm: async () => {
      await registry.warm(config.model);
      ready = true;
    },
    close: async () => {
      await fineTuning.runner.stop();
      await coordinator.close();
      await registry.close();
      await versions.collected();
      await store.close();
      artifacts.close();
    },
  };
}
