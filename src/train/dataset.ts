/**
 * Fine-tuning datasets: validate + tokenize an OpenAI JSONL file in one pure
 * pass (`validateJsonl`, used by the CLI to list bad lines and by the
 * fine-tuning API to fail a job), truncate, and split train / validation.
 * Batching: batching.ts. Label conventions: example_tokenize.ts.
 *
 * Truncation keeps the first `maxLength` tokens (right truncation: the
 * system/user context that conditions the reply survives). Packing several
 * examples into one row is not implemented: the decoder's attention mask is
 * [batch, seq], so it cannot keep packed examples from attending to each
 * other; length-bucketed batching (batching.ts) cuts padding instead.
 */
import { z } from "zod";
import { Rng } from "../model/rng.ts";
import type { Tokenizer } from "../model/tokenizer.ts";
import { DatasetError, type DatasetIssue } from "./dataset_errors.ts";
import { IGNORE_INDEX, tokenizeRecord } from "./example_tokenize.ts";
import { type DatasetFormat, parseJsonl } from "./jsonl_records.ts";

export { IGNORE_INDEX } from "./example_tokenize.ts";
export type { DatasetIssue } from "./dataset_errors.ts";

export interface TokenizedExample {
  /** 1-based line of the source file. */
  line: number;
  inputIds: number[];
  /** Unshifted: the token id where trained, IGNORE_INDEX where masked; labels[0] is always masked. */
  labels: number[];
  /** Tokens with a label (the loss's denominator for this example). */
  trainableTokens: number;
  truncated: boolean;
}

export interface ValidateOptions {
  tokenizer: Tokenizer;
  /** Longest example in tokens (the training context). */
  maxLength: number;
  /** Longer examples: "truncate" (default) keeps the first maxLength tokens; "error" reports too_long. */
  overflow?: "truncate" | "error";
  /** EOS appended to completions (prompt/completion format); default the tokenizer's first EOS id. */
  eosTokenId?: number;
}

export interface ValidationResult {
  format: DatasetFormat | null;
  examples: TokenizedExample[];
  /** Every bad line, in line order. An empty list means the file is valid. */
  errors: DatasetIssue[];
  stats: { examples: number; truncated: number; tokens: number; trainableTokens: number };
}

/** Bad options (a programming or configuration error, not a data error). */
export class DatasetOptionsError extends Error {
  override readonly name = "DatasetOptionsError";
}

const OptionsSchema = z.object({
  maxLength: z.number().int().min(2),
  overflow: z.enum(["truncate", "error"]).default("truncate"),
  eosTokenId: z.number().int().nonnegative().optional(),
});

function parseOptions<T extends z.ZodType>(schema: T, value: unknown): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new DatasetOptionsError(`invalid dataset option ${first.path.join(".")}: ${first.message}`);
  }
  return r.data;
}

export function validateJsonl(text: string, options: ValidateOptions): ValidationResult {
  const { tokenizer, ...rest } = options;
  const opts = parseOptions(OptionsSchema, rest);
  const parsed = parseJsonl(text);
  const errors = [...parsed.issues];
  if (parsed.format === "chat" && !tokenizer.hasChatTemplate) {
    errors.push({ line: 0, code: "template_error", message: "the model has no chat template", param: null });
    return { format: parsed.format, examples: [], errors, stats: emptyStats() };
  }
  const examples: TokenizedExample[] = [];
  for (const record of parsed.records) {
    try {
      let { inputIds, labels } = tokenizeRecord(tokenizer, record, { eosTokenId: opts.eosTokenId });
      const truncated = inputIds.length > opts.maxLength;
      if (truncated) {
        if (opts.overflow === "error") {
          throw new DatasetError(
            "too_long",
            `the example has ${inputIds.length} tokens, more than the maximum of ${opts.maxLength}`,
          );
        }
        inputIds = inputIds.slice(0, opts.maxLength);
        labels = labels.slice(0, opts.maxLength);
      }
      const trainableTokens = labels.reduce((n, l) => n + (l === IGNORE_INDEX ? 0 : 1), 0);
      if (trainableTokens === 0) {
        throw new DatasetError(
          "no_trainable_tokens",
          truncated
            ? `no trainable token left after truncation to ${opts.maxLength} tokens`
            : "the example has no trainable token",
        );
      }
      examples.push({ line: record.line, inputIds, labels, trainableTokens, truncated });
    } catch (e) {
      if (!(e instanceof DatasetError)) throw e;
      errors.push({ line: record.line, code: e.code, message: e.message, param: e.param });
    }
  }
  errors.sort((a, b) => a.line - b.line);
  return {
    format: parsed.format,
    examples,
    errors,
    stats: {
      examples: examples.length,
      truncated: examples.filter((e) => e.truncated).length,
      tokens: examples.reduce((n, e) => n + e.inputIds.length, 0),
      trainableTokens: examples.reduce((n, e) => n + e.trainableTokens, 0),
    },
  };
}

function emptyStats(): ValidationResult["stats"] {
  return { examples: 0, truncated: 0, tokens: 0, trainableTokens: 0 };
}

export interface SplitOptions<T> {
  /** Share held out for validation when no validation set is given (default 0). */
  validationFraction?: number;
  seed: number;
  /** An explicit validation set (e.g. a validation_file): used as is, the training set is not split. */
  validation?: readonly T[];
}

const SplitSchema = z.object({
  validationFraction: z.number().min(0).max(0.9).default(0),
  seed: z.number().int(),
});

/**
 * Deterministic split: a seeded shuffle picks the held-out examples; both
 * parts keep the input order. At least one example stays in training; a
 * non-zero fraction holds out at least one.
 */
export function splitTrainValidation<T>(
  examples: readonly T[],
  opts: SplitOptions<T>,
): { train: T[]; validation: T[] } {
  const { validationFraction, seed } = parseOptions(SplitSchema, {
    validationFraction: opts.validationFraction,
    seed: opts.seed,
  });
  if (opts.validation) return { train: [...examples], validation: [...opts.validation] };
  const n = examples.length;
  if (validationFraction === 0 || n < 2) return { train: [...examples], validation: [] };
  const k = Math.min(n - 1, Math.max(1, Math.round(validationFraction * n)));
  const held = new Set(new Rng(seed, "dataset/split").shuffle([...Array(n).keys()]).slice(0, k));
  return {
    train: examples.filter((_, i) => !held.has(i)),
    validation: examples.filter((_, i) => held.has(i)),
  };
}
