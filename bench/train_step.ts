/**
 * deno task bench:train-step [--device cpu|webgpu|cuda] [--json] [--warm N] [--steps N] [--rank R] [--batch N]
 *   [--seq N] [--threads N] [--out DIR]
 *
 * Training step time on the smollm2-135m preset (random weights, bytes
 * tokenizer; generated under ./data/bench/smollm2-135m/model like
 * bench:decode), batch 4 x 256 tokens, r = 8 on all 7 linear modules of all
 * 30 layers (210 adapters), intra-op threads = all cores: LoRA,
 * ScaLoRA-I(10) and ScaLoRA (I = 1), each split into phases.
 *
 * What it reports, and how:
 * - FLOPs: the matrix products of the training graph itself (MatMul / Gemm
 *   nodes, attention's batched products included, src/onnx/graph_cost.ts) at
 *   the bench's sizes.
 * - The limit: what onnxruntime's own MatMul reaches on those product shapes
 *   with the same device and threads (bench/matmul_limit.ts), measured once
 *   per round between the steps; efficiency = achieved GFLOP/s / limit.
 *   Each round pairs a step with the limit measured beside it, so drift in
 *   machine load (a shared 2-core box) hits both alike.
 * - Phases: forward, backward and loss (the vocabulary projection with the
 *   cross-entropy and its gradient) from onnxruntime's profile of a LoRA and
 *   a ScaLoRA step run after the measured ones on a profiled model
 *   (bench/step_profile.ts; the profiler keeps memory per run, so the
 *   measured steps run without it); scaling (Grams + host solve), merge and
 *   optimizer as the trainer times them, with the onnxruntime kernel time
 *   of each from the profiled steps.
 * - Peak RSS (VmHWM) of the measured steps against weights + activations
 *   (the most bytes the step's values hold at once, graph_cost.ts
 *   peakLiveBytes) + 1 GiB; tokens/s; checkpoint bytes, and a projection for
 *   a default job.
 *
 * The three trainers share one model and the same batch and run
 * round-robin. A starts non-zero (N(0, 0.01²)) so every scaling step does
 * real work from t = 0. All three run the identical forward/backward (one
 * shared session, same batch), so it is estimated once, the median over
 * every measured step of every method; added per method: medians of scaling,
 * merge and optimizer (LoRA, ScaLoRA), or for ScaLoRA-I(10) its optimizer
 * median + (scaling + merge of its scaling step) / 10, the cost amortised
 * over the interval (its step counter is set so that t = 10 falls among the
 * measured steps). The raw per-method medians of whole steps are reported
 * too (`raw_step_ms`, `raw_ratio_…`).
 * Prints a table and a one-line summary, or with --json the JSON alone; the
 * JSON is also written to <out>/train_step[-<device>].json.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import { parseArgs } from "node:util";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { graphCost, type MatMulCost } from "../src/onnx/graph_cost.ts";
import { GiB, lmGraphDims } from "../src/train/activation_memory.ts";
import { DEVICES } from "../src/runtime/device.ts";
import type { Device } from "../src/runtime/session.ts";
import { collate } from "../src/train/batching.ts";
import { initAdapterFactors, LmTrainingModel } from "../src/train/lm_training_graph.ts";
import { foldDue, RecordingModel } from "../src/train/merge_log.ts";
import { saveTrainingCheckpoint } from "../src/train/train_checkpoint.ts";
import { type StepReport, Trainer } from "../src/train/trainer.ts";
import { benchModel } from "./bench_model.ts";
import { benchTrainerConfig, f32WeightBytes, FixedBatch, loadAverage, peakRssBytes } from "./fixed_batch.ts";
import { type LimitRound, MatMulLimit } from "./matmul_limit.ts";
import { type GraphRunPhases, graphRunPhases, modelRuns, readProfileEvents } from "./step_profile.ts";

const { values } = parseArgs({
  args: Deno.args,
  options: {
    device: { type: "string", default: "cpu" },
    json: { type: "boolean", default: false },
    warm: { type: "string", default: "1" },
    steps: { type: "string", default: "5" },
    rank: { type: "string", default: "8" },
    batch: { type: "string", default: "4" },
    seq: { type: "string", default: "256" },
    threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    out: { type: "string", default: "bench/results" },
    help: { type: "boolean", default: false },
  },
});
if (values.help) {
  console.log(
    "deno task bench:train-step [--device cpu|webgpu|cuda] [--json] [--warm N] [--steps N] [--rank R] [--batch N] " +
      "[--seq N] [--threads N] [--out DIR]",
  );
  Deno.exit(0);
}
const device = values.device as Device;
if (!DEVICES.includes(device)) throw new Error(`--device must be one of ${DEVICES.join(", ")}`);
const warm = Number(values.warm), measured = Number(values.steps), rank = Number(values.rank);
const batchSize = Number(values.batch), seqLen = Number(values.seq), threads = Number(values.threads);
const I10 = 10;
if (measured < 2 || I10 - measured + 1 < warm) throw new Error("need 2 <= --steps and --warm + --steps <= 11");
const log = (line: string) => console.error(line);
const loadStart = loadAverage();

const { modelDir } = await benchModel("smollm2-135m");

const rng = new Rng(1, "bench/train_step");
const rows = Array.from({ length: batchSize }, () => Array.from({ length: seqLen }, () => rng.nextInt(256)));
const batch = collate(rows.map((ids) => ({ inputIds: ids, labels: ids })), { padTokenId: 0 });
const tokens = batchSize * seqLen;

const ckpt = await openCheckpoint(modelDir);
let t0 = performance.now();
const lm = await LmTrainingModel.create(ckpt, { rank, alpha: 2 * rank }, { device, threads });
const model = new RecordingModel(lm, { device, threads });
const setupS = (performance.now() - t0) / 1000;
const rssAfterSetup = Deno.memoryUsage().rss;
const initial = initAdapterFactors(model.adapters, 0);
for (const f of initial.values()) new Rng(2, "A").fillNormal(f.A, 0.01);

// The work: the graph the session runs (the one its activation estimate reads), at the bench's sizes.
const cost = graphCost(lm.memory.graph, lmGraphDims(batchSize, seqLen));
if (cost.unresolved.length) throw new Error(`products of unknown size: ${cost.unresolved.slice(0, 3).join(", ")}`);
// What the step needs: the most bytes its values hold at once (activation_memory.ts).
const activations = { bytes: lm.memory.bytes(batchSize, seqLen) };
const weightBytes = f32WeightBytes(ckpt);
const kindOf = (c: MatMulCost): string =>
  c.ranks[0] >= 4 && c.ranks[1] >= 4
    ? "attention"
    : [c.m, c.k, c.n].includes(ckpt.config.vocabSize)
    ? "vocabulary projection"
    : Math.min(c.m, c.k, c.n) === rank
    ? "adapters"
    : "linear layers";
const flopsByKind: Record<string, number> = {};
for (const c of cost.matmuls) flopsByKind[kindOf(c)] = (flopsByKind[kindOf(c)] ?? 0) + c.flops;

const limit = new MatMulLimit(cost.matmuls, { device, threads });
log(`limit: ${limit.shapes.length} product shapes (${(limit.coverage * 100).toFixed(1)}% of the step's flops)`);

const METHODS = [
  { key: "lora", mode: "lora" as const, interval: 1 },
  { key: "scalora_i10", mode: "scalora" as const, interval: I10 },
  { key: "scalora", mode: "scalora" as const, interval: 1 },
];
const runs = METHODS.map((r) => ({
  ...r,
  trainer: new Trainer(model, new FixedBatch(batch), benchTrainerConfig(r.mode, r.interval), {
    device,
    threads,
    initialFactors: initial,
  }),
  reports: [] as { report: StepReport; totalMs: number; round: number }[],
}));

const rounds: LimitRound[] = [];
const rssTrace: Record<string, number> = { setup: rssAfterSetup };
t0 = performance.now();
for (let i = 0; i < warm + measured; i++) {
  const round = i >= warm ? i - warm : null;
  if (round !== null) {
    rounds.push(await limit.measure());
    log(`  limit ${rounds.at(-1)!.gflops.toFixed(1)} GFLOP/s`);
    rssTrace[`round_${i}_limit`] = Deno.memoryUsage().rss;
  }
  for (const r of runs) {
    // I(10): warm-up at t = 0 (a scaling step: kernels warmed), then measured steps ending at t = 10.
    if (r.interval === I10 && i === warm) r.trainer.setStep(I10 - measured + 1);
    const s = performance.now();
    const report = await r.trainer.trainStep();
    const totalMs = performance.now() - s;
    if (round !== null) r.reports.push({ report, totalMs, round });
    log(`  ${r.key} step ${report.step}: ${(totalMs / 1000).toFixed(2)} s`);
    rssTrace[`round_${i}_${r.key}`] = Deno.memoryUsage().rss;
    rssTrace[`round_${i}_${r.key}_peak`] = peakRssBytes();
  }
}
const benchS = (performance.now() - t0) / 1000;
const loadEnd = loadAverage();

const peakRss = peakRssBytes(); // before the checkpoint below (it copies the weights) and the profiled steps
// Checkpoint size of the run with the most merges (ScaLoRA, I = 1).
const ckptDir = await Deno.makeTempDir({ prefix: "scalora-train-step-ckpt-" });
await saveTrainingCheckpoint(runs.find((r) => r.key === "scalora")!.trainer, `${ckptDir}/state`);
const checkpointBytes = await directoryBytes(`${ckptDir}/state`);
// Events in the shared model's merge log (both ScaLoRA runs merge into it).
const checkpointEvents = runs.reduce((n, r) => n + r.reports.filter((x) => x.report.scaling?.scaled).length, 0) +
  warm * runs.filter((r) => r.mode !== "lora").length;
await Deno.remove(ckptDir, { recursive: true });
for (const r of runs) await r.trainer.release();
await model.release();

// The memory a job takes for this batch: one ScaLoRA-I(10) trainer (the default method) in a process of its
// own, three steps ending in a scaling step (bench/train_memory.ts); this process holds three trainers, the
// limit's operands and the merges' outputs of two ScaLoRA runs besides.
const job = device === "cpu" ? await jobMemory() : null;

// Phases from onnxruntime's profiler, on a model of their own after the measured steps (the profiler
// keeps memory per run): one warm-up and one profiled step of LoRA and of ScaLoRA (I = 1).
log("profiled steps:");
const profileDir = await Deno.makeTempDir({ prefix: "scalora-train-step-profile-" });
const prefix = `${profileDir}/p`;
const profiled = await profiledSteps();
ckpt.close();
await Deno.remove(profileDir, { recursive: true });

const median = (xs: number[]) => {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b), h = Math.floor(s.length / 2);
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
};
const round = (x: number, d = 4) => Number(x.toPrecision(d));
const gflop = cost.flops / 1e9;
type Phase = "forwardBackward" | "scaling" | "merge" | "optimizer";
const PHASES: Phase[] = ["forwardBackward", "scaling", "merge", "optimizer"];
// Every method runs the same forward/backward graph (one shared session) on the same batch, so their
// fwd/bwd times differ only by machine noise: the estimate pools them. What differs is added per method.
const fwdBwd = median(runs.flatMap((r) => r.reports.map((x) => x.report.timings.forwardBackward)));
const limitGflops = median(rounds.map((r) => r.gflops));
/** The profiled step's graph phases (ScaLoRA-I(10) runs LoRA's graph and optimizer: LoRA's profile). */
const graphPhases = (key: string) => profiled[key === "scalora" ? "scalora" : "lora"];
const summary = Object.fromEntries(runs.map((r) => {
  const scalingSteps = r.reports.filter((x) => x.report.scaling !== null);
  const plain = r.reports.filter((x) => x.report.scaling === null);
  const phase = (p: Phase, xs = r.reports) => median(xs.map((x) => x.report.timings[p]));
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
  const stepMs = fwdBwd + overhead;
  // Per round: this method's fwd/bwd against the limit measured just before it.
  const roundEff = r.reports.map((x) => (gflop / (x.report.timings.forwardBackward / 1e3)) / rounds[x.round].gflops);
  const ev = scalingSteps.at(-1)?.report.scaling;
  return [r.key, {
    step_ms: round(stepMs),
    tokens_per_second: round(tokens / (stepMs / 1e3)),
    gflops: round(gflop / (stepMs / 1e3)),
    efficiency: round(gflop / (stepMs / 1e3) / limitGflops, 3),
    fwd_bwd_efficiency_per_round: roundEff.map((e) => round(e, 3)),
    overhead_ms: round(overhead),
    raw_step_ms: round(rawMs),
    phases_ms: {
      forward: round(graphPhases(r.key).graph.forward),
      backward: round(graphPhases(r.key).graph.backward),
      loss: round(graphPhases(r.key).graph.loss),
      runtime_other: round(graphPhases(r.key).graph.other),
      scaling: round(scalingSteps.length ? median(scalingSteps.map((x) => x.report.timings.scaling)) : 0),
      merge: round(scalingSteps.length ? median(scalingSteps.map((x) => x.report.timings.merge)) : 0),
      optimizer: round(phase("optimizer")),
    },
    kernel_ms: {
      scaling: round(r.mode === "lora" ? 0 : profiled.scalora.kernels.scaling),
      merge: round(r.mode === "lora" ? 0 : profiled.scalora.kernels.merge),
      optimizer: round(graphPhases(r.key).kernels.optimizer),
    },
    phases_median_ms: Object.fromEntries(PHASES.map((p) => [p, round(phase(p))])),
    ...(eventMs === null ? {} : { scaling_event_ms: round(eventMs), amortised_event_ms: round(eventMs / I10) }),
    scaling_steps: scalingSteps.length,
    measured_steps: r.reports.length,
    ...(ev ? { columnwise_share: round(ev.columnwiseShare), mean_alpha_beta: round(ev.meanAlphaBeta) } : {}),
    step_ms_all: r.reports.map((x) => round(x.totalMs)),
    fwd_bwd_ms_all: r.reports.map((x) => round(x.report.timings.forwardBackward)),
  }];
}));
const lora = summary.lora.step_ms, i10 = summary.scalora_i10.step_ms, s1 = summary.scalora.step_ms;
const denseCheckpointBytes = denseCheckpointSize();
const result = {
  bench: "train-step",
  preset: "smollm2-135m",
  device,
  threads,
  batch: `${batchSize}x${seqLen}`,
  tokens_per_step: tokens,
  rank,
  adapters: model.adapters.length,
  warm_steps: warm,
  measured_steps: measured,
  setup_s: round(setupS),
  wall_s: round(benchS),
  load_average: { start: loadStart, end: loadEnd },
  flops: {
    total_gflop: round(gflop),
    by_kind_gflop: Object.fromEntries(Object.entries(flopsByKind).map(([k, v]) => [k, round(v / 1e9)])),
    products: cost.matmuls.length,
    counted: "MatMul/Gemm nodes of the training graph (attention's batched products included), 2·m·k·n each",
  },
  limit: {
    gflops: round(limitGflops),
    gflops_per_round: rounds.map((r) => round(r.gflops)),
    shapes: limit.shapes.length,
    coverage: round(limit.coverage, 3),
    what: "onnxruntime MatMul on the step's product shapes, same device and threads, between the steps",
  },
  gflops: round(gflop / (fwdBwd / 1e3)),
  efficiency: round(gflop / (fwdBwd / 1e3) / limitGflops, 3),
  efficiency_per_round_median: round(median(runs.flatMap((r) => summary[r.key].fwd_bwd_efficiency_per_round)), 3),
  tokens_per_second: round(tokens / (fwdBwd / 1e3)),
  fwd_bwd_median_ms: round(fwdBwd),
  phases_ms: {
    run: round(profiled.lora.graph.run),
    forward: round(profiled.lora.graph.forward),
    backward: round(profiled.lora.graph.backward),
    loss: round(profiled.lora.graph.loss),
    runtime_other: round(profiled.lora.graph.other),
    what: "one LoRA step after the measured ones, from onnxruntime's profile: kernel time per scope " +
      "(loss = vocabulary projection, cross-entropy and its gradient); runtime_other = run − kernels",
  },
  memory: {
    ...(job
      ? {
        job_peak_rss_bytes: job.peak_rss_bytes,
        job_budget_bytes: job.budget_bytes,
        job_within_budget: job.within_budget,
        job_step_s: job.step_s,
        job:
          "one ScaLoRA-I(10) trainer, 3 steps ending in a scaling step, in a process of its own (bench:train-memory)",
      }
      : {}),
    peak_rss_bytes: peakRss,
    rss_after_setup_bytes: rssAfterSetup,
    rss_trace_bytes: rssTrace,
    measured: "this process (3 trainers, the limit's operands) during the measured steps; the profiled steps " +
      "and the checkpoint after them are not counted",
    weights_bytes: weightBytes,
    activations_bytes: activations.bytes,
    budget_bytes: weightBytes + activations.bytes + GiB,
    within_budget: peakRss <= weightBytes + activations.bytes + GiB,
    what:
      "peak RSS (VmHWM) vs weights (f32) + activations (forward values the backward pass reads, one loss slice) + 1 GiB",
  },
  checkpoint: {
    bytes: checkpointBytes,
    dense_bytes: denseCheckpointBytes,
    ratio: round(checkpointBytes / denseCheckpointBytes, 3),
    scaling_events: checkpointEvents,
    projected_bytes_same_events: projectedCheckpointSize(checkpointEvents),
    what: "ScaLoRA (I = 1) job checkpoint after the bench's steps, vs dense merged weights + adapters + moments",
    default_job_projection: Object.fromEntries([100, 300, 1000, 3000].map((steps) => {
      const events = Math.floor((steps - 1) / I10);
      return [`${steps}_steps`, {
        scaling_events: events,
        bytes: projectedCheckpointSize(events),
        ratio: round(projectedCheckpointSize(events) / denseCheckpointBytes, 3),
      }];
    })),
    projection: "ScaLoRA-I(10), r = 8: one event per 10 steps from step 10; sizes by the format's rule",
  },
  runs: summary,
  ratio_scalora_i10_to_lora: round(i10 / lora),
  ratio_scalora_to_lora: round(s1 / lora),
  raw_ratio_scalora_i10_to_lora: round(
    (summary.scalora_i10.raw_step_ms as number) / (summary.lora.raw_step_ms as number),
  ),
};

