/**
 * Single-sequence generation over a CausalLM: prefill, then decode with the
 * KV cache, sampling each token, streaming text that never splits a character
 * and never shows a stop string.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { CausalLM, KvCache } from "../runtime/causal_lm.ts";
import type { SamplingParams } from "./sampler.ts";
import { type FinishReason, SequenceDecoder } from "./sequence.ts";

export type { FinishReason };

export interface GenerateOptions {
  maxTokens: number;
  sampling: SamplingParams;
  /** Token ids that end generation (default: the tokenizer's EOS ids). */
  stopTokenIds?: number[];
  /** Strings that end generation; never part of the returned text. */
  stop?: string[];
  /** Called with each new piece of visible text. */
  onText?: (delta: string) => void;
  /** Called with each sampled token id (stop tokens included), as soon as it is chosen. */
  onToken?: (id: number) => void;
}

export interface GenerateResult {
  text: string;
  tokenIds: number[];
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
}

export class GenerationError extends Error {
  override name = "GenerationError";
}

function lastRow(logits: Float32Array, vocab: number): Float32Array {
  return logits.subarray(logits.length - vocab);
}

export async function generate(
  lm: CausalLM,
  tokenizer: Tokenizer,
  promptIds: number[],
  opts: GenerateOptions,
): Promise<GenerateResult> {
  const context = lm.config.maxPositionEmbeddings;
  if (promptIds.length === 0) throw new GenerationError("the prompt is empty");
  if (promptIds.length >= context) {
    throw new GenerationError(`the prompt has ${promptIds.length} tokens; the model's context is ${context}`);
  }
  const maxTokens = Math.min(opts.maxTokens, context - promptIds.length);
  const seq = new SequenceDecoder((ids) => tokenizer.decode(ids, { skipSpecialTokens: true }), {
    maxTokens,
    sampling: opts.sampling,
    stopTokenIds: opts.stopTokenIds ?? tokenizer.eosTokenIds,
    stop: opts.stop ?? [],
  });
  const vocab = lm.config.vocabSize;

  let text = "";
  const emit = (delta: string) => {
    if (!delta) return;
    text += delta;
    opts.onText?.(delta);
  };
  let step = await lm.forward({ inputIds: [promptIds], numLogitsToKeep: 1 });
  let cache: KvCache = step.present;
  while (!seq.finished) {
    const next = seq.step(lastRow(step.logits, vocab));
    opts.onToken?.(next.id);
    emit(next.text);
    if (seq.finished) break;
    step = await lm.forward({ inputIds: [[next.id]], past: cache });
    lm.releaseCache(cache);
    cache = step.present;
  }
  lm.releaseCache(cache);
  emit(seq.finish());
  return {
    text,
    tokenIds: seq.tokenIds,
    finishReason: seq.finishReason,
    promptTokens: promptIds.length,
    completionTokens: seq.tokenIds.length,
  };
}
