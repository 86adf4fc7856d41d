/** OpenAI `POST /v1/chat/completions`, plain and streamed (SSE). */
import { OpenAPIHono } from "@hono/zod-openapi";
import type { Context } from "hono";
import type { AppEnv, GenerationContext } from "./app_env.ts";
import { toTemplateMessages } from "./chat_messages.ts";
import { modelNotFound } from "./errors.ts";
import { planSequences } from "./generation_params.ts";
import { chatLogprobEntry } from "./logprobs.ts";
import { authRoute, errorResponses } from "./openapi_common.ts";
import {
  type ChatCompletion,
  type ChatCompletionChunk,
  ChatCompletionChunkSchema,
  type ChatCompletionRequest,
  ChatCompletionRequestSchema,
  ChatCompletionSchema,
  type ChatLogprobs,
} from "./schemas.ts";
import { SequenceGroup } from "./sequences.ts";
import { sseResponse } from "./sse.ts";
import { checkChatSupported } from "./unsupported.ts";
import { head, responseMeta, usageOf, UsageTally } from "./usage.ts";

const route = authRoute({
  method: "post",
  path: "/v1/chat/completions",
  summary: "Chat completion (OpenAI-compatible)",
  request: { body: { content: { "application/json": { schema: ChatCompletionRequestSchema } }, required: true } },
  responses: {
    200: {
      description: "A chat completion, or with `stream: true` an SSE stream of chunks ending in `data: [DONE]`.",
      content: {
        "application/json": { schema: ChatCompletionSchema },
        "text/event-stream": { schema: ChatCompletionChunkSchema },
      },
    },
    ...errorResponses,
  },
});

export function chatRoutes(ctx: GenerationContext): OpenAPIHono<AppEnv> {
  const app = new OpenAPIHono<AppEnv>();
  app.openapi(route, async (c) => {
    const body = c.req.valid("json");
    checkChatSupported(body);
    const model = await ctx.models.resolve(body.model);
    if (!model) throw modelNotFound(body.model);
    c.var.record.model = model.id;
    const ids = model.tokenizer.encodeChat(toTemplateMessages(body.messages), { addGenerationPrompt: true });
    const plans = planSequences([{ ids, param: "messages" }], body, {
      contextLength: model.engine.contextLength,
      maxTokens: body.max_completion_tokens ?? body.max_tokens ?? undefined,
      logprobs: body.logprobs ? (body.top_logprobs ?? 0) : undefined,
      timeoutMs: ctx.requestTimeoutMs,
    });
    const group = SequenceGroup.start(
      model.engine,
      plans.map((p) => p.request),
      c.req.raw.signal,
      ctx.timing(model.id),
    );
    await group.ready();
    const meta = responseMeta("chatcmpl", model.id, ctx.systemFingerprint);
    if (body.stream) return streamChat(c, body, group, meta, plans.length);
    return c.json(await collectChat(c, body, group, meta, plans.length), 200);
  });
  return app;
}

type Meta = ReturnType<typeof responseMeta>;

async function collectChat(
  c: Context<AppEnv>,
  body: ChatCompletionRequest,
  group: SequenceGroup,
  meta: Meta,
  n: number,
): Promise<ChatCompletion> {
  const tally = new UsageTally();
  const texts = new Array<string>(n).fill("");
  const logprobs: ChatLogprobs[] = Array.from({ length: n }, () => ({ content: [] }));
  const finish = new Array<"stop" | "length">(n).fill("length");
  for await (const { index, event } of group.events()) {
    texts[index] += event.text;
    if (event.type === "token") {
      if (event.logprob) logprobs[index].content!.push(chatLogprobEntry(event.logprob));
    } else {
      finish[index] = event.finishReason;
      tally.add(0, event);
    }
  }
  tally.record(c.var.record);
  return {
    ...head(meta, "chat.completion"),
    choices: texts.map((text, index) => ({
      index,
      message: { role: "assistant", content: text, refusal: null },
      logprobs: body.logprobs ? logprobs[index] : null,
      finish_reason: finish[index],
    })),
    usage: usageOf(tally),
  };
}

function streamChat(
  c: Context<AppEnv>,
  body: ChatCompletionRequest,
  group: SequenceGroup,
  meta: Meta,
  n: number,
): Response {
  const includeUsage = body.stream_options?.include_usage === true;
  const chunk = (choices: ChatCompletionChunk["choices"]): ChatCompletionChunk => ({
    ...head(meta, "chat.completion.chunk"),
    choices,
    ...(includeUsage ? { usage: null } : {}),
  });
  return sseResponse(c, group, async (send) => {
    const tally = new UsageTally();
    for (let index = 0; index < n; index++) {
      await send(chunk([{ index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }]));
    }
    for await (const { index, event } of group.events()) {
      if (event.type === "token") {
        if (!event.text && !event.logprob) continue; // text held back (partial character / stop prefix)
        const logprobs = event.logprob ? { content: [chatLogprobEntry(event.logprob)] } : null;
        await send(chunk([{ index, delta: { content: event.text }, logprobs, finish_reason: null }]));
        continue;
      }
      tally.add(0, event);
      if (event.text) {
        await send(chunk([{ index, delta: { content: event.text }, logprobs: null, finish_reason: null }]));
      }
      await send(chunk([{ index, delta: {}, logprobs: null, finish_reason: event.finishReason }]));
    }
    tally.record(c.var.record);
    if (includeUsage) await send({ ...chunk([]), usage: usageOf(tally) });
  });
}
