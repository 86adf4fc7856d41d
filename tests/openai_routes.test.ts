/**
 * The HTTP layer against a scripted engine (tests/helpers/fake_engine.ts):
 * request validation, OpenAI response and error shapes, streaming, n/seeds,
 * logprobs, echo, batching, auth, limits, ops endpoints. No model, no server.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { type AppDeps, buildApp } from "../src/app.ts";
import { staticResolver } from "../src/serve/model_resolver.ts";
import type { RequestLogLine } from "../routes/request_log.ts";
import { type FakeEngineOptions, fakeModel } from "./helpers/fake_engine.ts";

const MODEL = "org/fake-model";

function setup(opts: FakeEngineOptions = {}, deps: Partial<AppDeps> = {}) {
  const model = fakeModel(MODEL, opts);
  const logs: RequestLogLine[] = [];
  const app = buildApp({
    models: staticResolver([model]),
    ready: () => true,
    logRequest: (l) => logs.push(l),
    ...deps,
  });
  const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
    app.request(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...headers },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
  return { app, engine: model.engine, logs, post };
}

async function expectError(res: Response, status: number, param?: string | null, code?: string | null) {
  assert.equal(res.status, status, await res.clone().text());
  const body = await res.json();
  assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
  assert.equal(typeof body.error.message, "string");
  if (param !== undefined) assert.equal(body.error.param, param);
  if (code !== undefined) assert.equal(body.error.code, code);
  return body.error;
}

/** Parses an SSE body into its data payloads ("[DONE]" kept as a string). */
async function sse(res: Response): Promise<unknown[]> {
  assert.equal(res.status, 200);
  assert.match(res.headers.get("content-type") ?? "", /text\/event-stream/);
  const text = await res.text();
  return text.split("\n\n").filter((b) => b.trim()).map((block) => {
    const data = block.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
    return data === "[DONE]" ? data : JSON.parse(data);
  });
}

const chat = (extra: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: "user", content: "hi" }],
  ...extra,
});

Deno.test("chat completion: OpenAI shape, usage from the tokenizer, template applied", async () => {
  const { post, engine, logs } = setup({ script: () => "Hello there" });
  const res = await post("/v1/chat/completions", chat({ max_tokens: 50, temperature: 0 }));
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.match(body.id, /^chatcmpl-/);
  assert.equal(body.object, "chat.completion");
  assert.equal(body.model, MODEL);
  assert.equal(typeof body.created, "number");
  assert.equal(typeof body.system_fingerprint, "string");
  assert.deepEqual(body.choices, [{
    index: 0,
    message: { role: "assistant", content: "Hello there", refusal: null },
    logprobs: null,
    finish_reason: "stop",
  }]);
  const promptLen = "<user>hi\n<assistant>".length;
  assert.deepEqual(body.usage, { prompt_tokens: promptLen, completion_tokens: 11, total_tokens: promptLen + 11 });
  assert.equal(engine.requests[0].maxTokens, 50);
  assert.equal(engine.requests[0].sampling.temperature, 0);
  assert.equal(logs.length, 1);
  assert.equal(logs[0].status, 200);
  assert.equal(logs[0].model, MODEL);
  assert.equal(logs[0].completion_tokens, 11);
});

