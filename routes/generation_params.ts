/**
 * OpenAI request fields → engine `GenerationRequest`s: sampling parameters,
 * per-choice seeds, stop strings, the token budget clipped to the context, and
 * the prompt-length check (400 `context_length_exceeded`).
 */
import type { GenerationRequest } from "../src/serve/engine_types.ts";
import type { SamplingParams } from "../src/serve/sampler.ts";
import { badRequest } from "./errors.ts";
import { MAX_SEQUENCES } from "./schemas.ts";

/** The fields both endpoints share, after validation. */
export interface CommonParams {
  temperature?: number | null;
  top_p?: number | null;
  top_k?: number | null;
  seed?: number | null;
  presence_penalty?: number | null;
  frequency_penalty?: number | null;
  stop?: string | string[] | null;
  n?: number | null;
  ignore_eos?: boolean | null;
}

export function samplingFor(p: CommonParams, choice: number): SamplingParams {
  return {
    temperature: p.temperature ?? 1,
    topP: p.top_p ?? 1,
    topK: p.top_k ?? 0,
    // Choice i of a seeded request samples with seed + i: choices differ, and each is reproducible.
    seed: p.seed === null || p.seed === undefined ? undefined : p.seed + choice,
    presencePenalty: p.presence_penalty ?? 0,
    frequencyPenalty: p.frequency_penalty ?? 0,
  };
}

export function stopList(stop: string | string[] | null | undefined): string[] {
  if (stop === null || stop === undefined) return [];
  return (typeof stop === "string" ? [stop] : stop).filter((s) => s.length > 0);
}

export interface PromptSpec {
  ids: number[];
  /** Request param the prompt came from, for error messages. */
  param: string;
}

export interface BudgetOptions {
  contextLength: number;
  /** Requested completion tokens; undefined = fill the context. */
  maxTokens: number | undefined;
}

/** Completion budget for one prompt, or a 400 when the prompt leaves no room. */
export function completionBudget(prompt: PromptSpec, opts: BudgetOptions): number {
  if (prompt.ids.length === 0) throw badRequest("The prompt is empty", prompt.param);
  if (prompt.ids.length >= opts.contextLength) {
    throw badRequest(
      `This model's maximum context length is ${opts.contextLength} tokens. However, your prompt has ` +
        `${prompt.ids.length} tokens, which leaves no room for a completion. Please shorten the prompt.`,
      prompt.param,
      "context_length_exceeded",
    );
  }
  const room = opts.contextLength - prompt.ids.length;
  return Math.min(opts.maxTokens ?? room, room);
}

export interface SequencePlan {
  /** Choice index in the response. */
  index: number;
  promptIndex: number;
  request: Omit<GenerationRequest, "signal">;
}

/**
 * One request per (prompt, choice): choice index = promptIndex · n + i, as
 * OpenAI orders batched completions.
 */
export function planSequences(
  prompts: PromptSpec[],
  params: CommonParams,
  opts: {
    contextLength: number;
    maxTokens: number | undefined;
    logprobs?: number;
    promptLogprobs?: boolean;
    timeoutMs?: number;
  },
): SequencePlan[] {
  const n = params.n ?? 1;
  if (prompts.length * n > MAX_SEQUENCES) {
    throw badRequest(`At most ${MAX_SEQUENCES} sequences per request (prompts × n)`, "n");
  }
  const stop = stopList(params.stop);
  const plans: SequencePlan[] = [];
  prompts.forEach((prompt, p) => {
    const maxTokens = completionBudget(prompt, opts);
    for (let i = 0; i < n; i++) {
      plans.push({
        index: p * n + i,
        promptIndex: p,
        request: {
          promptIds: prompt.ids,
          maxTokens,
          sampling: samplingFor(params, i),
          stop,
          ...(params.ignore_eos ? { stopTokenIds: [] } : {}),
          logprobs: opts.logprobs,
          promptLogprobs: opts.promptLogprobs,
          timeoutMs: opts.timeoutMs,
        },
      });
    }
  });
  return plans;
}
