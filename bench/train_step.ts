/**
 * deno task bench:train-step [--warm N] [--steps N] [--rank R] [--batch N] [--seq N] [--threads N]
 *
 * Training step time on the smollm2-135m preset (random weights, bytes
 * tokenizer; generated under ./data/bench/smollm2-135m/model like
 * bench:decode), batch 4 x 256 tokens, r = 8 on all 7 linear modules of all
 * 30 layers (210 adapters), CPU, intra-op threads = all cores: LoRA,
 * ScaLoRA-I(10) and ScaLoRA (I = 1), each split into forward/backward,
 * scaling (Grams + host solve), merge (W update + merge log, as fineTune runs
 * it) and optimizer (AdamW with the moment transform).
 *
 * The three trainers share one model and the same batch and run round-robin,
 * so drift in machine load (a shared 2-core box) hits all alike. A starts
 * non-zero (N(0, 0.01²)) so every scaling step does real work from t = 0.
 * Step time per method = forward/backward + what the method adds. All three
 * run the identical forward/backward (one shared session, same batch), so it
 * is estimated once, the median over every measured step of every method
 * (on a shared box single steps vary 2x with other load); added: medians of
 * scaling, merge and optimizer (LoRA, ScaLoRA), or for ScaLoRA-I(10) its
 * optimizer median + (scaling + merge of its scaling step) / 10, the cost
 * amortised over the interval (its step counter is set so that t = 10 falls
 * among the measured steps). The raw per-method medians of whole steps are
 * reported too (`raw_step_ms`, `raw_ratio_…`).
 * Prints the JSON (also bench/results/train_step.json) and a one-line summary.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { benchModel } from "./bench_model.ts";
import { collate, type LmBatch } from "../src/train/batching.ts";
import { initAdapterFactors, LmTrainingModel } from "../src/train/lm_training_graph.ts";
import { RecordingModel } from "../src/train/merge_log.ts";
import { type StepReport, Trainer, type TrainerConfig, type TrainMode } from "../src/train/trainer.ts";
import type { BatchSource, DataPosition } from "../src/train/types.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    warm: { type: "string", default: "1" },
    steps: { type: "string", default: "5" },
    rank: { type: "string", default: "8" },
    batch: { type: "string", default: "4" },
    seq: { type: "string", default: "256" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    out: { type: "string", default: "bench/results" },
  },
});
const warm = Number(values.warm), measured = Number(values.steps), rank = Number(values.rank);
const batchSize = Number(values.batch), seqLen = Number(values.seq), threads = Number(values.threads);
const I10 = 10;
if (measured < 2 || I10 - measured + 1 < warm) throw new Error("need 2 <= --steps and --warm + --steps <= 11");

const { modelDir } = await benchModel("smollm2-135m");

/** The same batch forever: every step costs the same. */
class FixedBatch implements BatchSource<LmBatch> {
  #i = 0;
  constructor(readonly batch: LmBatch) {}
  next(): LmBatch {
    this.#i++;
    return this.batch;
  }
  position(): DataPosition {
    return { epoch: 0, index: this.#i };
  }
  seek(p: DataPosition): void {
    this.#i = p.index;
  }
}

const rng = new Rng(1, "bench/train_step");
const rows = Array.from({ length: batchSize }, () => Array.from({ length: seqLen }, () => rng.nextInt(256)));
const batch = collate(rows.map((ids) => ({ inputIds: ids, labels: ids })), { padTokenId: 0 });

const ckpt = await openCheckpoint(modelDir);
let t0 = performance.now();
const model = new RecordingModel(
  await LmTrainingModel.create(ckpt, { rank, alpha: 2 * rank }, { threads }),
  { threads },
);
const setupS = (performance.now() - t0) / 1000;
const initial = initAdapterFactors(model.adapters, 0);
for (const f of initial.values()) new Rng(2, "A").fillNormal(f.A, 0.01);

const config = (mode: TrainMode, interval: number): TrainerConfig => ({
  mode,
  interval,
  lipschitz: { kind: "auto" },
  optimizer: { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
  schedule: { decay: "constant", warmupSteps: 0, totalSteps: 1000 },
  maxGradNorm: 1,
  accumulationSteps: 1,
  seed: 0,
  init: { kind: "kaiming-uniform" },
});
const runs = [
  { key: "lora", mode: "lora" as const, interval: 1 },
  { key: "scalora_i10", mode: "scalora" as const, interval: I10 },
  { key: "scalora", mode: "scalora" as const, interval: 1 },
].map((r) => ({
  ...r,
  trainer: new Trainer(model, new FixedBatch(batch), config(r.mode, r.interval), {
    device: "cpu",
    threads,
    initialFactors: initial,
  }),
  reports: [] as { report: StepReport; totalMs: number }[],
}));

t0 = performance.now();
for (let i = 0; i < warm + measured; i++) {
  for (const r of runs) {
    // I(10): warm-up at t = 0 (a scaling step: kernels warmed), then measured steps ending at t = 10.
    if (r.interval === I10 && i === warm) r.trainer.setStep(I10 - measured + 1);
    const s = performance.now();
    const report = await r.trainer.trainStep();
    const totalMs = performance.now() - s;
    if (i >= warm) r.reports.push({ report, totalMs });
    console.error(`  ${r.key} step ${report.step}: ${(totalMs / 1000).toFixed(2)} s`);
  }
}
const benchS = (performance.now() - t0) / 1000;

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b), h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};
const round = (x: number, d = 4) => Number(x.toPrecision(d));
type Phase = "forwardBackward" | "scaling" | "merge" | "optimizer";
const PHASES: Phase[] = ["forwardBackward", "scaling", "merge", "optimizer"];
// Every method runs the same forward/backward graph (one shared session) on the same batch, so their
// fwd/bwd times differ only by machine noise: the estimate pools them. What differs is added per method.
const fwdBwd = median(runs.flatMap((r) => r.reports.map((x) => x.report.timings.forwardBackward)));
const summary = Object.fromEntries(runs.map((r) => {
  const scalingSteps = r.reports.filter((x) => x.report.scaling !== null);
  const plain = r.reports.filter((x) => x.report.scaling === null);
  const phase = (p: Phase, xs = r.reports) => median(xs.map((x) => x.report.timings[p]));
  const phases = Object.fromEntries(PHASES.map((p) => [p, round(phase(p))]));
  let overhead: number, rawMs: number, eventMs: number | null = null;
  if (r.interval === I10) {
    if (scalingSteps.length !== 1) throw new Error(`expected one scaling step for I(10), got ${scalingSteps.length}`);
    const ev = scalingSteps[0].report.timings;
    eventMs = ev.scaling + ev.merge;
    overhead = phase("optimizer") + eventMs / I10;
    rawMs = median(plain.map((x) => x.totalMs)) + eventMs / I10;
  } else {
    overhead = phase("scaling") + phase("merge") + phase("optimizer");
    rawMs = median(r.reports.map((x) => x.totalMs));
  }
  const ev = scalingSteps.at(-1)?.report.scaling;
  return [r.key, {
    step_ms: round(fwdBwd + overhead),
    overhead_ms: round(overhead),
    raw_step_ms: round(rawMs),
    phases_median_ms: phases,
    ...(eventMs === null ? {} : { scaling_event_ms: round(eventMs), amortised_event_ms: round(eventMs / I10) }),
    scaling_steps: scalingSteps.length,
    measured_steps: r.reports.length,
    ...(ev ? { columnwise_share: round(ev.columnwiseShare), mean_alpha_beta: round(ev.meanAlphaBeta) } : {}),
    step_ms_all: r.reports.map((x) => round(x.totalMs)),
    fwd_bwd_ms_all: r.reports.map((x) => round(x.report.timings.forwardBackward)),
  }];
}));
const lora = summary.lora.step_ms, i10 = summary.scalora_i10.step_ms, s1 = summary.scalora.step_ms;
const result = {
  bench: "train-step",
  preset: "smollm2-135m",
  device: "cpu",
  threads,
  batch: `${batchSize}x${seqLen}`,
  rank,
  adapters: model.adapters.length,
  warm_steps: warm,
  measured_steps: measured,
  setup_s: round(setupS),
  wall_s: round(benchS),
  load_average: loadAverage(),
  fwd_bwd_median_ms: round(fwdBwd),
  runs: summary,
  ratio_scalora_i10_to_lora: round(i10 / lora),
  ratio_scalora_to_lora: round(s1 / lora),
  raw_ratio_scalora_i10_to_lora: round(
    (summary.scalora_i10.raw_step_ms as number) / (summary.lora.raw_step_ms as number),
  ),
};
for (const r of runs) await r.trainer.release();
await model.release();
ckpt.close();

