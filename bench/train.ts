/**
 * deno task bench:train [--facts N] [--rank R] [--alpha A] [--lr X] [--epochs N] [--batch-size N]
 *   [--eval-every N] [--schedule constant|linear|cosine] [--methods lora,scalora,scalora_i10] [--seed S] [--out DIR]
 *
 * LoRA vs ScaLoRA vs ScaLoRA-I(10) on a language-modelling task that needs
 * more than rank-r capacity: memorising N random facts `k:<key>=` → `<value>`
 * (4 random letters each, prompt/completion, the completion and EOS trained)
 * with a random tiny Llama (the `tiny` preset: 2 layers, d 64, bytes
 * tokenizer) and adapters on every linear layer. All runs go through
 * fineTune() with the same seed (same adapter init, same batch order), rank,
 * alpha, learning rate and schedule; ScaLoRA uses the default auto L.
 *
 * Loss = mean token cross-entropy over the whole training set (the
 * memorisation objective), measured every --eval-every steps (fineTune's
 * validation pass with the training file as validation file).
 * Reported: the loss-vs-step table, LoRA's final loss, the first evaluated
 * step at which each ScaLoRA run is at or below it, and that step over
 * LoRA's total (target ≤ 0.6). JSON in <out>/train.json, plot in
 * <out>/train.svg, a one-line summary last.
 */
import { parseArgs } from "node:util";
import { Rng } from "../src/model/rng.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { fineTune, type FineTuneOptions } from "../src/train/fine_tune.ts";
import { lineChartSvg } from "./svg_plot.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    facts: { type: "string", default: "512" },
    "key-len": { type: "string", default: "4" },
    "value-len": { type: "string", default: "4" },
    rank: { type: "string", default: "4" },
    alpha: { type: "string", default: "8" },
    lr: { type: "string", default: "1e-2" },
    epochs: { type: "string", default: "30" },
    "batch-size": { type: "string", default: "32" },
    "eval-every": { type: "string", default: "25" },
    schedule: { type: "string", default: "constant" },
    methods: { type: "string", default: "lora,scalora,scalora_i10" },
    seed: { type: "string", default: "0" },
    threads: { type: "string", default: "1" },
    out: { type: "string", default: "bench/results" },
  },
});
const keyLen = Number(values["key-len"]), valueLen = Number(values["value-len"]);
const nFacts = Number(values.facts), rank = Number(values.rank), alpha = Number(values.alpha);
const lr = Number(values.lr), epochs = Number(values.epochs), batchSize = Number(values["batch-size"]);
const evalEvery = Number(values["eval-every"]), seed = Number(values.seed), threads = Number(values.threads);
const schedule = values.schedule as "constant" | "linear" | "cosine";

const RUNS = {
  lora: { label: "LoRA", method: "lora", interval: 1, color: "#d62728" },
  scalora: { label: "ScaLoRA", method: "scalora", interval: 1, color: "#1f77b4" },
  scalora_i10: { label: "ScaLoRA-I(10)", method: "scalora", interval: 10, color: "#2ca02c" },
} as const;
type RunKey = keyof typeof RUNS;
const keys = values.methods.split(",") as RunKey[];
if (!keys.every((k) => k in RUNS)) throw new Error(`--methods: choose from ${Object.keys(RUNS).join(", ")}`);

const modelDir = "./data/bench/train-tiny/model";
try {
  await Deno.stat(`${modelDir}/config.json`);
} catch {
  await generateTinyModel({ out: modelDir, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 0 });
}

/** N distinct random keys, each with a random value (the facts do not depend on --seed: same task). */
function factsJsonl(n: number): string {
  const rng = new Rng(12345, "bench/train/facts");
  const word = (len: number) => Array.from({ length: len }, () => String.fromCharCode(97 + rng.nextInt(26))).join("");
  const seen = new Set<string>(), lines: string[] = [];
  while (lines.length < n) {
    const key = word(keyLen);
    if (seen.has(key)) continue;
    seen.add(key);
    lines.push(JSON.stringify({ prompt: `k:${key}=`, completion: word(valueLen) }));
  }
  return lines.join("\n") + "\n";
}
const data = factsJsonl(nFacts);

interface RunResult {
  /** Full-training-set loss at steps 0 (before training), evalEvery, …, total. */
  evals: { step: number; loss: number; accuracy: number }[];
  seconds: number;
  msPerStep: number;
  totalSteps: number;
}

