/** Entry point: config → model → app → Deno.serve. */
import { buildApp } from "./app.ts";
import { ConfigError, loadConfig } from "./config.ts";
import { ModelLoadError } from "./model/errors.ts";
import { TokenizerLoadError } from "./model/tokenizer.ts";
import { resolveDevice } from "./runtime/device.ts";
import { SessionError } from "./runtime/session.ts";
import { type LoadedModel, loadModel } from "./serve/load_model.ts";

const DTYPES = { fp32: "float32", fp16: "float16", bf16: "bfloat16" } as const;

async function main(): Promise<void> {
  const config = loadConfig(Deno.env.toObject());
  const device = resolveDevice(config.device);
  console.log(`loading ${config.model} on ${device}…`);
  const started = performance.now();
  const model: LoadedModel = await loadModel(config.model, {
    dataDir: config.dataDir,
    device,
    dtype: config.dtype === "auto" ? undefined : DTYPES[config.dtype],
  });
  console.log(`loaded ${config.model} in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  const created = Math.floor(Date.now() / 1000);
  const app = buildApp({
    ready: () => true,
    listModels: () => [{ id: config.model, created, ownedBy: "scalora-server" }],
  });
  Deno.serve({
    hostname: config.host,
    port: config.port,
    onListen: ({ hostname, port }) => console.log(`serving ${model.source} on http://${hostname}:${port}`),
  }, app.fetch);
}

try {
  await main();
} catch (e) {
  // Expected start-up failures are one line, not a stack trace.
  if (e instanceof ConfigError || e instanceof ModelLoadError || e instanceof TokenizerLoadError || e instanceof SessionError) {
    console.error(`error: ${e.message}`);
    Deno.exit(1);
  }
  throw e;
}