Deno.test("chat: developer → system, text parts joined, max_completion_tokens wins, length finish", async () => {
  const { post, engine } = setup({ script: () => "abcdefgh" });
  const res = await post("/v1/chat/completions", {
    model: MODEL,
    messages: [
      { role: "developer", content: "be brief" },
      { role: "user", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
    ],
    max_tokens: 100,
    max_completion_tokens: 3,
    metadata: { x: "y" },
    store: false,
    service_tier: "auto",
    parallel_tool_calls: true,
    response_format: { type: "text" },
    tool_choice: "none",
    user: "u1",
  });
  assert.equal(res.status, 200);
  const body = await res.json();
  assert.equal(body.choices[0].message.content, "abc");
  assert.equal(body.choices[0].finish_reason, "length");
  assert.equal(engine.requests[0].maxTokens, 3);
  const prompt = String.fromCharCode(...engine.requests[0].promptIds);
  assert.equal(prompt, "<system>be brief\n<user>a\nb\n<assistant>");
});

Deno.test("n > 1 with a seed: choice i samples with seed + i; stop strings and penalties pass through", async () => {
  const { post, engine } = setup({ script: (r) => `seed=${r.sampling.seed};END` });
  const res = await post(
    "/v1/chat/completions",
    chat({
      n: 3,
      seed: 40,
      stop: [";"],
      temperature: 0.7,
      top_p: 0.9,
      presence_penalty: 0.5,
      frequency_penalty: -0.5,
    }),
  );
  const body = await res.json();
  assert.deepEqual(body.choices.map((c: { message: { content: string } }) => c.message.content), [
    "seed=40",
    "seed=41",
    "seed=42",
  ]);
  assert.deepEqual(body.choices.map((c: { index: number }) => c.index), [0, 1, 2]);
  const s = engine.requests[0].sampling;
  assert.deepEqual([s.temperature, s.topP, s.presencePenalty, s.frequencyPenalty], [0.7, 0.9, 0.5, -0.5]);
  assert.deepEqual(engine.requests[0].stop, [";"]);
  assert.equal(engine.requests[0].stopTokenIds, undefined);
  await post("/v1/chat/completions", chat({ ignore_eos: true }));
  assert.deepEqual(engine.requests.at(-1)!.stopTokenIds, []);
  // Prompt counted once, completions summed.
  assert.equal(body.usage.completion_tokens, 21);
  assert.equal(body.usage.prompt_tokens, engine.requests[0].promptIds.length);
});

Deno.test("chat streaming with include_usage: role chunk, deltas, finish, usage chunk, [DONE]", async () => {
  const { post, logs } = setup({ script: () => "Hey" });
  const events = await sse(
    await post("/v1/chat/completions", chat({ stream: true, stream_options: { include_usage: true } })),
  );
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1) as {
    object: string;
    choices: { delta: { role?: string; content?: string }; finish_reason: string | null }[];
    usage: unknown;
  }[];
  for (const c of chunks) assert.equal(c.object, "chat.completion.chunk");
  assert.deepEqual(chunks[0].choices[0].delta, { role: "assistant", content: "" });
  const text = chunks.flatMap((c) => c.choices.map((ch) => ch.delta.content ?? "")).join("");
  assert.equal(text, "Hey");
  const last = chunks.at(-1)!;
  assert.deepEqual(last.choices, []);
  assert.equal((last.usage as { completion_tokens: number }).completion_tokens, 3);
  for (const c of chunks.slice(0, -1)) assert.equal(c.usage, null);
  assert.equal(chunks.at(-2)!.choices[0].finish_reason, "stop");
  // The log line is written when the stream ends, with its tokens.
  await new Promise((r) => setTimeout(r, 0));
  assert.equal(logs[0].stream, true);
  assert.equal(logs[0].completion_tokens, 3);
});

Deno.test("streaming without include_usage has no usage field", async () => {
  const { post } = setup({ script: () => "ab" });
  const events = await sse(await post("/v1/chat/completions", chat({ stream: true })));
  for (const e of events.slice(0, -1)) assert.ok(!("usage" in (e as object)));
});

Deno.test("chat logprobs: OpenAI content shape with top_logprobs", async () => {
  const { post, engine } = setup({ script: () => "ok" });
  const body = await (await post("/v1/chat/completions", chat({ logprobs: true, top_logprobs: 2 }))).json();
  assert.equal(engine.requests[0].logprobs, 2);
  const content = body.choices[0].logprobs.content;
  assert.equal(content.length, 2);
  assert.deepEqual(content[0], {
    token: "o",
    logprob: -0.25,
    bytes: [111],
    top_logprobs: [{ token: "o", logprob: -0.25, bytes: [111] }, { token: "b", logprob: -1.25, bytes: [98] }],
  });
  const plain = await (await post("/v1/chat/completions", chat({ logprobs: true }))).json();
  assert.deepEqual(plain.choices[0].logprobs.content[0].top_logprobs, []);
});

