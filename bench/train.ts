/**
 * deno task bench:train [--facts N] [--key-len N] [--value-len N] [--rank R] [--alpha A] [--lr X]
 *   [--epochs N] [--batch-size N] [--eval-every N] [--schedule linear|cosine|constant] [--factor-scale X]
 *   [--methods lora,scalora,...] [--seed S] [--threads N] [--out DIR]
 *
 * LoRA vs ScaLoRA vs ScaLoRA-I(10) on a language-modelling task that needs
 * more than rank-r capacity: memorising N random facts, prompt `k:<key>=`
 * (2 letters of [A-Za-z]) → completion `<value>` (1 letter of [a-z]) + EOS,
 * on a random tiny Llama (the `tiny` preset: 2 layers, hidden 64,
 * intermediate 128, bytes tokenizer; lm_head scaled by 1/8 so its logits are
 * O(1) like a trained model's, not the preset's std ~8) with adapters on all
 * 14 linear layers. Every run goes through fineTune() with the same seed
 * (adapter init, batch order), rank, alpha, learning rate and schedule.
 *
 * Choices (defaults), tuned on LoRA first: lr 3e-3 is LoRA's best of
 * {1e-3, 3e-3, 1e-2} (1e-2 diverges); linear decay (fineTune's default, and a
 * final loss that is not a lucky dip of a noisy curve); r = 2 (alpha 4,
 * s = 2) with 600 facts and 200 epochs, where LoRA is clearly capacity-bound.
 * ScaLoRA's L: the auto rule with factorScale 0.5 (rescaled factors' RMS =
 * half of B's init RMS), the best of {0.16, 0.3, 0.5, 1} on this task; the
 * default rule (`lipschitz: "auto"`: keep q = 0.99 of the adapter's column
 * magnitude per step, merged from each column's smaller side,
 * src/train/lipschitz.ts) is also run and reported
 * (`*_default_l`).
 *
 * Loss = mean token cross-entropy over the whole training set (the
 * memorisation objective), every --eval-every steps (fineTune's validation
 * pass with the training file as validation file). Reported: the
 * loss-vs-step table, LoRA's final loss, the first evaluated step at which
 * each ScaLoRA run is at or below it, and that step over LoRA's total (target
 * ≤ 0.6). JSON in <out>/train.json, plot in <out>/train.svg, the one-line
 * summary last.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { writeSafetensors } from "../src/model/safetensors.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { fineTune, type FineTuneOptions } from "../src/train/fine_tune.ts";
import { lineChartSvg } from "./svg_plot.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    facts: { type: "string", default: "600" },
    "key-len": { type: "string", default: "2" },
    "value-len": { type: "string", default: "1" },
    rank: { type: "string", default: "2" },
    alpha: { type: "string", default: "4" },
    lr: { type: "string", default: "3e-3" },
    epochs: { type: "string", default: "200" },
    "batch-size": { type: "string", default: "32" },
    "eval-every": { type: "string", default: "100" },
    schedule: { type: "string", default: "linear" },
    "factor-scale": { type: "string", default: "0.5" },
    methods: { type: "string", default: "lora,scalora,scalora_i10,scalora_default_l,scalora_i10_default_l" },
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
const factorScale = Number(values["factor-scale"]);

const tuned = { factorScale };
const RUNS: Record<string, {
  label: string;
  method: "lora" | "scalora";
  interval: number;
  lipschitz: FineTuneOptions["lipschitz"];
  color: string;
  dashed?: boolean;
}> = {
  lora: { label: "LoRA", method: "lora", interval: 1, lipschitz: "auto", color: "#d62728" },
  scalora: { label: "ScaLoRA", method: "scalora", interval: 1, lipschitz: tuned, color: "#1f77b4" },
  scalora_i10: { label: "ScaLoRA-I(10)", method: "scalora", interval: 10, lipschitz: tuned, color: "#2ca02c" },
  scalora_default_l: {
    label: "ScaLoRA, default L",
    method: "scalora",
    interval: 1,
    lipschitz: "auto",
    color: "#1f77b4",
    dashed: true,
  },
  scalora_i10_default_l: {
    label: "ScaLoRA-I(10), default L",
    method: "scalora",
    interval: 10,
    lipschitz: "auto",
    color: "#2ca02c",
    dashed: true,
  },
};
const keys = values.methods.split(",");
if (!keys.every((k) => k in RUNS)) throw new Error(`--methods: choose from ${Object.keys(RUNS).join(", ")}`);

const HEAD_SCALE = 0.125;
const modelDir = "./data/bench/train-tiny/model";
if (!(await Deno.stat(`${modelDir}/config.json`).catch(() => null))) {
  // Built aside and renamed into place: a half-written model is never reused.
  const tmp = `${modelDir}.partial-${Deno.pid}`;
  await generateTinyModel({ out: tmp, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 0 });
  const ckpt = await openCheckpoint(tmp);
  const tensors = await Promise.all([...ckpt.tensors].map(async ([name, t]) => {
    const data = await ckpt.read(name);
    return { name, shape: t.shape, data: name === "lm_head.weight" ? data.map((v) => v * HEAD_SCALE) : data };
  }));
  ckpt.close();
  await writeSafetensors(`${tmp}/model.safetensors`, tensors, { dtype: "F32", metadata: { format: "pt" } });
  await Deno.remove(modelDir, { recursive: true }).catch(() => {});
  await Deno.rename(tmp, modelDir);
}

const KEY_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
const VALUE_LETTERS = "abcdefghijklmnopqrstuvwxyz";

/** N distinct random keys with random values (independent of --seed: the same task for every seed). */
function factsJsonl(n: number): string {
  const rng = new Rng(12345, "bench/train/facts");
  const word = (len: number, letters: string) =>
    Array.from({ length: len }, () => letters[rng.nextInt(letters.length)]).join("");
  if (n > KEY_LETTERS.length ** keyLen) throw new Error(`--facts: at most ${KEY_LETTERS.length ** keyLen} keys`);
  const seen = new Set<string>(), lines: string[] = [];
  while (lines.length < n) {
    const key = word(keyLen, KEY_LETTERS);
    if (seen.has(key)) continue;
    seen.add(key);
    lines.push(JSON.stringify({ prompt: `k:${key}=`, completion: word(valueLen, VALUE_LETTERS) }));
  }
  return lines.join("\n") + "\n";
}
const data = factsJsonl(nFacts);

