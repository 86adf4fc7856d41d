/**
 * Engine log-probabilities → the two OpenAI shapes: chat's
 * `{content: [{token, logprob, bytes, top_logprobs}]}` and the legacy
 * completions `{tokens, token_logprobs, top_logprobs, text_offset}`.
 */
import type { TokenLogprob } from "../src/serve/engine_types.ts";
import type { ChatLogprobs, LegacyLogprobs } from "./schemas.ts";

type Scored = TokenLogprob & { top: TokenLogprob[] };
type ChatEntry = NonNullable<ChatLogprobs["content"]>[number];

/** JSON has no -Infinity; OpenAI reports impossible tokens as -9999. */
const finite = (x: number) => (Number.isFinite(x) ? x : -9999);

export function chatLogprobEntry(lp: Scored): ChatEntry {
  return {
    token: lp.token,
    logprob: finite(lp.logprob),
    bytes: lp.bytes,
    top_logprobs: lp.top.map((t) => ({ token: t.token, logprob: finite(t.logprob), bytes: t.bytes })),
  };
}

function topRecord(lp: Scored, k: number): Record<string, number> {
  const out: Record<string, number> = {};
  // The legacy shape keys by token text: equal strings collapse, as in OpenAI.
  for (const t of lp.top.slice(0, k)) if (!(t.token in out)) out[t.token] = finite(t.logprob);
  return out;
}

/** Accumulates the legacy shape; text offsets count UTF-16 code units of the choice's text. */
export class LegacyLogprobsBuilder {
  readonly #out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  #offset: number;

  constructor(private readonly k: number, startOffset = 0) {
    this.#offset = startOffset;
  }

  /** A prompt token (echo); null = the first token, which has no logprob. */
  addPrompt(lp: Scored | null, tokenText: string): void {
    this.#out.tokens.push(lp?.token ?? tokenText);
    this.#out.token_logprobs.push(lp ? finite(lp.logprob) : null);
    this.#out.top_logprobs.push(lp ? topRecord(lp, this.k) : null);
    this.#out.text_offset.push(this.#offset);
    this.#offset += tokenText.length;
  }

  /** A generated token and the visible text it added. */
  add(lp: Scored, visibleText: string): void {
    this.#out.tokens.push(lp.token);
    this.#out.token_logprobs.push(finite(lp.logprob));
    this.#out.top_logprobs.push(topRecord(lp, this.k));
    this.#out.text_offset.push(this.#offset);
    this.#offset += visibleText.length;
  }

  /** Text that arrives without a token (held-back text released at the end). */
  advance(text: string): void {
    this.#offset += text.length;
  }

  /** The accumulated entries; `take()` also resets them (streaming sends each chunk's own). */
  take(): LegacyLogprobs {
    const out = { ...this.#out };
    this.#out.tokens = [];
    this.#out.token_logprobs = [];
    this.#out.top_logprobs = [];
    this.#out.text_offset = [];
    return out;
  }
}
