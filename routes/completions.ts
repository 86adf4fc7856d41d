/** OpenAI legacy `POST /v1/completions`: batched prompts, `echo`, legacy logprobs, SSE streaming. */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { Tokenizer } from "../src/model/tokenizer.ts";
import type { AppEnv, GenerationContext } from "./app_env.ts";
import { badRequest, modelNotFound } from "./errors.ts";
import { planSequences, type PromptSpec } from "./generation_params.ts";
import { LegacyLogprobsBuilder } from "./logprobs.ts";
import { authRoute, errorResponses } from "./openapi_common.ts";
import {
  type Completion,
  type CompletionRequest,
  CompletionRequestSchema,
  CompletionSchema,
  type LegacyLogprobs,
} from "./schemas.ts";
import { SequenceGroup } from "./sequences.ts";
import { sseResponse } from "./sse.ts";
import { checkCompletionSupported } from "./unsupported.ts";
import { head, responseMeta, usageOf, UsageTally } from "./usage.ts";

const route = authRoute({
  method: "post",
  path: "/v1/completions",
  summary: "Text completion (OpenAI-compatible, legacy)",
  request: { body: { content: { "application/json": { schema: CompletionRequestSchema } }, required: true } },
  responses: {
    200: {
      description: "A completion, or with `stream: true` an SSE stream of completion chunks ending in `data: [DONE]`.",
      content: {
        "application/json": { schema: CompletionSchema },
        "text/event-stream": { schema: CompletionSchema },
      },
    },
    ...errorResponses,
  },
});

/** OpenAI's default completion budget for this endpoint. */
const DEFAULT_MAX_TOKENS = 16;

interface Prompt extends PromptSpec {
  /** What `echo` shows: the prompt string, or the decoded token ids. */
  text: string;
}

function parsePrompts(prompt: CompletionRequest["prompt"], tokenizer: Tokenizer): Prompt[] {
  const fromIds = (ids: number[], param: string): Prompt => {
    const bad = ids.findIndex((id) => id >= tokenizer.vocabSize);
    if (bad >= 0) throw badRequest(`Token id ${ids[bad]} is out of range (vocab size ${tokenizer.vocabSize})`, param);
    return { ids, param, text: tokenizer.decode(ids) };
  };
  const fromText = (text: string, param: string): Prompt => ({ ids: tokenizer.encode(text), param, text });
  if (typeof prompt === "string") return [fromText(prompt, "prompt")];
  if (prompt.every((p) => typeof p === "string")) return prompt.map((p, i) => fromText(p, `prompt[${i}]`));
  if (prompt.every((p) => typeof p === "number")) return [fromIds(prompt, "prompt")];
  return prompt.map((p, i) => fromIds(p as number[], `prompt[${i}]`));
}

export function completionRoutes(ctx: GenerationContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(route, async (c) => {
    const body = c.req.valid("json");
    checkCompletionSupported(body);
    const model = await ctx.models.resolve(body.model);
    if (!model) throw modelNotFound(body.model);
    c.var.record.model = model.id;
    const prompts = parsePrompts(body.prompt, model.tokenizer);
    const k = body.logprobs ?? undefined;
    const plans = planSequences(prompts, body, {
      contextLength: model.engine.contextLength,
      maxTokens: body.max_tokens ?? DEFAULT_MAX_TOKENS,
      logprobs: k,
      promptLogprobs: body.echo === true && k !== undefined,
      timeoutMs: ctx.requestTimeoutMs,
    });
    const group = SequenceGroup.start(
      model.engine,
      plans.map((p) => p.request),
      c.req.raw.signal,
      ctx.timing(model.id),
    );
    await group.ready();
    const run: Run = {
      body,
      group,
      meta: responseMeta("cmpl", model.id, ctx.systemFingerprint),
      promptOf: plans.map((p) => prompts[p.promptIndex]),
      promptIndexOf: plans.map((p) => p.promptIndex),
      tokenizer: model.tokenizer,
    };
    if (body.stream) return streamCompletion(c, run);
    return c.json(await collectCompletion(c, run), 200);
  });
  return app;
}

