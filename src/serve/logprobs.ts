/**
 * Raw log-probabilities (token ids) → the contract's `TokenLogprob`s (token
 * text and bytes), for generated tokens and for prompt tokens (echo).
 */
import type { Tokenizer } from "../model/tokenizer.ts";
import type { TokenLogprob } from "./engine_types.ts";
import { type RawLogprob, rawLogprob } from "./sequence.ts";

export type ScoredToken = TokenLogprob & { top: TokenLogprob[] };

/** Renders token ids alone, memoised: top-k logprobs render k tokens per step. */
export class TokenRenderer {
  readonly #cache = new Map<number, { token: string; bytes: number[] }>();
  readonly #encoder = new TextEncoder();

  constructor(private readonly tokenizer: Pick<Tokenizer, "decode">) {}

  render(id: number, logprob: number): TokenLogprob {
    let r = this.#cache.get(id);
    if (!r) {
      // Special tokens are shown too: a logprob entry must name the token even when the text skips it.
      const token = this.tokenizer.decode([id], { skipSpecialTokens: false });
      r = { token, bytes: [...this.#encoder.encode(token)] };
      this.#cache.set(id, r);
    }
    return { id, token: r.token, logprob, bytes: r.bytes };
  }

  scored(id: number, raw: RawLogprob): ScoredToken {
    return { ...this.render(id, raw.logprob), top: raw.top.map((t) => this.render(t.id, t.logprob)) };
  }

  /**
   * Prompt logprobs from the prefill's logits of every position
   * ([prompt.length × vocab]) and their log Σ exp: token i is scored by
   * position i − 1's distribution; the first token has none (null).
   */
  prompt(
    promptIds: number[],
    all: { logits: Float32Array; logSumExp: Float32Array },
    vocab: number,
    k: number,
  ): (ScoredToken | null)[] {
    return promptIds.map((id, i) => {
      if (i === 0) return null;
      const row = all.logits.subarray((i - 1) * vocab, i * vocab);
      return this.scored(id, rawLogprob(row, id, k, all.logSumExp[i - 1]));
    });
  }
}
