/**
 * The seam between the API and whatever serves models: a request names a
 * `model`, the resolver answers with the engine and tokenizer serving it (or
 * null → 404). Today main.ts serves one model; the fine-tuning service will
 * plug in versions and aliases here without touching the routes.
 */
import type { Tokenizer } from "../src/model/tokenizer.ts";
import type { GenerationEngine } from "../src/serve/engine_types.ts";

export interface ServedModel {
  /** The id clients send as `model`. */
  id: string;
  /** Unix seconds, as in OpenAI's model object. */
  created: number;
  ownedBy: string;
  engine: GenerationEngine;
  tokenizer: Tokenizer;
}

export interface ModelResolver {
  resolve(id: string): ServedModel | null;
  /** Everything `resolve` knows, for GET /v1/models and metrics. */
  list(): ServedModel[];
}

/** A fixed set of models (what main.ts serves until versions exist). */
export function staticResolver(models: ServedModel[]): ModelResolver {
  const byId = new Map(models.map((m) => [m.id, m]));
  return { resolve: (id) => byId.get(id) ?? null, list: () => [...byId.values()] };
}
