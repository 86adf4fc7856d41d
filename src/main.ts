/**
 * Entry point: config → HTTP server (health answers at once; /ready and the
 * model's routes wait for the load) → batching engine → graceful shutdown on
 * SIGINT/SIGTERM.
 */
import { join } from "node:path";
import { ApiError } from "../routes/errors.ts";
import type { ModelResolver, ServedModel } from "../routes/model_resolver.ts";
import { buildApp } from "./app.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { ModelLoadError } from "./model/errors.ts";
import { TokenizerLoadError } from "./model/tokenizer.ts";
import { resolveDevice } from "./runtime/device.ts";
import { SessionError } from "./runtime/session.ts";
import { ModelWorkerError } from "./runtime/worker_client.ts";
import { createEngine } from "./serve/batch_engine.ts";
import { BlobStore } from "./store/blob_store.ts";
import { StoreError } from "./store/errors.ts";
import { FileService } from "./store/file_service.ts";
import { openStore } from "./store/store.ts";

const DTYPES = { fp32: "float32", fp16: "float16", bf16: "bfloat16" } as const;

async function main(): Promise<void> {
  const config = loadConfig(Deno.env.toObject());
  const device = resolveDevice(config.device);

  let served: ServedModel | null = null;
  const models: ModelResolver = {
    resolve: (id) => {
      if (served) return Promise.resolve(id === served.id ? served : null);
      // The configured model exists, it just is not ready yet: retryable, not a 404.
      if (id === config.model) {
        throw new ApiError(503, `The model '${id}' is still loading`, "server_error", null, "model_loading");
      }
      return Promise.resolve(null);
    },
    list: () => (served ? [served] : []),
    loaded: () => (served ? [served] : []),
  };
  const store = await openStore({ dataDir: config.dataDir, databaseUrl: config.databaseUrl });
  const blobs = await BlobStore.open(join(config.dataDir, "files"));
  await blobs.sweepTemp(24 * 3600_000); // leftovers of uploads cut off by a crash
  const files = new FileService(store, blobs);
  const app = buildApp({
    models,
    files: { files, maxUploadBytes: config.maxUploadBytes },
    ready: () => served !== null,
    apiKeys: config.apiKeys,
    maxBodyBytes: config.maxBodyBytes,
    requestTimeoutMs: config.requestTimeoutMs ?? undefined,
  });
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port} (loading ${config.model}…)`),
  }, app.fetch);

  console.log(`loading ${config.model} on ${device}…`);
  const started = performance.now();
  let engine;
  try {
    engine = await createEngine(config.model, {
      dataDir: config.dataDir,
      device,
      dtype: config.dtype === "auto" ? undefined : DTYPES[config.dtype],
      modelId: config.model,
    });
  } catch (e) {
    await server.shutdown();
    throw e;
  }
  served = {
    id: config.model,
    created: Math.floor(Date.now() / 1000),
    ownedBy: "scalora-server",
    engine,
    tokenizer: engine.tokenizer,
  };
  console.log(`serving ${config.model} (loaded in ${((performance.now() - started) / 1000).toFixed(1)} s)`);

  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    console.log("shutting down…");
    // Stop accepting connections and let in-flight responses finish, then drain the engine.
    await server.shutdown();
    await engine.close();
    await store.close();
    Deno.exit(0);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, stop);
    } catch {
      // SIGTERM is not available on every platform.
    }
  }
  await server.finished;
}

try {
  await main();
} catch (e) {
  // Expected start-up failures are one line, not a stack trace.
  if (
    e instanceof ConfigError || e instanceof ModelLoadError || e instanceof TokenizerLoadError ||
    e instanceof SessionError || e instanceof ModelWorkerError || e instanceof StoreError
  ) {
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
  throw e;
}
