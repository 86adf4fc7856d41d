/**
 * deno task bench:serve [--preset smollm2-135m|tiny] [--prompt-tokens N] [--new-tokens N]
 *                       [--levels 1,4,8,16] [--requests-per-stream N] [--level-seconds S]
 *                       [--baseline-threads same|default|N] [--rounds R]
 *
 * Serving throughput over HTTP on loopback, for this server (buildApp + the
 * engine main.ts uses) and for a baseline that serves the same exported model
 * with transformers.js `generate()` strictly one request at a time, in one run.
 *
 * Method, identical for both: after a warm-up burst at the highest level (4
 * tokens per request), at each concurrency level c, c client loops (in a
 * Worker, bench/serve_client.ts, off the server's event loop) each
 * send `requests-per-stream` streaming /v1/completions requests back to back
 * (prompt as token ids, greedy, `ignore_eos` so every request generates
 * exactly N tokens, `logprobs: 0` so every token gets a chunk: the bench
 * model's random tokens are mostly ids its byte tokenizer decodes to no text,
 * and this server sends no empty chunks), reading the SSE stream with fetch.
 * The logprob costs this server a little per token that the baseline does not
 * spend (its log-sum-exp comes from the graph, which both servers run).
 * Aggregate tok/s = completion tokens (from the usage
 * chunk) / level wall time; TTFT = request start → first token chunk,
 * p50/p99 over the level's requests. A level stops launching requests
 * after `level-seconds`. Servers run alone (the other released), alternating
 * for `rounds` rounds (which one goes first alternates too), because this
 * kind of shared VM drifts by up to 2x over minutes: a level's figures are
 * the medians over rounds (tok/s) and the pooled requests (TTFT).
 * Both use every core by default (`--baseline-threads same`); `default`
 * leaves transformers.js' session options as they ship (onnxruntime then
 * chose one thread on a 2-vCPU VM).
 * Prints JSON, then a one-line summary; writes bench/results/serve.json
 * (serve-baseline-threads-<setting>.json for another baseline setting).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { Hono } from "hono";
import { streamSSE } from "hono/streaming";
import { parseArgs } from "node:util";
import { staticResolver } from "../src/serve/model_resolver.ts";
import { buildApp } from "../src/app.ts";
import type { TinyPreset } from "../src/model/tiny_model.ts";
import { benchModel } from "./bench_model.ts";
import type { LevelRun, LevelSpec } from "./serve_client.ts";
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
    "baseline-threads": { type: "string", default: "same" },
    rounds: { type: "string", default: "3" },
  },
});
const preset = values.preset as TinyPreset;
const promptLen = Number(values["prompt-tokens"]);
const newTokens = Number(values["new-tokens"]);
const levels = values.levels.split(",").map(Number);
const perStream = Number(values["requests-per-stream"]);
const levelSeconds = Number(values["level-seconds"]);
const rounds = Number(values.rounds);
if (!(Number.isInteger(rounds) && rounds > 0)) throw new Error(`--rounds must be a positive integer`);
const threads = navigator.hardwareConcurrency;
const baselineThreads = values["baseline-threads"] === "same"
  ? threads
  : values["baseline-threads"] === "default"
  ? null
  : Number(values["baseline-threads"]);
if (baselineThreads !== null && !(Number.isInteger(baselineThreads) && baselineThreads > 0)) {
  throw new Error(`--baseline-threads must be same, default or a positive integer, got ${values["baseline-threads"]}`);
}

const { modelDir, dataDir } = await benchModel(preset);
const MODEL = `bench/${preset}`;

// ---------- client (a Worker: bench/serve_client.ts) ----------

const client = new Worker(new URL("./serve_client.ts", import.meta.url), { type: "module" });
let salt = 0;

/** Runs one level from the client worker; `tokens` overrides the new tokens per request (warm-up). */
function runLevel(baseURL: string, concurrency: number, tokens = newTokens): Promise<LevelRun> {
  const spec: LevelSpec = {
    baseURL,
    model: MODEL,
    concurrency,
    requestsPerStream: perStream,
    promptTokens: promptLen,
    newTokens: tokens,
    levelSeconds,
    salt: salt++,
  };
  return new Promise((resolve, reject) => {
    client.onmessage = (e: MessageEvent<LevelRun | { error: string }>) => {
      if ("error" in e.data) reject(new Error(`bench client: ${e.data.error}`));
      else resolve(e.data);
    };
    client.postMessage(spec);
  });
}

const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))];
};