await Deno.mkdir(values.out, { recursive: true });
const file = `${values.out}/train_step${device === "cpu" ? "" : `-${device}`}.json`;
await Deno.writeTextFile(file, JSON.stringify(result, null, 2) + "\n");
if (values.json) {
  console.log(JSON.stringify(result, null, 2));
} else {
  const ms = (x: number) => x.toFixed(0).padStart(7);
  console.log(`phase (median ms)    ${runs.map((r) => r.key.padStart(12)).join("")}`);
  for (const p of ["forward", "backward", "loss", "runtime_other", "scaling", "merge", "optimizer"] as const) {
    console.log(`${p.padEnd(20)} ${runs.map((r) => ms(summary[r.key].phases_ms[p]).padStart(12)).join("")}`);
  }
  console.log(`JSON: ${file}`);
  console.log(
    `bench:train-step smollm2-135m ${batchSize}x${seqLen} r=${rank} on ${device}, ${threads} threads: ` +
      `${gflop.toFixed(0)} GFLOP per step; fwd/bwd ${(fwdBwd / 1000).toFixed(2)} s = ${result.gflops} GFLOP/s, ` +
      `limit ${result.limit.gflops} GFLOP/s, efficiency ${(result.efficiency * 100).toFixed(0)}% ` +
      `(per round ${(result.efficiency_per_round_median * 100).toFixed(0)}%), ${result.tokens_per_second} tok/s; ` +
      `LoRA ${(lora / 1000).toFixed(2)} s, ScaLoRA-I(10) ${(i10 / 1000).toFixed(2)} s, ScaLoRA ${
        (s1 / 1000).toFixed(2)
      } s (ratio I(10)/LoRA ${result.ratio_scalora_i10_to_lora.toFixed(3)}); peak RSS ${
        job
          ? `${(job.peak_rss_bytes / GiB).toFixed(2)} GiB for a job (budget ${(job.budget_bytes / GiB).toFixed(2)}), `
          : ""
      }${(peakRss / GiB).toFixed(2)} GiB for this bench; checkpoint ${(checkpointBytes / 2 ** 20).toFixed(1)} MiB (${
        (result.checkpoint.ratio * 100).toFixed(1)
      }% of dense); load ${loadStart?.[0]}→${loadEnd?.[0]}`,
  );
}

