/**
 * Scores a causal LM on a JSONL set exactly as a fine-tuning run scores its
 * validation set (`full_valid_loss`): the examples are validated and
 * tokenized with the model's tokenizer (dataset.ts), batched by
 * `validationBatches` (fine_tune_data.ts, the run's own batching), and run
 * through `LmTrainingModel.evaluate`, the forward-only training graph with its
 * masked mean cross-entropy and token accuracy; batch results are averaged
 * weighted by their counted tokens, as `Trainer.evaluate` does.
 *
 * Used to compare models on one set (eval-gated promotion): tokenize once
 * (`evaluationSet`), then `scoreModel` each model's weights, so every model
 * sees the very same token ids.
 */
import type { WeightSource } from "../model/serving_graph.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import type { Device } from "../runtime/session.ts";
import type { LmBatch } from "./batching.ts";
import { validateJsonl } from "./dataset.ts";
import { DatasetInvalidError } from "./dataset_errors.ts";
import { validationBatches } from "./fine_tune_data.ts";
import { LmTrainingModel } from "./lm_training_graph.ts";
import { type AdapterFactors, type EvalResult, pooled } from "./types.ts";

export interface EvaluationSetOptions {
  /** Longest example in tokens (longer ones are truncated, as in training). */
  maxLength: number;
  /** Examples per evaluation batch (only padding depends on it). */
  batchSize: number;
  seed?: number;
}

export interface EvaluationSet {
  batches: LmBatch[];
  examples: number;
  /** Examples cut to maxLength. */
  truncated: number;
}

/** The metrics of one model on a set: the names a run reports (`full_valid_loss`, …) say which is which. */
export interface LmScore {
  /** Mean cross-entropy per counted (assistant) token. */
  loss: number;
  /** Share of counted tokens whose argmax is the label. */
  tokenAccuracy: number;
  /** Counted tokens. */
  tokens: number;
}

export class EvaluationDataError extends Error {
  override name = "EvaluationDataError";
}

/** Validates and tokenizes `text`; bad lines throw DatasetInvalidError (as a validation file would). */
export function evaluationSet(
  tokenizer: Tokenizer,
  padTokenId: number,
  text: string,
  o: EvaluationSetOptions,
): EvaluationSet {
  const r = validateJsonl(text, { tokenizer, maxLength: o.maxLength });
  if (r.errors.length) throw new DatasetInvalidError(r.errors, "validation_file");
  if (!r.examples.length) throw new EvaluationDataError("the evaluation set has no examples");
  return {
    batches: validationBatches(r.examples, { batchSize: o.batchSize, seed: o.seed ?? 0 }, padTokenId),
    examples: r.examples.length,
    truncated: r.examples.filter((e) => e.truncated).length,
  };
}

/**
 * Scores the weights `source` gives (a base checkpoint, or a version's: base
 * plus its delta) with the training engine's forward graph (no gradients).
 * It carries one rank-1 adapter whose factors are zero, so it adds nothing:
 * the loss is that of `source` alone.
 */
export async function scoreModel(
  source: WeightSource,
  set: EvaluationSet,
  on: { device?: Device; threads?: number } = {},
): Promise<LmScore> {
  const model = await LmTrainingModel.create(source, { rank: 1, alpha: 1, targetModules: ["q_proj"], layers: [0] }, {
    device: on.device ?? "cpu",
    threads: on.threads,
    gradients: false,
  });
  try {
    const factors = new Map<string, AdapterFactors>(
      model.adapters.map((a) => [a.name, { A: new Float32Array(a.m * a.rank), B: new Float32Array(a.n * a.rank) }]),
    );
    const parts: EvalResult[] = [];
    for (const batch of set.batches) parts.push(await model.evaluate(batch, factors));
    const { loss, count, correct = 0 } = pooled(parts);
    if (count === 0) throw new EvaluationDataError("the evaluation set has no assistant tokens to score");
    return { loss, tokenAccuracy: correct / count, tokens: count };
  } finally {
    await model.release();
  }
}
