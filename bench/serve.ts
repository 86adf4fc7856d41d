/**
 * deno task bench:serve [--preset smollm2-135m|tiny] [--prompt-tokens N] [--new-tokens N]
 *                       [--levels 1,4,8,16] [--requests-per-stream N] [--level-seconds S]
 *
 * Serving throughput over HTTP on loopback, for this server (buildApp + the
 * engine main.ts uses) and for a baseline that serves the same exported model
 * with transformers.js `generate()` strictly one request at a time, in one run.
 *
 * Method, identical for both: at each concurrency level c, c client loops each
 * send `requests-per-stream` streaming /v1/completions requests back to back
 * (prompt as token ids, greedy, `ignore_eos` so every request generates
 * exactly N tokens, `logprobs: 0` so every token gets a chunk), reading the
 * SSE stream with fetch. Aggregate tok/s =
 * completion tokens / level wall time; TTFT = request start → first token
 * chunk, p50/p99 over the level's requests. A level stops launching requests
 * after `level-seconds`. Servers run alone (the other released), ours first.
 * Prints JSON, then a one-line summary; writes bench/results/serve.json.
 */
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { parseArgs } from "node:util";
import { staticResolver } from "../routes/model_resolver.ts";
import { buildApp } from "../src/app.ts";
import type { TinyPreset } from "../src/model/tiny_model.ts";
import { benchModel } from "./bench_model.ts";
import { loadTransformersBaseline } from "./transformers_baseline.ts";
import { createEngine } from "../src/serve/batch_engine.ts";
import { prepareModel } from "../src/serve/load_model.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "smollm2-135m" },
    "prompt-tokens": { type: "string", default: "64" },
    "new-tokens": { type: "string", default: "32" },
    levels: { type: "string", default: "1,4,8,16" },
    "requests-per-stream": { type: "string", default: "2" },
    "level-seconds": { type: "string", default: "60" },
  },
});
const preset = values.preset as TinyPreset;
const promptLen = Number(values["prompt-tokens"]);
const newTokens = Number(values["new-tokens"]);
const levels = values.levels.split(",").map(Number);
const perStream = Number(values["requests-per-stream"]);
const levelSeconds = Number(values["level-seconds"]);

const { modelDir, dataDir } = await benchModel(preset);
const MODEL = `bench/${preset}`;

// ---------- client ----------

interface RequestSample {
  ttftMs: number;
  tokens: number;
}

/** One streaming completion; resolves with its TTFT and completion token count (from the usage chunk). */
async function streamOnce(baseURL: string, promptIds: number[]): Promise<RequestSample> {
  const started = performance.now();
  const res = await fetch(`${baseURL}/v1/completions`, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({
      model: MODEL,
      prompt: promptIds,
      max_tokens: newTokens,
      temperature: 0,
      ignore_eos: true,
      // A chunk per token even while text is held back (a partial UTF-8
      // character, common with random byte-level models), so TTFT is the first
      // token, not the first printable text. The baseline ignores it.
      logprobs: 0,
      stream: true,
      stream_options: { include_usage: true },
    }),
  });
  if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
  let ttftMs = NaN;
  let tokens = 0;
  let buf = "";
  const decoder = new TextDecoder();
  for await (const bytes of res.body) {
    buf += decoder.decode(bytes, { stream: true });
    let end;
    while ((end = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      const data = event.replace(/^data: /, "");
      if (data === "[DONE]") continue;
      const chunk = JSON.parse(data) as { choices: { text: string }[]; usage?: { completion_tokens: number } | null };
      if (Number.isNaN(ttftMs) && chunk.choices.length > 0) ttftMs = performance.now() - started;
      if (chunk.usage) tokens = chunk.usage.completion_tokens;
    }
  }
  return { ttftMs, tokens };
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

interface LevelResult {
  concurrency: number;
  requests: number;
  completion_tokens: number;
  seconds: number;
  tok_s: number;
  ttft_p50_ms: number;
  ttft_p99_ms: number;
}

async function runLevel(baseURL: string, concurrency: number): Promise<LevelResult> {
  const deadline = performance.now() + levelSeconds * 1000;
  const samples: RequestSample[] = [];
  const started = performance.now();
  await Promise.all(Array.from({ length: concurrency }, async (_, stream) => {
    for (let r = 0; r < perStream && performance.now() < deadline; r++) {
      // Distinct prompts per request, so nothing could be served from a cache.
      const promptIds = Array.from({ length: promptLen }, (_, i) => (i * 7919 + stream * 131 + r * 17) % 256);
      samples.push(await streamOnce(baseURL, promptIds));
    }
  }));
  const seconds = (performance.now() - started) / 1000;
  const tokens = samples.reduce((a, s) => a + s.tokens, 0);
  const ttfts = samples.map((s) => s.ttftMs);
  return {
    concurrency,
    requests: samples.length,
    completion_tokens: tokens,
    seconds,
    tok_s: tokens / seconds,
    ttft_p50_ms: quantile(ttfts, 0.5),
    ttft_p99_ms: quantile(ttfts, 0.99),
  };
}

interface Served {
  baseURL: string;
  close(): Promise<void>;
}

async function measure(open: () => Promise<Served>): Promise<LevelResult[]> {
  const served = await open();
  try {
    await streamOnce(served.baseURL, [1, 2, 3]); // warm-up: session buffers, JIT
    const out: LevelResult[] = [];
    for (const c of levels) {
      const r = await runLevel(served.baseURL, c);
      console.error(`  c=${c}: ${r.tok_s.toFixed(1)} tok/s, TTFT p50 ${r.ttft_p50_ms.toFixed(0)} ms`);
      out.push(r);
    }
    return out;
  } finally {
    await served.close();
  }
}

function listen(
  fetchHandler: (req: Request) => Response | Promise<Response>,
): { baseURL: string; server: Deno.HttpServer } {
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen: () => {} }, fetchHandler);
  return { baseURL: `http://127.0.0.1:${server.addr.port}`, server };
}

