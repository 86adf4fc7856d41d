/**
 * A fine-tuning run's data, prepared before any session is opened: both JSONL
 * files validated and tokenized with the model's tokenizer (a bad line fails
 * the run with DatasetInvalidError, listing every bad line), the training /
 * validation split, the training batch source, the validation batches and
 * the number of optimizer steps.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import { type LmBatch, LmBatchSource, makeBatches } from "./batching.ts";
import { splitTrainValidation, type TokenizedExample, validateJsonl } from "./dataset.ts";
import { DatasetInvalidError } from "./dataset_errors.ts";
import type { FineTuneConfig } from "./fine_tune_config.ts";
import type { BatchSource, DataPosition } from "./types.ts";

export interface RunData {
  train: TokenizedExample[];
  validation: TokenizedExample[];
  /** Examples (of both sets) cut to maxLength. */
  truncated: number;
  /** The training batches, in the order the trainer takes them. */
  source: CountingSource;
  /** Validation batches, sorted by length (one bucket) so they pad little. */
  validBatches: LmBatch[];
  batchesPerEpoch: number;
  /** Optimizer steps of the whole run. */
  totalSteps: number;
}

type DataOptions = Pick<
  FineTuneConfig,
  | "trainText"
  | "validationText"
  | "maxLength"
  | "seed"
  | "validationFraction"
  | "batchSize"
  | "epochs"
  | "gradientAccumulation"
>;

export function prepareData(tokenizer: Tokenizer, padTokenId: number, o: DataOptions): RunData {
  const validate = (text: string, file: "training_file" | "validation_file") => {
    const r = validateJsonl(text, { tokenizer, maxLength: o.maxLength });
    if (r.errors.length) throw new DatasetInvalidError(r.errors, file);
    return r;
  };
  const trainSet = validate(o.trainText, "training_file");
  const validSet = o.validationText === undefined ? undefined : validate(o.validationText, "validation_file");
  const { train, validation } = splitTrainValidation<TokenizedExample>(trainSet.examples, {
    seed: o.seed,
    validationFraction: o.validationFraction,
    validation: validSet?.examples,
  });
  const source = new CountingSource(
    new LmBatchSource(train, { batchSize: o.batchSize, seed: o.seed }, collateOptions(padTokenId)),
  );
  const batchesPerEpoch = source.inner.batchesIn(0);
  return {
    train,
    validation,
    truncated: train.filter((e) => e.truncated).length + validation.filter((e) => e.truncated).length,
    source,
    validBatches: validationBatches(validation, o, padTokenId),
    batchesPerEpoch,
    totalSteps: Math.max(1, Math.floor(o.epochs * batchesPerEpoch / o.gradientAccumulation)),
  };
}

function collateOptions(padTokenId: number) {
  return { padTokenId, padToMultipleOf: 8 };
}

/**
 * A validation set's batches, sorted by length (one bucket) so they pad little: what `full_valid_loss` is
 * computed over, and what an evaluation of another model on the same examples uses (lm_evaluation.ts).
 */
export function validationBatches(
  examples: readonly TokenizedExample[],
  o: Pick<FineTuneConfig, "batchSize" | "seed">,
  padTokenId: number,
): LmBatch[] {
  if (!examples.length) return [];
  return makeBatches(
    examples,
    { batchSize: o.batchSize, seed: o.seed, bucketBatches: 1 << 20 },
    collateOptions(padTokenId),
  );
}

/** Counts the tokens of the batches the trainer takes (tokens/s, trained tokens). */
export class CountingSource implements BatchSource<LmBatch> {
  tokens = 0;
  constructor(readonly inner: LmBatchSource) {}
  next(): LmBatch {
    const b = this.inner.next();
    this.tokens += b.tokens;
    return b;
  }
  position(): DataPosition {
    return this.inner.position();
  }
  seek(p: DataPosition): void {
    this.inner.seek(p);
  }
}