Deno.test("completions: string, batch, token ids, nested token ids; choice order prompt·n + i", async () => {
  const { post, engine } = setup({ script: (r) => `<${String.fromCharCode(...r.promptIds)}|${r.sampling.seed}>` });
  const one = await (await post("/v1/completions", { model: MODEL, prompt: "ab", max_tokens: 100 })).json();
  assert.equal(one.object, "text_completion");
  assert.match(one.id, /^cmpl-/);
  assert.equal(one.choices[0].text, "<ab|undefined>");
  assert.equal(one.choices[0].logprobs, null);

  const batch =
    await (await post("/v1/completions", { model: MODEL, prompt: ["x", "yy"], n: 2, seed: 7, max_tokens: 100 })).json();
  assert.deepEqual(batch.choices.map((c: { index: number; text: string }) => [c.index, c.text]), [
    [0, "<x|7>"],
    [1, "<x|8>"],
    [2, "<yy|7>"],
    [3, "<yy|8>"],
  ]);
  assert.equal(batch.usage.prompt_tokens, 3);

  const ids = await (await post("/v1/completions", { model: MODEL, prompt: [104, 105], max_tokens: 100 })).json();
  assert.equal(ids.choices[0].text, "<hi|undefined>");
  const nested = await (await post("/v1/completions", { model: MODEL, prompt: [[104], [105]], max_tokens: 100 }))
    .json();
  assert.deepEqual(nested.choices.map((c: { text: string }) => c.text), ["<h|undefined>", "<i|undefined>"]);
  // Default budget is OpenAI's 16 tokens for this endpoint.
  await post("/v1/completions", { model: MODEL, prompt: "q" });
  assert.equal(engine.requests.at(-1)!.maxTokens, 16);
});

Deno.test("completions echo + logprobs: legacy shape with prompt tokens first", async () => {
  const { post, engine } = setup({ script: () => "cd" });
  const body = await (await post("/v1/completions", { model: MODEL, prompt: "ab", echo: true, logprobs: 1 })).json();
  assert.equal(engine.requests[0].promptLogprobs, true);
  const c = body.choices[0];
  assert.equal(c.text, "abcd");
  assert.deepEqual(c.logprobs, {
    tokens: ["a", "b", "c", "d"],
    token_logprobs: [null, -1, -0.25, -0.25],
    top_logprobs: [null, { b: -1 }, { c: -0.25 }, { d: -0.25 }],
    text_offset: [0, 1, 2, 3],
  });
  const noEcho = await (await post("/v1/completions", { model: MODEL, prompt: "ab", logprobs: 0 })).json();
  assert.deepEqual(noEcho.choices[0].logprobs.tokens, ["c", "d"]);
  assert.deepEqual(noEcho.choices[0].logprobs.text_offset, [0, 1]);
  assert.deepEqual(noEcho.choices[0].logprobs.top_logprobs, [{}, {}]);
});

Deno.test("completions streaming: chunks, echo, finish, usage, [DONE]", async () => {
  const { post } = setup({ script: () => "xyz" });
  const events = await sse(
    await post("/v1/completions", {
      model: MODEL,
      prompt: "p",
      echo: true,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  assert.equal(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1) as { choices: { text: string; finish_reason: string | null }[]; usage: unknown }[];
  assert.equal(chunks.flatMap((c) => c.choices.map((ch) => ch.text)).join(""), "pxyz");
  assert.equal(chunks.at(-2)!.choices[0].finish_reason, "stop");
  assert.deepEqual(chunks.at(-1)!.choices, []);
  assert.equal((chunks.at(-1)!.usage as { total_tokens: number }).total_tokens, 4);
});

Deno.test("invalid parameters → 400 naming the param", async () => {
  const { post, engine } = setup();
  await expectError(await post("/v1/chat/completions", chat({ temperature: 3 })), 400, "temperature");
  await expectError(await post("/v1/chat/completions", chat({ n: 0 })), 400, "n");
  await expectError(await post("/v1/chat/completions", chat({ stop: ["a", "b", "c", "d", "e"] })), 400, "stop");
  await expectError(
    await post("/v1/chat/completions", chat({ top_logprobs: 21, logprobs: true })),
    400,
    "top_logprobs",
  );
  await expectError(await post("/v1/chat/completions", chat({ top_logprobs: 2 })), 400, "top_logprobs");
  await expectError(await post("/v1/chat/completions", { model: MODEL, messages: [] }), 400, "messages");
  await expectError(
    await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "robot", content: "x" }] }),
    400,
    "messages[0].role",
  );
  await expectError(await post("/v1/chat/completions", { messages: [{ role: "user", content: "x" }] }), 400, "model");
  await expectError(await post("/v1/completions", { model: MODEL, prompt: "x", logprobs: 6 }), 400, "logprobs");
  await expectError(await post("/v1/completions", { model: MODEL, prompt: [999] }), 400, "prompt");
  await expectError(await post("/v1/completions", { model: MODEL, prompt: "" }), 400, "prompt");
  await expectError(
    await post("/v1/chat/completions", chat({ stream_options: { include_usage: true } })),
    400,
    "stream_options",
  );
  await expectError(await post("/v1/chat/completions", "{not json"), 400);
  assert.equal(engine.requests.length, 0);
});