/**
 * One warm-up and one profiled step each of LoRA and ScaLoRA (I = 1) on a
 * profiled model: the profiled step's training-graph phases and kernel times.
 */
async function profiledSteps(): Promise<
  Record<"lora" | "scalora", { graph: GraphRunPhases; kernels: Record<"optimizer" | "scaling" | "merge", number> }>
> {
  const plm = await LmTrainingModel.create(ckpt, { rank, alpha: 2 * rank }, {
    device,
    threads,
    profilePrefix: `${prefix}.train`,
  });
  const pmodel = new RecordingModel(plm, { device, threads });
  const keys = ["lora", "scalora"] as const;
  const trainers = keys.map((key) =>
    new Trainer(pmodel, new FixedBatch(batch), benchTrainerConfig(key, 1), {
      device,
      threads,
      initialFactors: initial,
      profilePrefix: `${prefix}.${key}`,
    })
  );
  try {
    for (let i = 0; i < 2; i++) {
      for (const [j, t] of trainers.entries()) {
        const s = performance.now();
        await t.trainStep();
        log(`  ${keys[j]} (profiled) ${((performance.now() - s) / 1000).toFixed(2)} s`);
      }
    }
  } finally {
    for (const t of trainers) await t.release();
    await pmodel.release();
  }
  // Training-session runs in order: lora, scalora, lora, scalora.
  const runs = graphRunPhases(await readProfileEvents(`${prefix}.train`));
  const lastRun = async (name: string) => modelRuns(await readProfileEvents(`${prefix}.${name}`)).at(-1)?.dur ?? 0;
  const merge = await lastRun("train.merge");
  return {
    lora: { graph: runs[2], kernels: { optimizer: await lastRun("lora.optimizer") / 1e3, scaling: 0, merge: 0 } },
    scalora: {
      graph: runs[3],
      kernels: {
        optimizer: await lastRun("scalora.optimizer") / 1e3,
        scaling: await lastRun("scalora.scaling") / 1e3,
        merge: merge / 1e3,
      },
    },
  };
}