// ---------- this server ----------

const prepared = await prepareModel(modelDir, { dataDir, device: "cpu" });

async function openOurs(): Promise<Served> {
  const engine = await createEngine(prepared, { modelId: MODEL });
  const app = buildApp({
    models: staticResolver([{ id: MODEL, created: 0, ownedBy: "bench", engine, tokenizer: engine.tokenizer }]),
    ready: () => true,
    logRequest: () => {},
  });
  const { baseURL, server } = listen(app.fetch);
  return {
    baseURL,
    close: async () => {
      await server.shutdown();
      await engine.close();
    },
  };
}

// ---------- baseline: transformers.js, one request at a time ----------

async function openTransformersJs(): Promise<Served> {
  const tjs = await loadTransformersBaseline(prepared.compiledDir);
  let queue: Promise<void> = Promise.resolve();
  const app = new Hono();
  app.post("/v1/completions", async (c) => {
    const body = await c.req.json() as { prompt: number[]; max_tokens: number };
    const ids = body.prompt;
    return streamSSE(c, async (stream) => {
      const writes: Promise<void>[] = [];
      const run = queue.then(async () => {
        let n = 0;
        await tjs.generate(ids, body.max_tokens, (id) => {
          n++;
          writes.push(stream.writeSSE({ data: JSON.stringify({ choices: [{ index: 0, text: String(id) }] }) }));
        });
        return n;
      });
      // Strictly one generation at a time.
      queue = run.then(() => {}, () => {});
      const n = await run;
      await Promise.all(writes);
      const usage = { prompt_tokens: ids.length, completion_tokens: n, total_tokens: ids.length + n };
      await stream.writeSSE({ data: JSON.stringify({ choices: [], usage }) });
      await stream.writeSSE({ data: "[DONE]" });
    });
  });
  const { baseURL, server } = listen(app.fetch);
  return {
    baseURL,
    close: async () => {
      await server.shutdown();
      await tjs.dispose();
    },
  };
}

console.error(`bench:serve ${preset}: this server…`);
const ours = await measure(openOurs);
console.error(`bench:serve ${preset}: transformers.js baseline…`);
const baseline = await measure(openTransformersJs);

const ratios = Object.fromEntries(levels.map((c, i) => [String(c), ours[i].tok_s / baseline[i].tok_s]));
const result = {
  bench: "serve",
  preset,
  device: "cpu",
  dtype: "fp32",
  threads: navigator.hardwareConcurrency,
  prompt_tokens: promptLen,
  new_tokens: newTokens,
  requests_per_stream: perStream,
  server: ours,
  transformers_js: baseline,
  tok_s_ratio_by_concurrency: ratios,
};
console.log(JSON.stringify(result, null, 2));
await Deno.mkdir("bench/results", { recursive: true });
await Deno.writeTextFile("bench/results/serve.json", JSON.stringify(result, null, 2) + "\n");
const at = levels.includes(8) ? 8 : levels[levels.length - 1];
const i = levels.indexOf(at);
console.log(
  `bench:serve ${preset}: ${at} streams ${ours[i].tok_s.toFixed(1)} tok/s vs transformers.js ` +
    `${baseline[i].tok_s.toFixed(1)} tok/s (${ratios[String(at)].toFixed(2)}x, target ≥ 4x); TTFT p50 ` +
    `${ours[i].ttft_p50_ms.toFixed(0)} vs ${baseline[i].ttft_p50_ms.toFixed(0)} ms, p99 ` +
    `${ours[i].ttft_p99_ms.toFixed(0)} vs ${baseline[i].ttft_p99_ms.toFixed(0)} ms`,
);