interface LevelResult {
  concurrency: number;
  requests: number;
  completion_tokens: number;
  /** Median over rounds. */
  tok_s: number;
  tok_s_by_round: number[];
  ttft_p50_ms: number;
  ttft_p99_ms: number;
}

/** One level's figures over all rounds. */
function summarize(runs: LevelRun[]): LevelResult {
  const ttfts = runs.flatMap((r) => r.ttfts);
  const rates = runs.map((r) => r.tok_s);
  return {
    concurrency: runs[0].concurrency,
    requests: runs.reduce((n, r) => n + r.requests, 0),
    completion_tokens: runs.reduce((n, r) => n + r.completion_tokens, 0),
    tok_s: quantile(rates, 0.5),
    tok_s_by_round: rates,
    ttft_p50_ms: quantile(ttfts, 0.5),
    ttft_p99_ms: quantile(ttfts, 0.99),
  };
}

interface Served {
  baseURL: string;
  close(): Promise<void>;
}

async function measure(open: () => Promise<Served>): Promise<LevelRun[]> {
  const served = await open();
  try {
    // Warm-up at the highest concurrency (4 tokens each): session buffers, JIT, allocator growth.
    await runLevel(served.baseURL, Math.max(...levels), 4);
    const out: LevelRun[] = [];
    for (const c of levels) {
      const r = await runLevel(served.baseURL, c);
      console.error(`  c=${c}: ${r.tok_s.toFixed(1)} tok/s, TTFT p50 ${quantile(r.ttfts, 0.5).toFixed(0)} ms`);
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
  const engine = await createEngine(prepared, { modelId: MODEL, threads });
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
  const tjs = await loadTransformersBaseline(prepared.compiledDir, baselineThreads);
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

const oursRuns: LevelRun[][] = [], baselineRuns: LevelRun[][] = [];
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? ["ours", "baseline"] : ["baseline", "ours"];
  for (const which of order) {
    console.error(
      `bench:serve ${preset} round ${round + 1}/${rounds}: ${which === "ours" ? "this server" : "transformers.js"}…`,
    );
    if (which === "ours") oursRuns.push(await measure(openOurs));
    else baselineRuns.push(await measure(openTransformersJs));
  }
}
const ours = levels.map((_, i) => summarize(oursRuns.map((r) => r[i])));
const baseline = levels.map((_, i) => summarize(baselineRuns.map((r) => r[i])));

const ratios = Object.fromEntries(levels.map((c, i) => [String(c), ours[i].tok_s / baseline[i].tok_s]));
// Per round (same round's runs of both servers, minutes apart at most): the spread of the ratio.
const ratiosByRound = Object.fromEntries(
  levels.map((c, i) => [String(c), oursRuns.map((r, k) => r[i].tok_s / baselineRuns[k][i].tok_s)]),
);
const result = {
  bench: "serve",
  preset,
  device: "cpu",
  dtype: "fp32",
  threads,
  baseline_threads: baselineThreads ?? "transformers.js default",
  prompt_tokens: promptLen,
  new_tokens: newTokens,
  requests_per_stream: perStream,
  rounds,
  server: ours,
  transformers_js: baseline,
  tok_s_ratio_by_concurrency: ratios,
  tok_s_ratio_by_round: ratiosByRound,
};
console.log(JSON.stringify(result, null, 2));
await Deno.mkdir("bench/results", { recursive: true });
// A non-default baseline thread setting is a side experiment: it gets its own file.
const outName = values["baseline-threads"] === "same"
  ? "serve"
  : `serve-baseline-threads-${values["baseline-threads"]}`;
await Deno.writeTextFile(`bench/results/${outName}.json`, JSON.stringify(result, null, 2) + "\n");
client.terminate();
const at = levels.includes(8) ? 8 : levels[levels.length - 1];
const i = levels.indexOf(at);
console.log(
  `bench:serve ${preset}: ${at} streams ${ours[i].tok_s.toFixed(1)} tok/s vs transformers.js ` +
    `${baseline[i].tok_s.toFixed(1)} tok/s (${ratios[String(at)].toFixed(2)}x, rounds ` +
    `${Math.min(...ratiosByRound[String(at)]).toFixed(2)}–${Math.max(...ratiosByRound[String(at)]).toFixed(2)}x; ` +
    `target ≥ 4x); TTFT p50 ` +
    `${ours[i].ttft_p50_ms.toFixed(0)} vs ${baseline[i].ttft_p50_ms.toFixed(0)} ms, p99 ` +
    `${ours[i].ttft_p99_ms.toFixed(0)} vs ${baseline[i].ttft_p99_ms.toFixed(0)} ms`,
);
