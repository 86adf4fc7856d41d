/**
 * zod schemas for the OpenAI-compatible API: request bodies (validated at the
 * edge; their `z.infer` types are what handlers see) and response shapes
 * (documented in /openapi.json). Unknown request fields are stripped, so
 * harmless OpenAI fields (`metadata`, `store`, `service_tier`, …) are accepted
 * and ignored; fields that would change semantics are declared loosely here
 * and rejected by name in `unsupported.ts`.
 */
import { z } from "@hono/zod-openapi";

/** Most sequences one request may ask for (n × prompts). */
export const MAX_SEQUENCES = 64;

// ---------- shared ----------

export const ErrorSchema = z.object({
  error: z.object({
    message: z.string(),
    type: z.string(),
    param: z.string().nullable(),
    code: z.string().nullable(),
  }),
}).openapi("Error");

export const UsageSchema = z.object({
  prompt_tokens: z.number().int(),
  completion_tokens: z.number().int(),
  total_tokens: z.number().int(),
}).openapi("Usage");

export const FinishReasonSchema = z.enum(["stop", "length"]);

const StopSchema = z.union([z.string(), z.array(z.string()).max(4)]).nullish()
  .openapi({ description: "Up to 4 strings that end generation; never part of the returned text." });

const StreamOptionsSchema = z.object({
  include_usage: z.boolean().nullish().openapi({
    description: "Send a final chunk with `usage` and empty `choices` before `data: [DONE]`.",
  }),
}).nullish();

/** Sampling and control parameters common to both generation endpoints. */
const commonParams = {
  model: z.string().min(1).openapi({ example: "HuggingFaceTB/SmolLM2-135M-Instruct" }),
  max_tokens: z.number().int().min(1).nullish().openapi({
    description: "Completion token budget; clipped to what the context leaves after the prompt.",
  }),
  temperature: z.number().min(0).max(2).nullish().openapi({ description: "0 = greedy. Default 1." }),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().min(-1).nullish().openapi({ description: "Extension (as in vLLM): ≤ 0 disables." }),
  n: z.number().int().min(1).max(MAX_SEQUENCES).nullish().openapi({
    description: "Independent sequences per prompt; with `seed`, sequence i samples with seed + i.",
  }),
  seed: z.number().int().nullish(),
  stop: StopSchema,
  stream: z.boolean().nullish(),
  stream_options: StreamOptionsSchema,
  presence_penalty: z.number().min(-2).max(2).nullish(),
  frequency_penalty: z.number().min(-2).max(2).nullish(),
  logit_bias: z.record(z.string(), z.number()).nullish().openapi({ description: "Only {} / null is supported." }),
  user: z.string().nullish(),
  ignore_eos: z.boolean().nullish().openapi({
    description: "Extension (as in vLLM): keep generating past end-of-sequence tokens, e.g. for benchmarks.",
  }),
};

// ---------- chat ----------

const ContentPartSchema = z.object({
  type: z.string(),
  text: z.string().optional(),
}).loose();

export const ChatMessageSchema = z.object({
  role: z.enum(["system", "developer", "user", "assistant", "tool", "function"]),
  content: z.union([z.string(), z.array(ContentPartSchema)]).nullish(),
  name: z.string().nullish(),
  tool_calls: z.array(z.unknown()).nullish(),
}).openapi("ChatMessage");

export const ChatCompletionRequestSchema = z.object({
  ...commonParams,
  messages: z.array(ChatMessageSchema).min(1),
  max_completion_tokens: z.number().int().min(1).nullish().openapi({ description: "Alias of max_tokens (wins)." }),
  logprobs: z.boolean().nullish(),
  top_logprobs: z.number().int().min(0).max(20).nullish(),
  // Declared so they can be rejected by name (see unsupported.ts).
  tools: z.array(z.unknown()).nullish(),
  tool_choice: z.unknown().optional(),
  functions: z.array(z.unknown()).nullish(),
  function_call: z.unknown().optional(),
  response_format: z.object({ type: z.string() }).loose().nullish(),
  audio: z.unknown().optional(),
  modalities: z.array(z.string()).nullish(),
  prediction: z.unknown().optional(),
}).openapi("ChatCompletionRequest");

