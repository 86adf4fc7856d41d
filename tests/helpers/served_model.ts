/**
 * Loads a model directory for the e2e tests twice over: as a served model
 * (the batching engine from createEngine + tokenizer, what the HTTP layer
 * gets) and as a main-thread CausalLM for direct `generate()` reference outputs.
 */
import type { ServedModel } from "../../src/serve/model_resolver.ts";
import { createEngine } from "../../src/serve/batch_engine.ts";
import type { SchedulerOptions } from "../../src/serve/scheduler.ts";
import { type LoadedModel, loadModel } from "../../src/serve/load_model.ts";

export interface TestServedModel {
  served: ServedModel;
  /** For reference generations with src/serve/generate.ts. */
  direct: LoadedModel;
  close(): Promise<void>;
}

export async function openServedModel(
  dir: string,
  dataDir: string,
  id: string,
  engineOpts: SchedulerOptions = {},
): Promise<TestServedModel> {
  const direct = await loadModel(dir, { dataDir, device: "cpu" });
  const engine = await createEngine(direct, { ...engineOpts, modelId: id });
  return {
    served: { id, created: Math.floor(Date.now() / 1000), ownedBy: "test", engine, tokenizer: engine.tokenizer },
    direct,
    close: async () => {
      await engine.close();
      await direct.lm.release();
    },
  };
}
