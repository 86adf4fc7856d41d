/**
 * deno task bench:train-memory [--batch N] [--seq N] [--steps N] [--threads N] [--out DIR] [--json]
 *
 * Peak memory of a training job's steps on the smollm2-135m preset (default
 * one step of a long batch, 8 x 2048 tokens), r = 8 on all 210 linear
 * layers, in a process of its own: the model and trainer are built as a
 * fine-tuning job builds them for max_length = --seq (ScaLoRA-I(10), the
 * default method; LmTrainingModel's activation budget decides micro-batches
 * of whole rows and whether layers are recomputed in the backward pass,
 * src/train/activation_memory.ts). The steps end at t = 10, so the last one
 * rescales and merges (the most a step holds). Reports peak RSS (VmHWM)
 * against weights + activations + 1 GiB and against 8 GiB, the plan, step
 * times and the load average; prints the JSON (alone with --json) and writes
 * <out>/train_memory.json (not with --json). bench:train-step runs it for
 * its default batch.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { collate } from "../src/train/batching.ts";
import { GiB } from "../src/train/activation_memory.ts";
import { initAdapterFactors, LmTrainingModel } from "../src/train/lm_training_graph.ts";
import { RecordingModel } from "../src/train/merge_log.ts";
import { Trainer } from "../src/train/trainer.ts";
import { benchModel } from "./bench_model.ts";
import { benchTrainerConfig, f32WeightBytes, FixedBatch, loadAverage, peakRssBytes } from "./fixed_batch.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    batch: { type: "string", default: "8" },
    seq: { type: "string", default: "2048" },
    steps: { type: "string", default: "1" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    out: { type: "string", default: "bench/results" },
    json: { type: "boolean", default: false },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log("deno task bench:train-memory [--batch N] [--seq N] [--steps N] [--threads N] [--out DIR] [--json]");
  Deno.exit(0);
}
const rows = Number(values.batch), seqLen = Number(values.seq), threads = Number(values.threads);
const steps = Number(values.steps);
const loadStart = loadAverage();

const { modelDir } = await benchModel("smollm2-135m");
const ckpt = await openCheckpoint(modelDir);
const lm = await LmTrainingModel.create(ckpt, { rank: 8, alpha: 16 }, { threads, maxLength: seqLen });
const model = new RecordingModel(lm, { threads });
const afterSetup = peakRssBytes();
const rowsPerRun = lm.rowsPerRun({ batchSize: rows, seqLen });
const weightBytes = f32WeightBytes(ckpt);
const rng = new Rng(1, "bench/train_memory");
const batch = collate(
  Array.from({ length: rows }, () => {
    const ids = Array.from({ length: seqLen }, () => rng.nextInt(256));
    return { inputIds: ids, labels: ids };
  }),
  { padTokenId: 0 },
);
// The job's defaults (fine_tune_config.ts: ScaLoRA, I = 10, lr 2e-4); A starts non-zero so the scaling step
// does real work, as it would ten steps into a job.
const factors = initAdapterFactors(model.adapters, 0);
for (const f of factors.values()) new Rng(2, "A").fillNormal(f.A, 0.01);
const trainer = new Trainer(model, new FixedBatch(batch), benchTrainerConfig("scalora", 10, 2e-4), {
  device: "cpu",
  threads,
  initialFactors: factors,
});
trainer.setStep(11 - steps);
const stepS: number[] = [];
let last = { loss: 0, count: 0 };
for (let i = 0; i < steps; i++) {
  const t0 = performance.now();
  last = await trainer.trainStep();
  stepS.push(Number(((performance.now() - t0) / 1000).toFixed(1)));
}
const peak = peakRssBytes();
const activations = lm.memory.bytes(rowsPerRun, seqLen);
await trainer.release();
await model.release();
ckpt.close();
const seconds = stepS.reduce((a, b) => a + b, 0);

const result = {
  bench: "train-memory",
  preset: "smollm2-135m",
  batch: `${rows}x${seqLen}`,
  threads,
  recompute: lm.recompute,
  rows_per_run: rowsPerRun,
  method: "ScaLoRA-I(10), steps ending at t = 10 (the last one rescales and merges)",
  steps,
  activation_estimate_bytes: activations,
  activation_budget_bytes: lm.activationBudget,
  weights_bytes: weightBytes,
  peak_rss_bytes: peak,
  rss_after_setup_bytes: afterSetup,
  budget_bytes: weightBytes + activations + GiB,
  within_budget: peak <= weightBytes + activations + GiB,
  limit_bytes: 8 * GiB,
  within_limit: peak <= 8 * GiB,
  step_s: stepS,
  loss: last.loss,
  counted_tokens: last.count,
  load_average: { start: loadStart, end: loadAverage() },
};
if (values.json) {
  console.log(JSON.stringify(result));
  Deno.exit(0);
}
await Deno.mkdir(values.out, { recursive: true });
await Deno.writeTextFile(`${values.out}/train_memory.json`, JSON.stringify(result, null, 2) + "\n");
console.log(JSON.stringify(result, null, 2));
console.log(
  `bench:train-memory smollm2-135m ${rows}x${seqLen}: peak RSS ${(peak / GiB).toFixed(2)} GiB (limit 8, budget ${
    (result.budget_bytes / GiB).toFixed(2)
  }), ` +
    `${lm.recompute ? "layers recomputed" : "no recomputation"}, ${rowsPerRun} rows per run, step ${
      seconds.toFixed(0)
    } s, load ${loadStart?.[0] ?? "?"}`,
);