interface RunResult {
  /** Full-training-set loss at steps evalEvery, 2·evalEvery, …, total. */
  evals: { step: number; loss: number; accuracy: number }[];
  seconds: number;
  msPerStep: number;
  totalSteps: number;
  columnwiseShare: number | null;
}

async function runOne(key: string): Promise<RunResult> {
  const r = RUNS[key];
  const evals: RunResult["evals"] = [], stepMs: number[] = [], shares: number[] = [];
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
    lipschitz: r.lipschitz,
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
      // Steps with a validation pass are left out of the step time.
      if (e.validLoss === undefined) stepMs.push(now - last);
      last = now;
      if (e.scaling) shares.push(e.scaling.columnwiseShare);
      if (e.validLoss !== undefined) evals.push({ step: e.step, loss: e.validLoss, accuracy: e.validTokenAccuracy! });
      if (e.step % 1000 === 0) console.error(`  ${key} step ${e.step}/${e.totalSteps} loss ${e.trainLoss.toFixed(4)}`);
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
      columnwiseShare: shares.length ? shares.reduce((a, b) => a + b, 0) / shares.length : null,
    };
  } finally {
    await Deno.remove(opts.checkpointDir, { recursive: true });
  }
}

const wall = performance.now();
const results = new Map<string, RunResult>();
for (const k of keys) {
  console.error(`running ${k} ...`);
  results.set(k, await runOne(k));
}