export type ChatCompletionRequest = z.infer<typeof ChatCompletionRequestSchema>;
export type ChatMessageInput = z.infer<typeof ChatMessageSchema>;

const TopLogprobSchema = z.object({
  token: z.string(),
  logprob: z.number(),
  bytes: z.array(z.number().int()).nullable(),
});

export const ChatLogprobsSchema = z.object({
  content: z.array(TopLogprobSchema.extend({ top_logprobs: z.array(TopLogprobSchema) })).nullable(),
}).openapi("ChatLogprobs");
export type ChatLogprobs = z.infer<typeof ChatLogprobsSchema>;

export const ChatCompletionSchema = z.object({
  id: z.string(),
  object: z.literal("chat.completion"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    message: z.object({ role: z.literal("assistant"), content: z.string(), refusal: z.null() }),
    logprobs: ChatLogprobsSchema.nullable(),
    finish_reason: FinishReasonSchema,
  })),
  usage: UsageSchema,
}).openapi("ChatCompletion");
export type ChatCompletion = z.infer<typeof ChatCompletionSchema>;

export const ChatCompletionChunkSchema = z.object({
  id: z.string(),
  object: z.literal("chat.completion.chunk"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string(),
  choices: z.array(z.object({
    index: z.number().int(),
    delta: z.object({ role: z.literal("assistant").optional(), content: z.string().optional() }),
    logprobs: ChatLogprobsSchema.nullable(),
    finish_reason: FinishReasonSchema.nullable(),
  })),
  usage: UsageSchema.nullish(),
}).openapi("ChatCompletionChunk");
export type ChatCompletionChunk = z.infer<typeof ChatCompletionChunkSchema>;

// ---------- completions ----------

export const CompletionRequestSchema = z.object({
  ...commonParams,
  prompt: z.union([
    z.string(),
    z.array(z.string()).min(1),
    z.array(z.number().int().min(0)).min(1),
    z.array(z.array(z.number().int().min(0)).min(1)).min(1),
  ]).openapi({ description: "A string, strings (a batch), token ids, or lists of token ids (a batch)." }),
  // 0 is allowed here: `echo` + `logprobs` with no completion scores a prompt.
  max_tokens: z.number().int().min(0).nullish(),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(5).nullish(),
  suffix: z.string().nullish(),
  best_of: z.number().int().min(1).nullish(),
}).openapi("CompletionRequest");
export type CompletionRequest = z.infer<typeof CompletionRequestSchema>;

export const LegacyLogprobsSchema = z.object({
  tokens: z.array(z.string()),
  token_logprobs: z.array(z.number().nullable()),
  top_logprobs: z.array(z.record(z.string(), z.number()).nullable()),
  text_offset: z.array(z.number().int()),
}).openapi("CompletionLogprobs");
export type LegacyLogprobs = z.infer<typeof LegacyLogprobsSchema>;

const CompletionChoiceSchema = z.object({
  index: z.number().int(),
  text: z.string(),
  logprobs: LegacyLogprobsSchema.nullable(),
  finish_reason: FinishReasonSchema.nullable(),
});

export const CompletionSchema = z.object({
  id: z.string(),
  object: z.literal("text_completion"),
  created: z.number().int(),
  model: z.string(),
  system_fingerprint: z.string(),
  choices: z.array(CompletionChoiceSchema),
  usage: UsageSchema.nullish(),
}).openapi("Completion");
export type Completion = z.infer<typeof CompletionSchema>;

// ---------- models ----------

export const ModelSchema = z.object({
  id: z.string(),
  object: z.literal("model"),
  created: z.number().int(),
  owned_by: z.string(),
}).openapi("Model");

export const ModelDeletedSchema = z.object({
  id: z.string(),
  object: z.literal("model"),
  deleted: z.boolean(),
}).openapi("ModelDeleted");

export const ModelListSchema = z.object({
  object: z.literal("list"),
  data: z.array(ModelSchema),
}).openapi("ModelList");