/** bench/train_memory.ts for this batch, in a child process: its JSON. */
async function jobMemory(): Promise<
  { peak_rss_bytes: number; budget_bytes: number; within_budget: boolean; step_s: number[] }
> {
  log("job memory (a process of its own):");
  const script = new URL("./train_memory.ts", import.meta.url).pathname;
  const args = ["run", "-A", script, "--batch", String(batchSize), "--seq", String(seqLen), "--steps", "3"];
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...args, "--threads", String(threads), "--json"],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`bench/train_memory.ts failed (exit ${out.code})`);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return JSON.parse(lines.at(-1)!);
}

/** What a checkpoint holding dense merged weights takes: adapted W + A, B and their Adam moments, float32. */
function denseCheckpointSize(): number {
  return model.adapters.reduce((s, a) => s + 4 * (a.m * a.n + 3 * a.rank * (a.m + a.n)), 0);
}

/**
 * Checkpoint bytes of a job after `events` scaling events (every layer merged
 * r columns each), from the format's rule (merge_log.ts): a layer is stored
 * as its merges (A, B, c and three floats per merge) until they take more
 * floats than its weight ((m + n)·k > m·n), then as D = W − W₀ plus the
 * merges since, folded again at a quarter of m·n; plus A, B and their Adam
 * moments. D's fixups (entries where W₀ + D misses W by rounding: a few per
 * thousand for fine-tuning-sized changes) and tensor headers not counted.
 */
function projectedCheckpointSize(events: number): number {
  return model.adapters.reduce((s, a) => {
    let kept = 0, folded = false;
    for (let e = 0; e < events; e++) {
      kept += a.rank;
      if (foldDue(a.m, a.n, kept, folded)) [kept, folded] = [0, true];
    }
    const log = (a.m + a.n + 1) * kept + 3 * (kept / a.rank);
    return s + 4 * (log + (folded ? a.m * a.n : 0) + 3 * a.rank * (a.m + a.n));
  }, 0);
}

async function directoryBytes(dir: string): Promise<number> {
  let total = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    total += e.isDirectory ? await directoryBytes(path) : (await Deno.stat(path)).size;
  }
  return total;
}
