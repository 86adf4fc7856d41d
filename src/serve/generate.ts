/**
 * Single-sequence generation over a CausalLM: prefill, then decode with the
 * KV cache, sampling each token, streaming text that never splits a character
 * and never shows a stop string.
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { CausalLM, KvCache } from "./causal_lm.ts";
import { IncrementalDetokenizer } from "./detokenizer.ts";
import { Rng, sampleToken, type SamplingParams, type TokenHistory } from "./sampler.ts";
import { StopMatcher } from "./stop_matcher.ts";

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

export type FinishReason = "stop" | "length";

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
  const stopIds = new Set(opts.stopTokenIds ?? tokenizer.eosTokenIds);
  const rng = new Rng(opts.sampling.seed ?? Math.floor(Math.random() * 2 ** 48));
  const history: TokenHistory = { counts: new Map() };
  const detok = new IncrementalDetokenizer((ids) => tokenizer.decode(ids, { skipSpecialTokens: true }));
  const stops = new StopMatcher(opts.stop ?? []);
  const vocab = lm.config.vocabSize;

  let text = "";
  const emit = (delta: string) => {
    if (!delta) return;
    text += delta;
    opts.onText?.(delta);
  };
  const tokenIds: number[] = [];
  let finishReason: FinishReason = "length";
  let stoppedByString = false;
  let step = await lm.forward({ inputIds: [promptIds] });
  let cache: KvCache = step.present;
  while (tokenIds.length < maxTokens) {
    const next = sampleToken(lastRow(step.logits, vocab), opts.sampling, rng, history);
    opts.onToken?.(next);
    if (stopIds.has(next)) {
      finishReason = "stop";
      break;
    }
    tokenIds.push(next);
    history.counts.set(next, (history.counts.get(next) ?? 0) + 1);
    const piece = stops.push(detok.push(next));
    emit(piece.emit);
    if (piece.stopped) {
      finishReason = "stop";
      stoppedByString = true;
      break;
    }
    if (tokenIds.length >= maxTokens) break;
    step = await lm.forward({ inputIds: [[next]], past: cache });
    cache = step.present;
  }
  if (!stoppedByString) {
    // Text held back for an incomplete character or a partial stop match.
    const tail = stops.push(detok.flush());
    emit(tail.emit);
    if (tail.stopped) finishReason = "stop";
    else emit(stops.flush());
  }
  return { text, tokenIds, finishReason, promptTokens: promptIds.length, completionTokens: tokenIds.length };
}
