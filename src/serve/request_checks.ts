/**
 * Admission checks for a GenerationRequest: everything that can be refused
 * with a 400 before the request takes a queue slot, so nothing invalid ever
 * reaches the model worker (an out-of-range id would fail inside a step).
 */
import { type GenerationRequest, InvalidRequestError } from "./engine_types.ts";

export interface ModelLimits {
  contextLength: number;
  vocabSize: number;
}

/** The budget the engine actually uses: `maxTokens` clipped so prompt + completion fit the context. */
export function checkRequest(req: GenerationRequest, limits: ModelLimits): { maxTokens: number } {
  const { promptIds } = req;
  if (!Array.isArray(promptIds) || promptIds.length === 0) {
    throw new InvalidRequestError("the prompt is empty", "prompt");
  }
  for (const id of promptIds) {
    if (!Number.isInteger(id) || id < 0 || id >= limits.vocabSize) {
      throw new InvalidRequestError(
        `prompt token id ${id} is outside the vocabulary [0, ${limits.vocabSize})`,
        "prompt",
      );
    }
  }
  if (promptIds.length >= limits.contextLength) {
    throw new InvalidRequestError(
      `the prompt has ${promptIds.length} tokens, but the model's context is ${limits.contextLength} tokens ` +
        `(at least one must remain for the completion)`,
      null,
    );
  }
  if (!Number.isInteger(req.maxTokens) || req.maxTokens < 0) {
    throw new InvalidRequestError(`max tokens must be a non-negative integer, got ${req.maxTokens}`, "max_tokens");
  }
  const s = req.sampling;
  if (!(s.temperature >= 0) || !Number.isFinite(s.temperature)) {
    throw new InvalidRequestError(`temperature must be finite and >= 0, got ${s.temperature}`, "temperature");
  }
  if (Number.isNaN(s.topP)) throw new InvalidRequestError("top_p must be a number", "top_p");
  if (!Number.isFinite(s.topK)) throw new InvalidRequestError("top_k must be a number", "top_k");
  const rep = s.repetitionPenalty ?? 1;
  if (!(rep > 0) || !Number.isFinite(rep)) {
    throw new InvalidRequestError(`repetition penalty must be > 0, got ${rep}`, "repetition_penalty");
  }
  for (
    const [name, v] of [["presence_penalty", s.presencePenalty], ["frequency_penalty", s.frequencyPenalty]] as const
  ) {
    if (v !== undefined && !Number.isFinite(v)) throw new InvalidRequestError(`${name} must be finite`, name);
  }
  if (s.seed !== undefined && !Number.isSafeInteger(s.seed)) {
    throw new InvalidRequestError(`seed must be an integer, got ${s.seed}`, "seed");
  }
  if (req.logprobs !== undefined && (!Number.isInteger(req.logprobs) || req.logprobs < 0)) {
    throw new InvalidRequestError(`logprobs must be a non-negative integer, got ${req.logprobs}`, "logprobs");
  }
  if (req.timeoutMs !== undefined && !(req.timeoutMs > 0)) {
    throw new InvalidRequestError(`timeout must be > 0 ms, got ${req.timeoutMs}`, null);
  }
  return { maxTokens: Math.min(req.maxTokens, limits.contextLength - promptIds.length) };
}