const round = (x: number, d = 4) => Number(x.toPrecision(d));
const lora = results.get("lora");
const loraFinal = lora?.evals.at(-1)?.loss;
const reach = (r: RunResult) => loraFinal === undefined ? null : r.evals.find((e) => e.loss <= loraFinal)?.step ?? null;
const runsJson = Object.fromEntries([...results].map(([k, r]) => {
  const steps = reach(r);
  return [k, {
    final_loss: round(r.evals.at(-1)!.loss, 6),
    final_token_accuracy: round(r.evals.at(-1)!.accuracy),
    total_steps: r.totalSteps,
    steps_to_lora_final: steps,
    ratio_to_lora: steps === null || !lora ? null : round(steps / lora.totalSteps),
    lipschitz: RUNS[k].method === "lora" ? null : RUNS[k].lipschitz,
    mean_columnwise_share: r.columnwiseShare === null ? null : round(r.columnwiseShare),
    median_ms_per_step: round(r.msPerStep),
    wall_s: round(r.seconds),
  }];
}));
const json = {
  bench: "train",
  task: {
    facts: nFacts,
    prompt: `k:<${keyLen} of [A-Za-z]>=`,
    completion: `<${valueLen} of [a-z]> + EOS`,
    trained_tokens_per_fact: valueLen + 1,
  },
  model: "tiny preset: llama, 2 layers, hidden 64, intermediate 128, 4 heads / 2 kv, bytes tokenizer (vocab 259), " +
    `random init seed 0, lm_head x ${HEAD_SCALE}`,
  config: {
    rank,
    alpha,
    lr,
    epochs,
    batch_size: batchSize,
    schedule,
    warmup: 0,
    max_grad_norm: 0,
    targets: "all 7 linear modules x 2 layers",
    tuned_factor_scale: factorScale,
    eval_every: evalEvery,
    seed,
    threads,
    device: "cpu",
  },
  lora_final_loss: loraFinal === undefined ? null : round(loraFinal, 6),
  wall_s: round((performance.now() - wall) / 1000),
  runs: runsJson,
  losses: Object.fromEntries([...results].map(([k, r]) => [k, r.evals.map((e) => [e.step, round(e.loss, 5)])])),
};
await Deno.mkdir(values.out, { recursive: true });
await Deno.writeTextFile(`${values.out}/train.json`, JSON.stringify(json, null, 2) + "\n");
await Deno.writeTextFile(
  `${values.out}/train.svg`,
  lineChartSvg(
    keys.map((k) => ({
      name: RUNS[k].label,
      color: RUNS[k].color,
      dashed: RUNS[k].dashed,
      points: results.get(k)!.evals.map((e) => [e.step, e.loss] as [number, number]),
    })),
    {
      title: `Memorising ${nFacts} random facts: tiny Llama, r = ${rank}, lr ${lr}`,
      xLabel: "step",
      yLabel: "training-set loss (token CE)",
    },
  ),
);

// The table: every evaluation up to ~20 rows, evenly spaced, and the last.
const steps = results.get(keys[0])!.evals.map((e) => e.step);
const stride = Math.max(1, Math.ceil(steps.length / 20));
const col = (k: string) => k.replace("scalora", "sca").replace("_default_l", "/defL").padStart(12);
console.log(`step  ${keys.map(col).join(" ")}`);
steps.forEach((s, i) => {
  if (i % stride !== 0 && i !== steps.length - 1) return;
  console.log(
    `${String(s).padStart(5)} ${keys.map((k) => results.get(k)!.evals[i].loss.toFixed(4).padStart(12)).join(" ")}`,
  );
});
console.log(JSON.stringify({ lora_final_loss: json.lora_final_loss, runs: runsJson }));
const reachText = (k: string) => {
  if (!results.has(k)) return null;
  const s = reach(results.get(k)!);
  return s === null
    ? `${RUNS[k].label} never reaches it`
    : `${RUNS[k].label} at step ${s} (${(s / lora!.totalSteps).toFixed(2)}x)`;
};
console.log(
  `bench:train ${nFacts} facts, r=${rank}, lr ${lr}: LoRA final loss ${
    loraFinal?.toFixed(4)
  } after ${lora?.totalSteps} ` +
    `steps; reached by ${keys.filter((k) => k !== "lora").map(reachText).join(", ")} (target ≤ 0.60x); ` +
    `${json.wall_s.toFixed(0)} s, plot ${values.out}/train.svg`,
);