interface Run {
  body: CompletionRequest;
  group: SequenceGroup;
  meta: ReturnType<typeof responseMeta>;
  /** Per choice index. */
  promptOf: Prompt[];
  promptIndexOf: number[];
  tokenizer: Tokenizer;
}

async function collectCompletion(c: Context<AppEnv>, run: Run): Promise<Completion> {
  const { body, promptOf } = run;
  const k = body.logprobs ?? null;
  const echo = body.echo === true;
  const n = promptOf.length;
  const texts = promptOf.map((p) => (echo ? p.text : ""));
  // Echoed prompt logprobs arrive with the done event but come first in the output.
  const generated = promptOf.map((p) => new LegacyLogprobsBuilder(k ?? 0, echo ? p.text.length : 0));
  const logprobs: (LegacyLogprobs | null)[] = new Array(n).fill(null);
  const finish = new Array<"stop" | "length">(n).fill("length");
  const tally = new UsageTally();
  for await (const { index, event } of run.group.events()) {
    texts[index] += event.text;
    if (event.type === "token") {
      if (event.logprob) generated[index].add(event.logprob, event.text);
      continue;
    }
    generated[index].advance(event.text);
    finish[index] = event.finishReason;
    tally.add(run.promptIndexOf[index], event);
    if (k === null) continue;
    const gen = generated[index].take();
    if (!echo) {
      logprobs[index] = gen;
      continue;
    }
    const prompt = new LegacyLogprobsBuilder(k);
    const ids = promptOf[index].ids;
    (event.promptLogprobs ?? ids.map(() => null)).forEach((lp, j) =>
      prompt.addPrompt(lp, lp?.token ?? run.tokenizer.decode([ids[j]]))
    );
    const head = prompt.take();
    logprobs[index] = {
      tokens: [...head.tokens, ...gen.tokens],
      token_logprobs: [...head.token_logprobs, ...gen.token_logprobs],
      top_logprobs: [...head.top_logprobs, ...gen.top_logprobs],
      text_offset: [...head.text_offset, ...gen.text_offset],
    };
  }
  tally.record(c.var.record);
  return {
    ...head(run.meta, "text_completion"),
    choices: texts.map((text, index) => ({ index, text, logprobs: logprobs[index], finish_reason: finish[index] })),
    usage: usageOf(tally),
  };
}

function streamCompletion(c: Context<AppEnv>, run: Run): Response {
  const { body, promptOf } = run;
  const includeUsage = body.stream_options?.include_usage === true;
  const k = body.logprobs ?? null;
  const chunk = (choices: Completion["choices"]): Completion => ({
    ...head(run.meta, "text_completion"),
    choices,
    ...(includeUsage ? { usage: null } : {}),
  });
  return sseResponse(c, run.group, async (send) => {
    const tally = new UsageTally();
    const builders = promptOf.map((p) => new LegacyLogprobsBuilder(k ?? 0, body.echo ? p.text.length : 0));
    if (body.echo) {
      for (const [index, p] of promptOf.entries()) {
        await send(chunk([{ index, text: p.text, logprobs: null, finish_reason: null }]));
      }
    }
    for await (const { index, event } of run.group.events()) {
      if (event.type === "token") {
        if (!event.text && !event.logprob) continue;
        let logprobs: LegacyLogprobs | null = null;
        if (event.logprob && k !== null) {
          builders[index].add(event.logprob, event.text);
          logprobs = builders[index].take();
        }
        await send(chunk([{ index, text: event.text, logprobs, finish_reason: null }]));
        continue;
      }
      tally.add(run.promptIndexOf[index], event);
      await send(chunk([{ index, text: event.text, logprobs: null, finish_reason: event.finishReason }]));
    }
    tally.record(c.var.record);
    if (includeUsage) await send({ ...chunk([]), usage: usageOf(tally) });
  });
}
