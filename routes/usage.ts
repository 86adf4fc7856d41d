/** Response ids/metadata and token usage totals shared by the generation routes. */
import type { DoneEvent } from "../src/serve/engine_types.ts";
import type { RequestRecord } from "./app_env.ts";

export function responseMeta(prefix: "chatcmpl" | "cmpl", model: string, systemFingerprint: string) {
  return {
    id: `${prefix}-${crypto.randomUUID().replaceAll("-", "")}`,
    created: Math.floor(Date.now() / 1000),
    model,
    system_fingerprint: systemFingerprint,
  };
}

/** The leading fields of a response or chunk, in OpenAI's order. */
export function head<O extends string>(meta: ReturnType<typeof responseMeta>, object: O) {
  return { id: meta.id, object, created: meta.created, model: meta.model, system_fingerprint: meta.system_fingerprint };
}

/** Prompt tokens count once per prompt (not once per choice, as OpenAI bills n > 1); completions add up. */
export class UsageTally {
  readonly #prompts = new Map<number, number>();
  completionTokens = 0;

  add(promptIndex: number, done: DoneEvent): void {
    this.#prompts.set(promptIndex, done.promptTokens);
    this.completionTokens += done.completionTokens;
  }

  get promptTokens(): number {
    let sum = 0;
    for (const n of this.#prompts.values()) sum += n;
    return sum;
  }

  record(into: RequestRecord): void {
    into.promptTokens = this.promptTokens;
    into.completionTokens = this.completionTokens;
  }
}

export function usageOf(t: UsageTally) {
  const prompt = t.promptTokens;
  return { prompt_tokens: prompt, completion_tokens: t.completionTokens, total_tokens: prompt + t.completionTokens };
}
