/**
 * deno task bench:decode [--preset smollm2-135m|tiny] [--prompt-tokens N] [--new-tokens N] [--runs N]
 *
 * Prefill and decode throughput of this engine and of transformers.js
 * `generate()` on the same exported model directory, in one run, plus the
 * memory-bandwidth bound of decoding (weight bytes per token over a measured
 * copy bandwidth). Prints a JSON result, then a one-line summary.
 *
 * Method, identical for both engines: greedy, no EOS; prefill time = time of a
 * 1-token generation; decode tok/s = (N − 1) / (time(N) − time(1)). Median of runs.
 */
import { parseArgs } from "node:util";
import { AutoModelForCausalLM, type PreTrainedModel, Tensor } from "@huggingface/transformers";
import { parameterCount } from "../src/model/layout.ts";
import { generateTinyModel, type TinyPreset } from "../src/model/tiny_model.ts";
import { configureTransformersOffline } from "../src/model/tokenizer.ts";
import { generate } from "../src/serve/generate.ts";
import { loadModel } from "../src/serve/load_model.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    preset: { type: "string", default: "smollm2-135m" },
    "prompt-tokens": { type: "string", default: "128" },
    "new-tokens": { type: "string", default: "64" },
    runs: { type: "string", default: "3" },
  },
});
const preset = values.preset as TinyPreset;
const promptLen = Number(values["prompt-tokens"]);
const newTokens = Number(values["new-tokens"]);
const runs = Number(values.runs);

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function time(fn: () => Promise<unknown>): Promise<number> {
  const t = performance.now();
  await fn();
  return (performance.now() - t) / 1000;
}

/** Copy bandwidth in bytes/s, counting read + write traffic, over a buffer far larger than the caches. */
function copyBandwidth(): number {
  const n = 64 * 1024 * 1024; // 256 MiB of float32
  const src = new Float32Array(n).fill(1), dst = new Float32Array(n);
  dst.set(src);
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    dst.set(src);
    times.push((performance.now() - t) / 1000);
  }
  return (2 * n * 4) / median(times);
}

const root = `./data/bench/${preset}`;
const modelDir = `${root}/model`;
try {
  await Deno.stat(`${modelDir}/config.json`);
} catch {
  await generateTinyModel({ out: modelDir, arch: "llama", preset, tokenizer: "bytes", seed: 0 });
}
const model = await loadModel(modelDir, { dataDir: `${root}/data`, device: "cpu" });
const vocab = model.tokenizer.vocabSize;
const promptIds = Array.from({ length: promptLen }, (_, i) => (i * 7919) % Math.min(vocab, 256));
const greedy = { temperature: 0, topP: 1, topK: 0 };

async function ours(n: number): Promise<void> {
  await generate(model.lm, model.tokenizer, promptIds, { maxTokens: n, sampling: greedy, stopTokenIds: [] });
}

configureTransformersOffline();
const tjs = await AutoModelForCausalLM.from_pretrained(model.compiledDir, {
  local_files_only: true,
  dtype: "fp32",
}) as PreTrainedModel;
const input = new Tensor("int64", BigInt64Array.from(promptIds.map(BigInt)), [1, promptLen]);
async function theirs(n: number): Promise<void> {
  await tjs.generate({ input_ids: input, max_new_tokens: n, do_sample: false, eos_token_id: [] });
}

async function measure(run: (n: number) => Promise<void>) {
  await run(2); // warm-up: session buffers, JIT
  const one: number[] = [], many: number[] = [];
  for (let r = 0; r < runs; r++) {
    one.push(await time(() => run(1)));
    many.push(await time(() => run(newTokens)));
  }
  const prefill = median(one);
  return {
    prefill_tok_s: promptLen / prefill,
    decode_tok_s: (newTokens - 1) / (median(many) - prefill),
  };
}

const engine = await measure(ours);
const transformersJs = await measure(theirs);
const params = parameterCount(model.lm.config);
const weightBytesPerToken = params * 4;
const bandwidth = copyBandwidth();
const result = {
  bench: "decode",
  preset,
  device: "cpu",
  dtype: "fp32",
  threads: navigator.hardwareConcurrency,
  prompt_tokens: promptLen,
  new_tokens: newTokens,
  runs,
  engine,
  transformers_js: transformersJs,
  decode_ratio: engine.decode_tok_s / transformersJs.decode_tok_s,
  prefill_ratio: engine.prefill_tok_s / transformersJs.prefill_tok_s,
  parameters: params,
  weight_bytes_per_token: weightBytesPerToken,
  copy_bandwidth_gb_s: bandwidth / 1e9,
  bandwidth_bound_decode_tok_s: bandwidth / weightBytesPerToken,
};
console.log(JSON.stringify(result, null, 2));
console.log(
  `bench:decode ${preset}: decode ${engine.decode_tok_s.toFixed(1)} tok/s vs transformers.js ` +
    `${transformersJs.decode_tok_s.toFixed(1)} tok/s (${result.decode_ratio.toFixed(2)}x); prefill ` +
    `${engine.prefill_tok_s.toFixed(0)} vs ${transformersJs.prefill_tok_s.toFixed(0)} tok/s; ` +
    `bandwidth bound ${result.bandwidth_bound_decode_tok_s.toFixed(1)} tok/s`,
);
await tjs.dispose();
await model.lm.release();
