/**
 * deno task bench:decode [--preset smollm2-135m|tiny] [--prompt-tokens N] [--new-tokens N] [--runs N]
 *
 * Prefill and decode throughput of this engine and of transformers.js
 * `generate()` on the same exported model directory, in one run, plus the
 * memory-bandwidth bound of decoding (weight bytes per token over a measured
 * copy bandwidth). Prints a JSON result (also written to
 * bench/results/decode.json), then a one-line summary. Both engines use every
 * core (onnxruntime intra-op threads = cores).
 *
 * Method, identical for both engines: one greedy generation of N tokens (no
 * EOS) with a per-token callback (our `onToken`, transformers.js' streamer);
 * prefill tok/s = prompt tokens / time to the first token; decode tok/s =
 * (N − 1) / (time of the last token − time of the first). Medians over
 * alternating rounds, each engine loaded alone.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { parameterCount } from "../src/model/layout.ts";
import type { TinyPreset } from "../src/model/tiny_model.ts";
import { benchModel } from "./bench_model.ts";
import { loadTransformersBaseline } from "./transformers_baseline.ts";
import { generate } from "../src/serve/generate.ts";
import { loadModel, prepareModel } from "../src/serve/load_model.ts";

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

const { modelDir, dataDir } = await benchModel(preset);
// Each engine is loaded alone and released before the other runs (two live
// sessions slow each other down through their thread pools), alternating for
// `runs` rounds so drift in machine load hits both alike.
interface Engine {
  /** Generates n tokens, calling onToken as each is chosen. */
  run(n: number, onToken: () => void): Promise<void>;
  close(): Promise<void>;
}
const greedy = { temperature: 0, topP: 1, topK: 0 };
const promptIds = Array.from({ length: promptLen }, (_, i) => (i * 7919) % 256);

async function openOurs(): Promise<Engine> {
  const model = await loadModel(modelDir, { dataDir, device: "cpu" });
  return {
    run: async (n, onToken) => {
      await generate(model.lm, model.tokenizer, promptIds, {
        maxTokens: n,
        sampling: greedy,
        stopTokenIds: [],
        onToken,
      });
    },
    close: () => model.lm.release(),
  };
}

async function openTransformersJs(): Promise<Engine> {
  const tjs = await loadTransformersBaseline(compiledDir, navigator.hardwareConcurrency);
  return {
    run: (n, onToken) => tjs.generate(promptIds, n, onToken),
    close: () => tjs.dispose(),
  };
}

interface Sample {
  prefill: number[];
  decode: number[];
}
async function measureRound(open: () => Promise<Engine>, into: Sample): Promise<void> {
  const engine = await open();
  await engine.run(2, () => {}); // warm-up: session buffers, JIT
  const stamps: number[] = [];
  const start = performance.now();
  await engine.run(newTokens, () => stamps.push(performance.now()));
  if (stamps.length !== newTokens) throw new Error(`expected ${newTokens} tokens, got ${stamps.length}`);
  into.prefill.push(promptLen / ((stamps[0] - start) / 1000));
  into.decode.push((newTokens - 1) / ((stamps[newTokens - 1] - stamps[0]) / 1000));
  await engine.close();
}

function summarize(s: Sample) {
  return { prefill_tok_s: median(s.prefill), decode_tok_s: median(s.decode) };
}

// Compile once up front (cached), so both engines read the same exported directory.
const { compiledDir, config } = await prepareModel(modelDir, { dataDir, device: "cpu" });
const oursSample: Sample = { prefill: [], decode: [] }, theirsSample: Sample = { prefill: [], decode: [] };
for (let r = 0; r < runs; r++) {
  await measureRound(openOurs, oursSample);
  await measureRound(openTransformersJs, theirsSample);
}
const engine = summarize(oursSample);
const transformersJs = summarize(theirsSample);
const params = parameterCount(config);
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
await Deno.mkdir("bench/results", { recursive: true });
await Deno.writeTextFile("bench/results/decode.json", JSON.stringify(result, null, 2) + "\n");
console.log(
  `bench:decode ${preset}: decode ${engine.decode_tok_s.toFixed(1)} tok/s vs transformers.js ` +
    `${transformersJs.decode_tok_s.toFixed(1)} tok/s (${result.decode_ratio.toFixed(2)}x); prefill ` +
    `${engine.prefill_tok_s.toFixed(0)} vs ${transformersJs.prefill_tok_s.toFixed(0)} tok/s; ` +
    `bandwidth bound ${result.bandwidth_bound_decode_tok_s.toFixed(1)} tok/s`,
);
