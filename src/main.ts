/**
 * Entry point: config → services (src/services.ts) → HTTP server. /health
 * answers at once; /ready turns 200 when the base model is loaded.
 * SIGINT/SIGTERM: stop accepting, checkpoint and re-queue the running job,
 * drain the engines, close the store.
 */
import "./runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { ConfigError, loadConfig } from "./config.ts";
import { ModelLoadError } from "./model/errors.ts";
import { TokenizerLoadError } from "./model/tokenizer.ts";
import { RegistryError } from "./registry/errors.ts";
import { RegistryConfigError } from "./registry/registry_config.ts";
import { DeviceUnavailableError } from "./runtime/device.ts";
import { SessionError } from "./runtime/session.ts";
import { ModelWorkerError } from "./runtime/worker_client.ts";
import { createServices } from "./services.ts";
import { ArtifactStoreConfigError } from "./store/artifact_store.ts";
import { StoreError } from "./store/errors.ts";

async function main(): Promise<void> {
  const env = Deno.env.toObject();
  const config = loadConfig(env);
  const services = await createServices(config, env);
  const server = Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) => console.log(`listening on http://${hostname}:${port} (loading ${config.model}…)`),
  }, services.app.fetch);

  let stopping = false;
  const stop = async (code: number) => {
    if (stopping) return;
    stopping = true;
    console.log("shutting down…");
    // Stop accepting connections and let in-flight responses finish, then drain.
    await server.shutdown();
    await services.close();
    Deno.exit(code);
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    try {
      Deno.addSignalListener(signal, () => stop(0));
    } catch {
      // SIGTERM is not available on every platform.
    }
  }

  console.log(`loading ${config.model} on ${services.device}…`);
  const started = performance.now();
  try {
    await services.warm();
  } catch (e) {
    if (!isStartupError(e)) throw e;
    console.error(`error: ${e.message}`);
    await stop(1);
    return;
  }
  console.log(`serving ${config.model} (loaded in ${((performance.now() - started) / 1000).toFixed(1)} s)`);
  await server.finished;
}

/** Expected start-up failures: reported as one line, not a stack trace. */
function isStartupError(e: unknown): e is Error {
  return e instanceof ConfigError || e instanceof RegistryConfigError || e instanceof ModelLoadError ||
    e instanceof TokenizerLoadError ||
    e instanceof SessionError || e instanceof ModelWorkerError || e instanceof StoreError ||
    e instanceof RegistryError || e instanceof DeviceUnavailableError || e instanceof ArtifactStoreConfigError;
}

try {
  await main();
} catch (e) {
  if (!isStartupError(e)) throw e;
  console.error(`error: ${e.message}`);
  Deno.exit(1);
}
