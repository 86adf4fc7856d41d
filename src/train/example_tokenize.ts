/**
 * Records → token ids + label masks.
 *
 * Labels are unshifted (HF convention): `labels[t]` is `input_ids[t]` where
 * token t is trained and IGNORE_INDEX elsewhere; the training graph shifts
 * (logits at t predict labels[t + 1]). `labels[0]` is always IGNORE_INDEX:
 * nothing predicts the first token.
 *
 * Chat: the whole conversation is rendered once with the model's chat
 * template; each trained assistant message (weight 1) gets the span
 *   [end of its generation prompt, its end-of-turn token]  (inclusive),
 * so the model learns the reply and to stop (`<|im_end|>`, `<|eot_id|>`,
 * `</s>`); the newline a template writes after that token is not trained.
 * - Span start: the conversation before the message is rendered with
 *   `add_generation_prompt` and must be a token prefix of the full render
 *   (prefix renders diffed at the token level, so the mask is exact even
 *   where BPE could merge across a text boundary). If no such render is a
 *   prefix, the longest common prefix is used: a token straddling the
 *   boundary is trained.
 * - Span end: the first end-of-turn token after the start. Content holding a
 *   special token's text is rejected, so that token is the message's own.
 * - Qwen3 `<think>`: Qwen3's template gives the last assistant turn (the one
 *   after the last user message) an empty `<think>\n\n</think>\n\n` and
 *   renders earlier turns without one. The prompt render is tried first with
 *   `enable_thinking=false`, whose generation prompt ends with exactly that
 *   empty block: when it is a prefix, the empty block is part of the prompt
 *   (masked), as at inference in non-thinking mode. An assistant message with
 *   its own `<think>…</think>` reasoning in the last turn is rendered with
 *   that reasoning, which is then trained; in earlier turns the template
 *   drops reasoning, so only the answer is trained.
 *
 * Prompt/completion: [BOS if the tokenizer has one] + prompt (masked) +
 * completion + EOS (trained). Prompt and completion are tokenized separately
 * so the boundary is exact (as OpenAI's legacy format assumed).
 */
import { type ChatMessage, ChatTemplateError, type ChatTemplateOptions, type Tokenizer } from "../model/tokenizer.ts";
import { DatasetError } from "./dataset_errors.ts";
import type { ChatTurn, DatasetRecord } from "./jsonl_records.ts";

export const IGNORE_INDEX = -100;

export interface TokenizedSequence {
  inputIds: number[];
  labels: number[];
}

/** What the masker needs to know about a tokenizer, computed once per tokenizer. */
export interface TokenizerTraits {
  /** Texts of special tokens, which example text must not contain. */
  specialTexts: string[];
  /** Tokens that close an assistant turn: the EOS ids plus the template's own closing token. */
  endOfTurnIds: Set<number>;
}

const traitsCache = new WeakMap<Tokenizer, TokenizerTraits>();

export function tokenizerTraits(tok: Tokenizer): TokenizerTraits {
  const hit = traitsCache.get(tok);
  if (hit) return hit;
  const specialTexts: string[] = [];
  for (let id = 0; id < tok.vocabSize; id++) {
    const text = tok.isSpecial(id) ? tok.idToToken(id) : null;
    if (text) specialTexts.push(text);
  }
  const endOfTurnIds = new Set(tok.eosTokenIds);
  // The token a template closes an assistant turn with can differ from EOS
  // (a base model's `<|endoftext|>` vs ChatML's `<|im_end|>`): probe it.
  if (tok.hasChatTemplate) {
    try {
      const ids = tok.encodeChat([{ role: "user", content: "x" }, { role: "assistant", content: "y" }]);
      for (let i = ids.length - 1; i >= 0; i--) {
        if (tok.decode([ids[i]]).trim() === "") continue;
        if (tok.isSpecial(ids[i])) endOfTurnIds.add(ids[i]);
        break;
      }
    } catch {
      // A template that cannot render the probe fails later, per example, as template_error.
    }
  }
  const traits = { specialTexts, endOfTurnIds };
  traitsCache.set(tok, traits);
  return traits;
}