await Deno.mkdir(values.out, { recursive: true });
await Deno.writeTextFile(`${values.out}/train_step.json`, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));
const ms = (k: string, p: Phase) => (summary[k].phases_median_ms as Record<Phase, number>)[p].toFixed(0);
console.log(
  `bench:train-step smollm2-135m ${batchSize}x${seqLen} r=${rank}, ${threads} threads: fwd/bwd ${
    (fwdBwd / 1000).toFixed(2)
  } s (all methods); LoRA ${(lora / 1000).toFixed(2)} s (optim ${ms("lora", "optimizer")} ms); ScaLoRA-I(10) ${
    (i10 / 1000).toFixed(2)
  } s (event ${(summary.scalora_i10.scaling_event_ms as number).toFixed(0)} ms / 10, optim ${
    ms("scalora_i10", "optimizer")
  } ms); ScaLoRA ${(s1 / 1000).toFixed(2)} s (scaling ${ms("scalora", "scaling")} ms, merge ${
    ms("scalora", "merge")
  } ms, optim ${ms("scalora", "optimizer")} ms); ratio I(10)/LoRA ${
    result.ratio_scalora_i10_to_lora.toFixed(3)
  } (target ≤ 1.05; raw per-method medians ${result.raw_ratio_scalora_i10_to_lora.toFixed(3)}), ScaLoRA/LoRA ${
    result.ratio_scalora_to_lora.toFixed(3)
  }`,
);

function loadAverage(): number[] | null {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return null;
  }
}
