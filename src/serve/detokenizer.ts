/**
 * Incremental detokenization for streaming, using the prefix-offset /
 * read-offset window technique (as in HF text-generation-inference and vLLM).
 *
 * Tokens are decoded in a small window `ids[prefix:]`; the text of
 * `ids[prefix:read]` was already emitted, so the new text is the decoded
 * window minus that prefix. Decoding with one token of left context keeps
 * context-dependent output right (sentencepiece drops the leading space of
 * the first token; cleanup may merge " ," into ","). While the window's text
 * ends with U+FFFD (an incomplete UTF-8 sequence, e.g. half an emoji, or
 * bytes that are not UTF-8 at all) that trailing run is held back, but the
 * text before it is emitted: UTF-8 decoding is self-synchronising, so later
 * bytes cannot change it. (Holding everything instead stalls a stream for as
 * long as a model keeps producing stray bytes.) Cost per token is O(window),
 * not O(total).
 */

/** Decodes ids to text; must decode an incomplete UTF-8 tail as U+FFFD (like a non-fatal TextDecoder). */
export type DecodeFn = (ids: number[]) => string;

export interface DetokenizerOptions {
  /**
   * Ids already shown to the user (typically the prompt) to use as left
   * context, so the first generated token decodes as it would mid-text (e.g.
   * keeps its leading space). Their text is never returned. Only the last
   * `CONTEXT_TOKENS` are used.
   */
  context?: number[];
}

/** Left-context tokens kept from `opts.context`; vLLM uses 5 as well. */
export const CONTEXT_TOKENS = 5;

const REPLACEMENT_CHAR = "\uFFFD";

export class IncrementalDetokenizer {
  readonly #decode: DecodeFn;
  /** The window: ids[0] is the prefix offset; everything before it is dropped. */
  #ids: number[];
  /** ids[0:readOffset] have been emitted. */
  #readOffset: number;
  /** decode(ids[0:readOffset]), cached so each push decodes once. */
  #prefixText: string;
  /** Characters of the window's text emitted so far (≥ prefixText.length: text before a held-back tail). */
  #emitted: number;

  constructor(decode: DecodeFn, opts?: DetokenizerOptions) {
    this.#decode = decode;
    this.#ids = (opts?.context ?? []).slice(-CONTEXT_TOKENS);
    this.#readOffset = this.#ids.length;
    this.#prefixText = this.#ids.length > 0 ? decode(this.#ids) : "";
    this.#emitted = this.#prefixText.length;
  }

  /** Adds one token; returns the text it completed (possibly ""). */
  push(id: number): string {
    this.#ids.push(id);
    const text = this.#decode(this.#ids);
    if (text.endsWith(REPLACEMENT_CHAR)) {
      // Hold the trailing run (it may still become a character); emit what precedes it.
      let stable = text.length;
      while (stable > this.#emitted && text[stable - 1] === REPLACEMENT_CHAR) stable--;
      const delta = text.slice(this.#emitted, stable);
      this.#emitted = Math.max(this.#emitted, stable);
      return delta;
    }
    if (text.length > this.#prefixText.length) return this.#advance(text);
    if (text === this.#prefixText) {
      // The token adds no text (e.g. a skipped special token): mark it read
      // so runs of such tokens do not grow the window.
      this.#readOffset = this.#ids.length;
    }
    return "";
  }

  /** End of stream: any held-back text (an incomplete tail decodes as U+FFFD). */
  flush(): string {
    if (this.#readOffset === this.#ids.length) return "";
    const text = this.#decode(this.#ids);
    return text.length > this.#emitted ? this.#advance(text) : "";
  }

  /** Emits text beyond the prefix and slides the window: new prefix = old read offset. */
  #advance(text: string): string {
    const delta = text.slice(this.#emitted);
    this.#ids = this.#ids.slice(this.#readOffset);
    this.#readOffset = this.#ids.length;
    this.#prefixText = this.#decode(this.#ids);
    this.#emitted = this.#prefixText.length;
    return delta;
  }
}