export interface TokenizeOptions {
  /** Appended to completions (prompt/completion format); default the tokenizer's first EOS id. */
  eosTokenId?: number;
}

export function tokenizeRecord(tok: Tokenizer, record: DatasetRecord, opts: TokenizeOptions = {}): TokenizedSequence {
  const traits = tokenizerTraits(tok);
  if (record.format === "chat") {
    record.messages.forEach((m, i) => checkSpecials(traits, m.content, `messages[${i}].content`));
    return tokenizeChat(tok, traits, record.messages);
  }
  checkSpecials(traits, record.prompt, "prompt");
  checkSpecials(traits, record.completion, "completion");
  const eos = opts.eosTokenId ?? tok.eosTokenIds[0];
  if (eos === undefined) throw new DatasetError("template_error", "the tokenizer has no EOS token to end completions");
  const prompt = [...(tok.bosTokenId === null ? [] : [tok.bosTokenId]), ...tok.encode(record.prompt, NO_SPECIALS)];
  const completion = [...tok.encode(record.completion, NO_SPECIALS), eos];
  const labels = [...prompt.map(() => IGNORE_INDEX), ...completion];
  labels[0] = IGNORE_INDEX;
  return { inputIds: [...prompt, ...completion], labels };
}

const NO_SPECIALS = { addSpecialTokens: false };

function checkSpecials(traits: TokenizerTraits, text: string, param: string): void {
  const hit = traits.specialTexts.find((s) => text.includes(s));
  if (hit) throw new DatasetError("invalid_content", `text contains the special token ${hit}`, param);
}

function render(tok: Tokenizer, messages: ChatMessage[], opts?: ChatTemplateOptions): number[] {
  try {
    return tok.encodeChat(messages, opts);
  } catch (e) {
    if (e instanceof ChatTemplateError) throw new DatasetError("template_error", e.message, "messages");
    throw e;
  }
}

function tokenizeChat(tok: Tokenizer, traits: TokenizerTraits, turns: ChatTurn[]): TokenizedSequence {
  const messages: ChatMessage[] = turns.map(({ role, content }) => ({ role, content }));
  const ids = render(tok, messages);
  const labels: number[] = ids.map(() => IGNORE_INDEX);
  let from = 0;
  turns.forEach((turn, i) => {
    if (turn.role !== "assistant" || turn.weight === 0) return;
    const start = Math.max(from, promptEnd(tok, messages.slice(0, i), ids));
    let end = start;
    while (end < ids.length && !traits.endOfTurnIds.has(ids[end])) end++;
    if (end === ids.length) {
      throw new DatasetError(
        "template_error",
        "the chat template wrote no end-of-turn token after this assistant message",
        `messages[${i}]`,
      );
    }
    for (let t = Math.max(start, 1); t <= end; t++) labels[t] = ids[t];
    from = end + 1;
  });
  return { inputIds: ids, labels };
}

/** Generation prompts tried in order; the first that is a token prefix of the full render wins. */
const PROMPT_RENDERS: ChatTemplateOptions[] = [
  { addGenerationPrompt: true, templateKwargs: { enable_thinking: false } },
  { addGenerationPrompt: true },
];

/** Token index where the assistant message after `before` starts in `ids`. */
function promptEnd(tok: Tokenizer, before: ChatMessage[], ids: number[]): number {
  let plain: number[] | null = null;
  for (const opts of PROMPT_RENDERS) {
    let prompt: number[];
    try {
      prompt = tok.encodeChat(before, opts);
    } catch (e) {
      if (e instanceof ChatTemplateError) continue;
      throw e;
    }
    const common = commonPrefix(prompt, ids);
    if (common === prompt.length) return common;
    plain = prompt;
  }
  if (plain === null) {
    throw new DatasetError("template_error", "the chat template cannot render the conversation's prefix", "messages");
  }
  return commonPrefix(plain, ids);
}

function commonPrefix(a: readonly number[], b: readonly number[]): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