async function runOne(key: RunKey): Promise<RunResult> {
  const r = RUNS[key];
  const evals: RunResult["evals"] = [];
  const stepMs: number[] = [];
  const t0 = performance.now();
  let last = t0;
  const opts: FineTuneOptions = {
    model: modelDir,
    trainText: data,
    validationText: data,
    method: r.method,
    rank,
    alpha,
    interval: r.interval,
    epochs,
    batchSize,
    learningRate: lr,
    schedule,
    maxGradNorm: 0,
    maxLength: 32,
    seed,
    checkpointDir: await Deno.makeTempDir({ prefix: "bench-train-" }),
    checkpointEvery: 0,
    evalEvery,
    threads,
    onEvent: (e) => {
      if (e.type !== "metrics") return;
      const now = performance.now();
      stepMs.push(now - last);
      last = now;
      if (e.validLoss !== undefined) {
        evals.push({ step: e.step, loss: e.validLoss, accuracy: e.validTokenAccuracy ?? 0 });
      }
      if (e.step % 200 === 0) console.error(`  ${key} step ${e.step}/${e.totalSteps} loss ${e.trainLoss.toFixed(4)}`);
    },
  };
  try {
    const res = await fineTune(opts);
    stepMs.sort((a, b) => a - b);
    return {
      evals,
      seconds: (performance.now() - t0) / 1000,
      msPerStep: stepMs[Math.floor(stepMs.length / 2)],
      totalSteps: res.steps,
    };
  } finally {
    await Deno.remove(opts.checkpointDir, { recursive: true });
  }
}

const results = new Map<RunKey, RunResult>();
for (const k of keys) {
  console.error(`running ${k} ...`);
  results.set(k, await runOne(k));
}

const round = (x: number, d = 4) => Number(x.toPrecision(d));
const lora = results.get("lora");
const loraFinal = lora?.evals.at(-1)?.loss;
const reach = (r: RunResult) => {
  if (loraFinal === undefined) return null;
  return r.evals.find((e) => e.loss <= loraFinal)?.step ?? null;
};
const json: Record<string, unknown> = {
  bench: "train",
  task: { facts: nFacts, key_letters: keyLen, value_letters: valueLen, format: "prompt/completion" },
  model: "tiny preset (llama, 2 layers, hidden 64, intermediate 128, bytes tokenizer), random init",
  config: {
    rank,
    alpha,
    lr,
    epochs,
    batch_size: batchSize,
    schedule,
    max_grad_norm: 0,
    targets: "all linear",
    lipschitz: "auto",
    eval_every: evalEvery,
    seed,
    threads,
  },
  lora_final_loss: loraFinal === undefined ? null : round(loraFinal, 6),
  runs: Object.fromEntries([...results].map(([k, r]) => {
    const steps = reach(r);
    return [k, {
      final_loss: round(r.evals.at(-1)!.loss, 6),
      final_token_accuracy: round(r.evals.at(-1)!.accuracy),
      total_steps: r.totalSteps,
      steps_to_lora_final: steps,
      ratio_to_lora: steps === null || !lora ? null : round(steps / lora.totalSteps),
      wall_s: round(r.seconds),
      median_ms_per_step: round(r.msPerStep),
      losses: r.evals.map((e) => [e.step, round(e.loss, 5)]),
    }];
  })),
};
await Deno.mkdir(values.out, { recursive: true });
await Deno.writeTextFile(`${values.out}/train.json`, JSON.stringify(json, null, 2) + "\n");
await Deno.writeTextFile(
  `${values.out}/train.svg`,
  lineChartSvg(
    keys.map((k) => ({
      name: RUNS[k].label,
      color: RUNS[k].color,
      points: results.get(k)!.evals.map((e) => [e.step, e.loss] as [number, number]),
    })),
    {
      title: `Memorising ${nFacts} random facts, tiny Llama, r = ${rank}, lr ${lr}`,
      xLabel: "step",
      yLabel: "training-set loss (token CE)",
      logY: true,
    },
  ),
);

// Table: every evaluation step (at most ~25 rows, evenly spaced).
const steps = results.get(keys[0])!.evals.map((e) => e.step);
const stride = Math.max(1, Math.ceil(steps.length / 25));
console.log(`step   ${keys.map((k) => k.padStart(12)).join(" ")}`);
steps.forEach((s, i) => {
  if (i % stride !== 0 && i !== steps.length - 1) return;
  console.log(`${String(s).padStart(5)}  ${keys.map((k) => results.get(k)!.evals[i].loss.toFixed(4).padStart(12)).join(" ")}`);
});
const parts = keys.filter((k) => k !== "lora").map((k) => {
  const s = reach(results.get(k)!);
  return s === null
    ? `${RUNS[k].label} never reaches it`
    : `${RUNS[k].label} reaches it at step ${s} (${(s / lora!.totalSteps).toFixed(2)}x)`;
});
console.log(JSON.stringify(json.runs && Object.fromEntries(
  Object.entries(json.runs as Record<string, Record<string, unknown>>).map(([k, v]) => [k, { ...v, losses: undefined }]),
)));
console.log(
  `bench:train ${nFacts} facts, r=${rank}, lr ${lr}: LoRA final loss ${loraFinal?.toFixed(4)} after ${lora?.totalSteps} steps; ` +
    parts.join(", ") + ` (target ≤ 0.6x); plot ${values.out}/train.svg`,
);