Deno.test("unsupported semantics → 400 naming the param", async () => {
  const { post } = setup();
  const tool = { type: "function", function: { name: "f", parameters: {} } };
  await expectError(await post("/v1/chat/completions", chat({ tools: [tool] })), 400, "tools", "unsupported_parameter");
  await expectError(await post("/v1/chat/completions", chat({ tool_choice: "auto" })), 400, "tool_choice");
  await expectError(await post("/v1/chat/completions", chat({ functions: [{ name: "f" }] })), 400, "functions");
  await expectError(
    await post("/v1/chat/completions", chat({ response_format: { type: "json_object" } })),
    400,
    "response_format",
  );
  await expectError(await post("/v1/chat/completions", chat({ logit_bias: { "5": 10 } })), 400, "logit_bias");
  await expectError(await post("/v1/completions", { model: MODEL, prompt: "x", suffix: "y" }), 400, "suffix");
  await expectError(await post("/v1/completions", { model: MODEL, prompt: "x", best_of: 3 }), 400, "best_of");
  const image = { type: "image_url", image_url: { url: "data:," } };
  await expectError(
    await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "user", content: [image] }] }),
    400,
    "messages[0].content[0].type",
  );
  await expectError(
    await post("/v1/chat/completions", { model: MODEL, messages: [{ role: "tool", content: "r", tool_call_id: "1" }] }),
    400,
    "messages[0].role",
  );
  // Harmless: empty tools and logit_bias, best_of = n.
  assert.equal((await post("/v1/chat/completions", chat({ tools: [], logit_bias: {} }))).status, 200);
  assert.equal((await post("/v1/completions", { model: MODEL, prompt: "x", best_of: 1 })).status, 200);
});

Deno.test("prompt too long → 400 context_length_exceeded; max_tokens clipped to the context", async () => {
  const { post, engine } = setup({ contextLength: 40 });
  await expectError(
    await post("/v1/completions", { model: MODEL, prompt: "x".repeat(40) }),
    400,
    "prompt",
    "context_length_exceeded",
  );
  await expectError(
    await post("/v1/chat/completions", chat({ messages: [{ role: "user", content: "y".repeat(40) }] })),
    400,
    "messages",
    "context_length_exceeded",
  );
  assert.equal((await post("/v1/completions", { model: MODEL, prompt: "x".repeat(30), max_tokens: 100 })).status, 200);
  assert.equal(engine.requests[0].maxTokens, 10);
});

Deno.test("unknown model → 404 model_not_found; unknown route → 404; wrong method → 405", async () => {
  const { app, post } = setup();
  await expectError(await post("/v1/chat/completions", chat({ model: "nope" })), 404, "model", "model_not_found");
  await expectError(await post("/v1/completions", { model: "nope", prompt: "x" }), 404, "model", "model_not_found");
  await expectError(await app.request("/v1/models/nope"), 404, "model", "model_not_found");
  await expectError(await app.request("/v1/nothing"), 404);
  const res = await app.request("/v1/chat/completions");
  await expectError(res, 405);
  assert.match(res.headers.get("allow") ?? "", /POST/);
});

Deno.test("models: list and retrieve ids with slashes", async () => {
  const { app } = setup();
  assert.deepEqual(await (await app.request("/v1/models")).json(), {
    object: "list",
    data: [{ id: MODEL, object: "model", created: 1700000000, owned_by: "test" }],
  });
  assert.equal((await (await app.request(`/v1/models/${MODEL}`)).json()).id, MODEL);
});

Deno.test("queue full → 503 with Retry-After; mid-stream failure → error event then [DONE]", async () => {
  const full = setup({ queueFull: true });
  const res = await full.post("/v1/chat/completions", chat());
  await expectError(res, 503, null, "server_overloaded");
  assert.equal(res.headers.get("retry-after"), "1");

  const failing = setup({ script: () => "abc", failAfterFirstToken: new Error("boom") });
  const origError = console.error;
  console.error = () => {};
  try {
    const events = await sse(await failing.post("/v1/chat/completions", chat({ stream: true })));
    assert.equal(events.at(-1), "[DONE]");
    const err = events.at(-2) as { error: { type: string; message: string } };
    assert.equal(err.error.type, "server_error");
  } finally {
    console.error = origError;
  }
});

