/**
 * One sequence's token-by-token state machine, independent of how logits are
 * computed: sample from the last position's logits, track penalties'
 * history, detokenize incrementally, match stop strings, count the budget.
 * Shared by the single-sequence loop (generate.ts) and the batching engine
 * (scheduler.ts), so both produce the same tokens and text.
 */
import { type DecodeFn, IncrementalDetokenizer } from "./detokenizer.ts";
import { logSumExp, Rng, sampleToken, type SamplingParams, type TokenHistory, topKIndices } from "./sampler.ts";
import { StopMatcher } from "./stop_matcher.ts";

export type FinishReason = "stop" | "length";

export interface SequenceOptions {
  /** Completion budget, already clipped to the context. */
  maxTokens: number;
  sampling: SamplingParams;
  stopTokenIds: Iterable<number>;
  stop: string[];
  /** undefined = no logprobs; 0 = the chosen token's; k > 0 = also the top k. */
  logprobs?: number;
}

export interface RawLogprob {
  logprob: number;
  /** Top alternatives, descending. */
  top: { id: number; logprob: number }[];
}

export interface SequenceStep {
  id: number;
  /** A stop token: it ends the sequence and is not part of the output. */
  isStopToken: boolean;
  /** Newly visible text ("" while held back). */
  text: string;
  /**
   * When logprobs were asked for: computes them from this step's logits (a
   * full pass over the vocabulary), so a caller can do it off its critical
   * path. The logits must stay unchanged until then.
   */
  logprob?: () => RawLogprob;
}

export class SequenceDecoder {
  readonly tokenIds: number[] = [];
  readonly #opts: SequenceOptions;
  readonly #stopIds: Set<number>;
  readonly #rng: Rng;
  readonly #history: TokenHistory = { counts: new Map() };
  readonly #detok: IncrementalDetokenizer;
  readonly #stops: StopMatcher;
  #finished: boolean;
  #finishReason: FinishReason = "length";
  #stoppedByString = false;
  #flushed = false;

  constructor(decode: DecodeFn, opts: SequenceOptions) {
    this.#opts = opts;
    this.#stopIds = new Set(opts.stopTokenIds);
    this.#rng = new Rng(opts.sampling.seed ?? Math.floor(Math.random() * 2 ** 48));
    this.#detok = new IncrementalDetokenizer(decode);
    this.#stops = new StopMatcher(opts.stop);
    this.#finished = opts.maxTokens <= 0;
  }

  /** No more tokens are wanted (stop token, stop string or budget); call `finish()`. */
  get finished(): boolean {
    return this.#finished;
  }

  get finishReason(): FinishReason {
    return this.#finishReason;
  }

  /**
   * Consumes the raw logits of the latest position and picks the next token.
   * `logSumExp` (log Σ exp of `logits`, when the model computed it) spares
   * logprobs a pass over the vocabulary.
   */
  step(logits: Float32Array, logSumExp?: number): SequenceStep {
    if (this.#finished) throw new Error("the sequence is finished");
    const id = sampleToken(logits, this.#opts.sampling, this.#rng, this.#history);
    // Logprobs describe the model's distribution: log-softmax of the raw
    // logits, before penalties, temperature and top-k/top-p (as OpenAI does).
    const k = this.#opts.logprobs;
    const logprob = k === undefined ? undefined : () => rawLogprob(logits, id, k, logSumExp);
    if (this.#stopIds.has(id)) {
      this.#finished = true;
      this.#finishReason = "stop";
      return { id, isStopToken: true, text: "", logprob };
    }
    this.tokenIds.push(id);
    this.#history.counts.set(id, (this.#history.counts.get(id) ?? 0) + 1);
    const piece = this.#stops.push(this.#detok.push(id));
    if (piece.stopped) {
      this.#finished = true;
      this.#finishReason = "stop";
      this.#stoppedByString = true;
    } else if (this.tokenIds.length >= this.#opts.maxTokens) {
      this.#finished = true;
    }
    return { id, isStopToken: false, text: piece.emit, logprob };
  }

  /**
   * Ends the sequence (finished or not): the text still held back for an
   * incomplete character or a partial stop match. Only the first call returns it.
   */
  finish(): string {
    this.#finished = true;
    if (this.#flushed || this.#stoppedByString) return "";
    this.#flushed = true;
    const tail = this.#stops.push(this.#detok.flush());
    if (tail.stopped) {
      this.#finishReason = "stop";
      return tail.emit;
    }
    return tail.emit + this.#stops.flush();
  }
}

/**
 * Log-probability of `id` and the top `k` tokens under the raw logits
 * (log-softmax, never materialized). `knownLogSumExp`, when finite, is used
 * instead of a pass over the logits; degenerate rows (all -Infinity, NaN or
 * +Infinity logits) are always examined here.
 */
export function rawLogprob(logits: Float32Array, id: number, k: number, knownLogSumExp?: number): RawLogprob {
  const lse = Number.isFinite(knownLogSumExp) ? knownLogSumExp! : logSumExp(logits);
  // All -Infinity: every token is impossible (as logSoftmax reports it); NaN/+Infinity logits give NaN.
  const lp = (i: number) => lse === -Infinity ? -Infinity : logits[i] - lse;
  return { logprob: lp(id), top: Array.from(topKIndices(logits, k), (i) => ({ id: i, logprob: lp(i) })) };
}
