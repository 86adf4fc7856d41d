/**
 * One call from a model (directory, hub id, or an already loaded/prepared
 * model) to a running continuous-batching GenerationEngine: compile the
 * serving graph on this thread (cached under dataDir), load it in a model
 * worker, and put the scheduler in front of it.
 *
 *   const engine = await createEngine("./models/tiny");
 *   for await (const ev of engine.generate({ promptIds, maxTokens: 64, ... })) ...
 *   await engine.close();
 */
import { servingModelPath } from "../model/serving_graph.ts";
import { ModelWorker } from "../runtime/worker_client.ts";
import { type LoadedModel, type PreparedModel, prepareModel, type PrepareOptions } from "./load_model.ts";
import { BatchScheduler, type SchedulerOptions } from "./scheduler.ts";

export interface CreateEngineOptions extends PrepareOptions, SchedulerOptions {
  /** Intra-op threads of the worker's session; default: all cores. */
  threads?: number;
  /** The id the engine reports; default: the source as given. */
  modelId?: string;
}

/** Loads the model in a worker and returns the engine serving it; `close()` drains and ends the worker. */
export async function createEngine(
  model: string | PreparedModel | LoadedModel,
  opts: CreateEngineOptions = {},
): Promise<BatchScheduler> {
  // A LoadedModel is a PreparedModel too; its caller keeps (and releases) its own session.
  const prepared = typeof model === "string" ? await prepareModel(model, opts) : model;
  const { worker } = await ModelWorker.start({
    modelPath: servingModelPath(prepared.compiledDir, prepared.dtype),
    config: prepared.config,
    dtype: prepared.dtype,
    device: prepared.device,
    threads: opts.threads,
  });
  return new BatchScheduler(worker, {
    modelId: opts.modelId ?? prepared.source,
    contextLength: prepared.config.maxPositionEmbeddings,
    vocabSize: prepared.config.vocabSize,
    tokenizer: prepared.tokenizer,
  }, opts);
}