Deno.test("API keys: /v1 needs a valid bearer key; ops endpoints stay open", async () => {
  const { app, post } = setup({}, { apiKeys: ["k1", "secret-2"] });
  await expectError(await app.request("/v1/models"), 401, null, "invalid_api_key");
  await expectError(
    await app.request("/v1/models", { headers: { Authorization: "Bearer nope" } }),
    401,
    null,
    "invalid_api_key",
  );
  await expectError(
    await post("/v1/chat/completions", chat(), { Authorization: "Basic k1" }),
    401,
    null,
    "invalid_api_key",
  );
  assert.equal((await app.request("/v1/models", { headers: { Authorization: "Bearer secret-2" } })).status, 200);
  assert.equal((await post("/v1/chat/completions", chat(), { Authorization: "Bearer k1" })).status, 200);
  for (const path of ["/health", "/ready", "/metrics", "/openapi.json", "/docs"]) {
    assert.equal((await app.request(path)).status, 200, path);
  }
});

Deno.test("body over MAX_BODY_BYTES → 413 envelope", async () => {
  const { post } = setup({}, { maxBodyBytes: 1024 });
  await expectError(
    await post("/v1/chat/completions", chat({ messages: [{ role: "user", content: "x".repeat(2000) }] })),
    413,
  );
});

Deno.test("health, ready, metrics in Prometheus text, OpenAPI document, docs page", async () => {
  let ready = false;
  const { app, post } = setup({ script: () => "abcd" }, { ready: () => ready });
  assert.deepEqual(await (await app.request("/health")).json(), { status: "ok" });
  assert.equal((await app.request("/ready")).status, 503);
  ready = true;
  assert.equal((await app.request("/ready")).status, 200);
  await post("/v1/chat/completions", chat());
  await post("/v1/chat/completions", chat({ model: "nope" }));
  const metrics = await (await app.request("/metrics")).text();
  assert.match(metrics, /scalora_http_requests_total\{method="POST",route="\/v1\/chat\/completions",status="200"\} 1/);
  assert.match(metrics, /scalora_http_requests_total\{method="POST",route="\/v1\/chat\/completions",status="404"\} 1/);
  assert.match(metrics, /scalora_completion_tokens_total\{model="org\/fake-model"\} 4/);
  assert.match(metrics, /scalora_time_to_first_token_seconds_count\{model="org\/fake-model"\} 1/);
  assert.match(metrics, /scalora_inter_token_latency_seconds_count\{model="org\/fake-model"\} 3/);
  assert.match(metrics, /scalora_queue_depth\{model="org\/fake-model"\} 0/);
  assert.match(metrics, /scalora_batch_size\{model="org\/fake-model"\} 0/);
  assert.match(metrics, /scalora_loaded_models 1/);

  const spec = await (await app.request("/openapi.json")).json();
  assert.equal(spec.openapi, "3.0.0");
  for (const p of ["/v1/models", "/v1/models/{id}", "/v1/completions", "/v1/chat/completions", "/health", "/metrics"]) {
    assert.ok(spec.paths[p], `missing ${p}: ${Object.keys(spec.paths)}`);
  }
  assert.ok(spec.components.schemas.ChatCompletionRequest);
  const docs = await app.request("/docs");
  assert.match(docs.headers.get("content-type") ?? "", /text\/html/);
  assert.match(await docs.text(), /openapi\.json/);
});

Deno.test("client disconnect aborts the engine sequences (real server)", async () => {
  const { app, engine } = setup({ script: () => "x".repeat(1000), tokenDelayMs: 5 });
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, app.fetch);
  try {
    const url = `http://127.0.0.1:${server.addr.port}/v1/chat/completions`;
    for (const stream of [true, false]) {
      const before = engine.aborted;
      const ac = new AbortController();
      const res = fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(chat({ stream, n: 2, max_tokens: 1000 })),
        signal: ac.signal,
      });
      if (stream) {
        const r = await res;
        const reader = r.body!.getReader();
        await reader.read();
        ac.abort();
        await reader.cancel().catch(() => {});
      } else {
        await new Promise((r) => setTimeout(r, 50));
        ac.abort();
        await res.catch(() => {});
      }
      for (let i = 0; i < 100 && engine.aborted < before + 2; i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(engine.aborted, before + 2, `stream=${stream}`);
    }
  } finally {
    await server.shutdown();
  }
});
