/**
 * The seam between the API and whatever serves models: a request names a
 * `model`, the resolver answers with the engine and tokenizer serving it (or
 * null → 404). The model registry (src/registry/model_registry.ts) implements
 * it over base models, versions and aliases; tests and benchmarks use a fixed
 * set (staticResolver). It lives below routes/ so the registry need not
 * import upward.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { GenerationEngine } from "./engine_types.ts";

/** What GET /v1/models lists: every servable id, loaded or not. */
export interface ModelInfo {
  /** The id clients send as `model`. */
  id: string;
  /** Unix seconds, as in OpenAI's model object. */
  created: number;
  ownedBy: string;
}

export interface ServedModel extends ModelInfo {
  engine: GenerationEngine;
  tokenizer: Tokenizer;
}

export interface ModelResolver {
  /** The engine serving `id`, loading it on demand; null when the id is unknown (404). */
  resolve(id: string): Promise<ServedModel | null>;
  /** Every servable id: base models, versions, checkpoints, aliases. */
  list(): ModelInfo[];
  /** Engines currently loaded (metrics). */
  loaded(): ServedModel[];
  /** DELETE /v1/models/{model}: deletes a fine-tuned model; absent = nothing can be deleted here. */
  deleteModel?(id: string): Promise<{ id: string }>;
}

/** A fixed set of loaded models (tests, benchmarks). */
export function staticResolver(models: ServedModel[]): ModelResolver {
  const byId = new Map(models.map((m) => [m.id, m]));
  return {
    resolve: (id) => Promise.resolve(byId.get(id) ?? null),
    list: () => [...byId.values()],
    loaded: () => [...byId.values()],
  };
}
