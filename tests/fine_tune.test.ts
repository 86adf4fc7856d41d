/**
 * The fine-tuning pipeline end to end on a generated tiny Llama (bytes
 * tokenizer): deltas = W_final − W_base (merge log incl. its dense fold, and
 * checkpoint-time deltas), the merged model directory (loads, same logits as
 * the trained model), bit-exact resume after an abort, data and option errors.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { openCheckpoint } from "../src/model/checkpoint.ts";
import { Rng } from "../src/model/rng.ts";
import { openSafetensors } from "../src/model/safetensors.ts";
import { generateTinyModel } from "../src/model/tiny_model.ts";
import { loadTokenizer } from "../src/model/tokenizer.ts";
import type { LayerDelta } from "../src/train/layer_delta.ts";
import { collate } from "../src/train/batching.ts";
import { validateJsonl } from "../src/train/dataset.ts";
import {
  DatasetInvalidError,
  fineTune,
  FineTuneAborted,
  FineTuneCheckpointError,
  type FineTuneEvent,
  type FineTuneOptions,
  FineTuneOptionsError,
  type FineTuneResult,
  writeMergedModel,
} from "../src/train/fine_tune.ts";
import { initAdapterFactors, LmTrainingModel } from "../src/train/lm_training_graph.ts";
import { deltasOf, MergeLog } from "../src/train/merge_log.ts";
import { CpuWeightState } from "../src/train/weight_state.ts";
import { referenceForward } from "./reference/forward.ts";

const root = await Deno.makeTempDir({ prefix: "fine_tune_test_" });
const modelDir = `${root}/model`;
await generateTinyModel({ out: modelDir, arch: "llama", preset: "tiny", tokenizer: "bytes", seed: 4 });

const facts = (from: number, n: number) =>
  Array.from({ length: n }, (_, i) => {
    const rng = new Rng(7, `fact${from + i}`);
    const word = (len: number) => Array.from({ length: len }, () => "abcdefghij"[rng.nextInt(10)]).join("");
    return JSON.stringify({ prompt: `${word(3)}=`, completion: word(3) });
  }).join("\n");

const LORA = { rank: 2, alpha: 4 };
/** 40 examples / batch 8 = 5 steps per epoch, 20 steps; ScaLoRA every step, so logs outgrow dense and fold. */
const OPTS: Omit<FineTuneOptions, "checkpointDir"> = {
  model: modelDir,
  trainText: facts(0, 40),
  validationText: facts(100, 6),
  method: "scalora",
  ...LORA,
  interval: 1,
  epochs: 4,
  batchSize: 8,
  learningRate: 1e-2,
  warmupRatio: 0.1,
  schedule: "cosine",
  maxLength: 32,
  seed: 3,
  checkpointEvery: 5,
  threads: 1,
};

interface Run {
  result: FineTuneResult;
  metrics: Extract<FineTuneEvent, { type: "metrics" }>[];
  checkpoints: Extract<FineTuneEvent, { type: "checkpoint" }>[];
}

async function run(opts: FineTuneOptions, onStep?: (step: number) => void): Promise<Run> {
  const metrics: Run["metrics"] = [], checkpoints: Run["checkpoints"] = [];
  const result = await fineTune({
    ...opts,
    onEvent: (e) => {
      if (e.type === "metrics") {
        metrics.push(e);
        onStep?.(e.step);
      }
      if (e.type === "checkpoint") checkpoints.push(e);
    },
  });
  return { result, metrics, checkpoints };
}

let straightRun: Promise<Run> | null = null;
/** The uninterrupted reference run, shared by the tests below. */
const straight = () => straightRun ??= run({ ...OPTS, checkpointDir: `${root}/straight` });

type F64 = { data: Float64Array; shape: number[] };

/**
 * The merged weights a checkpoint holds: its weight-state tensors restored
 * over the base weights (a merged weight the merge log can rebuild is not
 * stored; restoring replays its merges).
 */
async function checkpointWeights(file: Awaited<ReturnType<typeof openSafetensors>>, deltas: readonly LayerDelta[]) {
  const base = await openCheckpoint(modelDir);
  const specs = deltas.map((d) => ({ name: d.name, m: d.m, n: d.n, rank: LORA.rank, scale: LORA.alpha / LORA.rank }));
  const layers = new Map<string, { m: number; n: number; data: Float32Array }>();
  for (const d of deltas) layers.set(d.name, { m: d.m, n: d.n, data: (await base.read(`${d.name}.weight`)).slice() });
  const log = new MergeLog(new CpuWeightState(layers), specs, {
    base: async (name) => (await base.read(`${name}.weight`)).slice(),
  });
  try {
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const [name, entry] of file.tensors) {
      if (name.startsWith("weights:")) tensors.set(name.slice(8), { shape: entry.shape, data: await file.read(name) });
    }
    await log.restore({ kind: "input", tensors });
    return new Map(await Promise.all(deltas.map(async (d) => [d.name, await log.dense(d.name)] as const)));
  } finally {
    await log.release();
    base.close();
  }
}

/** Effective weights W + s·A·Bᵀ (float64) of every adapter in a checkpoint directory. */
async function trainedWeights(dir: string, deltas: readonly LayerDelta[]): Promise<Map<string, F64>> {
  const file = await openSafetensors(`${dir}/state.safetensors`);
  try {
    const out = new Map<string, F64>();
    const scale = LORA.alpha / LORA.rank;
    const merged = await checkpointWeights(file, deltas);
    for (const d of deltas) {
      const W = merged.get(d.name)!;
      const A = await file.read(`lora.${d.name}.A`), B = await file.read(`lora.${d.name}.B`);
      const r = A.length / d.m, eff = Float64Array.from(W);
      for (let i = 0; i < d.m; i++) {
        for (let j = 0; j < d.n; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += A[i * r + k] * B[j * r + k];
          eff[i * d.n + j] += scale * acc;
        }
      }
      out.set(d.name, { data: eff, shape: [d.m, d.n] });
    }
    return out;
  } finally {
    file.close();
  }
}

/** base + Σ U Vᵀ in float64. */
function applyDeltas(base: Float32Array, d: LayerDelta): Float64Array {
  const out = Float64Array.from(base);
  for (const t of d.terms) {
    for (let i = 0; i < d.m; i++) {
      for (let j = 0; j < d.n; j++) {
        let acc = 0;
        for (let k = 0; k < t.k; k++) acc += t.U[i * t.k + k] * t.V[j * t.k + k];
        out[i * d.n + j] += acc;
      }
    }
  }
  return out;
}

/** Largest |rebuilt − trained| relative to the largest |trained − base|, over all layers. */
async function deltaError(deltas: readonly LayerDelta[], ckptDir: string): Promise<{ err: number; size: number }> {
  const base = await openCheckpoint(modelDir);
  try {
    const trained = await trainedWeights(ckptDir, deltas);
    let err = 0, size = 0;
    for (const d of deltas) {
      const b = await base.read(`${d.name}.weight`), rebuilt = applyDeltas(b, d), t = trained.get(d.name)!.data;
      for (let i = 0; i < t.length; i++) {
        err = Math.max(err, Math.abs(rebuilt[i] - t[i]));
        size = Math.max(size, Math.abs(t[i] - b[i]));
      }
    }
    return { err: err / size, size };
  } finally {
    base.close();
  }
}

Deno.test("deltas applied to the base reproduce the trained effective weights (final and at a checkpoint)", async () => {
  const { result, metrics, checkpoints } = await straight();
  assert.equal(result.steps, 20);
  assert.deepEqual(metrics.map((m) => m.step), [...Array(20).keys()].map((i) => i + 1));
  assert.deepEqual(checkpoints.map((c) => c.step), [5, 10, 15, 20]);
  assert.ok(metrics.slice(1).every((m) => m.scaling !== undefined), "ScaLoRA rescales every step after the first");
  assert.ok(metrics.at(-1)!.trainLoss < metrics[0].trainLoss, "it learns");
  assert.equal(result.deltas.length, 14);
  for (const d of result.deltas) {
    // 19 merges of rank 2 (38 columns) outgrow the dense size of the attention layers ((m + n)·k > m·n):
    // a folded dense part (W − W₀), then the merges since the last fold (none when the last merge refolded),
    // then the adapter; the MLP layers keep all 38 columns.
    const folds = (d.m + d.n) * 38 > d.m * d.n;
    assert.equal(d.terms[0].k, folds ? Math.min(d.m, d.n) : 38, `${d.name}: first term`);
    assert.equal(d.terms.at(-1)!.k, LORA.rank, `${d.name}: adapter last`);
    if (folds) assert.ok(d.terms.length === 2 || d.terms.length === 3, d.name);
    else assert.equal(d.terms.length, 2, d.name);
  }
  assert.ok(
    result.deltas.some((d) => d.terms[0].k === Math.min(d.m, d.n)) && result.deltas.some((d) => d.terms[0].k === 38),
  );
  const final = await deltaError(result.deltas, checkpoints[3].dir);
  assert.ok(final.size > 1e-2, `the weights moved (${final.size})`);
  assert.ok(final.err < 1e-4, `final deltas: error ${final.err} of the largest change`);
  console.log(
    `  deltas vs trained weights: max error ${final.err.toExponential(2)} of the largest change ${
      final.size.toFixed(3)
    }`,
  );
  // Deltas captured at step 15, read after training went on, match that checkpoint (only 15 and 20 are kept).
  const at15 = await deltaError(await checkpoints[2].deltas(), checkpoints[2].dir);
  assert.ok(at15.err < 1e-4, `step-15 deltas: error ${at15.err}`);
  assert.deepEqual(
    [...Deno.readDirSync(`${root}/straight`)].map((e) => e.name).sort(),
    ["step-00000015", "step-00000020"],
  );
  assert.equal(checkpoints[3].metrics.step, 20);
  assert.equal(checkpoints[3].metrics.validLoss, result.finalValidLoss);
});

Deno.test("the merged model directory loads and computes the trained model's logits and validation loss", async () => {
  const { result, checkpoints } = await straight();
  const out = `${root}/merged`;
  await writeMergedModel(modelDir, result.deltas, out);
  const merged = await openCheckpoint(out);
  const base = await openCheckpoint(modelDir);
  try {
    const tok = await loadTokenizer(out);
    const { examples } = validateJsonl(OPTS.validationText!, { tokenizer: tok, maxLength: 32 });
    assert.equal(examples.length, 6);

    // Logits (float64 reference forward) of the merged weights vs base + trained W + s·A·Bᵀ.
    const trained = await trainedWeights(checkpoints[3].dir, result.deltas);
    const mergedW = new Map<string, F64>(), trainedW = new Map<string, F64>();
    for (const [name, t] of merged.tensors) {
      mergedW.set(name, { data: Float64Array.from(await merged.read(name)), shape: t.shape });
      const layer = trained.get(name.replace(/\.weight$/, ""));
      trainedW.set(name, layer ?? { data: Float64Array.from(await base.read(name)), shape: t.shape });
    }
    const ids = examples[0].inputIds;
    const a = referenceForward(merged.config, (n) => mergedW.get(n)!, ids);
    const b = referenceForward(merged.config, (n) => trainedW.get(n)!, ids);
    const scale = Math.max(...Array.from(b, Math.abs));
    const worst = Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));
    assert.ok(worst < 1e-5 * scale, `logits differ by ${worst} (scale ${scale})`);
    console.log(`  merged vs trained logits: max diff ${worst.toExponential(2)} (max logit ${scale.toFixed(1)})`);

    // The ORT training graph on the merged model, adapters at zero: the run's final validation loss.
    const lm = await LmTrainingModel.create(merged, LORA);
    try {
      const batch = collate(examples, { padTokenId: merged.config.eosTokenIds[0] });
      const ev = await lm.evaluate(batch, initAdapterFactors(lm.adapters, 0));
      const want = result.finalValidLoss!;
      assert.ok(Math.abs(ev.loss - want) < 1e-5 * want, `merged validation loss ${ev.loss} vs ${want}`);
    } finally {
      await lm.release();
    }
  } finally {
    merged.close();
    base.close();
  }

  // Half precision, sharded: an index and several files that load as one checkpoint.
  await writeMergedModel(modelDir, result.deltas, `${root}/merged16`, { dtype: "F16", maxShardBytes: 60_000 });
  const m16 = await openCheckpoint(`${root}/merged16`);
  try {
    assert.ok(new Set([...m16.tensors.values()].map((t) => t.file)).size > 1);
    assert.ok([...m16.tensors.values()].every((t) => t.dtype === "F16"));
    assert.equal(m16.rawConfig.torch_dtype, "float16");
  } finally {
    m16.close();
  }
});

Deno.test("abort writes a checkpoint; resume continues with the identical loss curve and deltas", async () => {
  const ref = await straight();
  const checkpointDir = `${root}/resumed`;
  const controller = new AbortController();
  const first = run({ ...OPTS, checkpointDir, signal: controller.signal }, (step) => {
    if (step === 7) controller.abort("pause");
  });
  const stopped = await first.then(() => null, (e) => e);
  assert.ok(stopped instanceof FineTuneAborted, String(stopped));
  assert.equal(stopped.step, 7);
  assert.equal(stopped.checkpoint, `${checkpointDir}/step-00000007`);
  assert.equal(stopped.reason, "pause");

  const rest = await run({ ...OPTS, checkpointDir, resume: true });
  assert.deepEqual(rest.metrics.map((m) => m.step), ref.metrics.slice(7).map((m) => m.step));
  assert.deepEqual(rest.metrics.map((m) => m.trainLoss), ref.metrics.slice(7).map((m) => m.trainLoss));
  assert.deepEqual(rest.metrics.map((m) => m.validLoss), ref.metrics.slice(7).map((m) => m.validLoss));
  assert.equal(rest.result.trainedTokens, ref.result.trainedTokens);
  assert.equal(rest.result.finalValidLoss, ref.result.finalValidLoss);
  assert.deepEqual(rest.result.deltas, ref.result.deltas);

  // Another run's checkpoint directory is refused.
  await assert.rejects(
    () => fineTune({ ...OPTS, learningRate: 2e-2, checkpointDir, resume: true }),
    FineTuneCheckpointError,
  );
});

Deno.test("bad data lines fail before training, with every line; bad options are typed errors", async () => {
  const bad = [facts(0, 2), "{oops", JSON.stringify({ prompt: "x" }), facts(2, 1)].join("\n");
  const err = await fineTune({ ...OPTS, trainText: bad, checkpointDir: `${root}/bad` }).then(() => null, (e) => e);
  assert.ok(err instanceof DatasetInvalidError);
  assert.equal(err.file, "training_file");
  assert.deepEqual(err.issues.map((i) => [i.line, i.code]), [[3, "invalid_json"], [4, "missing_completion"]]);
  await assert.rejects(
    () => fineTune({ ...OPTS, validationText: "[1]", checkpointDir: `${root}/bad` }),
    (e) => e instanceof DatasetInvalidError && e.file === "validation_file" && e.issues[0].code === "data_type",
  );
  assert.equal(await Deno.stat(`${root}/bad`).catch(() => null), null, "nothing written");
  await assert.rejects(() => fineTune({ ...OPTS, rank: 0, checkpointDir: `${root}/bad` }), FineTuneOptionsError);
  await assert.rejects(
    // @ts-expect-error: an unknown module (callers outside TypeScript, e.g. a stored job, are checked at run time)
    () => fineTune({ ...OPTS, targetModules: ["qkv"], checkpointDir: `${root}/bad` }),
    FineTuneOptionsError,
  );
});

Deno.test("merge log: folds into a dense part, survives snapshot/restore, deltas match the held weights", async () => {
  const m = 12, n = 10, spec = { name: "w", m, n, rank: 2, scale: 1.5 };
  const base = new Rng(1, "base").fillNormal(new Float32Array(m * n));
  const make = () => new MergeLog(new CpuWeightState(new Map([["w", { m, n, data: base.slice() }]])), [spec]);
  const rng = new Rng(2, "merges");
  const merges = Array.from({ length: 12 }, () => ({
    name: "w",
    U: rng.fillNormal(new Float32Array(m * 2)),
    V: rng.fillNormal(new Float32Array(n * 2)),
    k: 2,
    c: rng.fillNormal(new Float32Array(2)),
    scale: 1.5,
  }));
  const zero = new Map([["w", { A: new Float32Array(m * 2), B: new Float32Array(n * 2) }]]);
  const a = make(), b = make();
  try {
    for (const mg of merges.slice(0, 5)) await a.mergeLowRankMany([mg]);
    // (m + n)·k > m·n once k > 5.45: the third merge folded.
    assert.deepEqual(a.stats("w"), { k: 4, dense: true });
    await b.restore(await a.snapshot());
    for (const mg of merges.slice(5)) {
      await a.mergeLowRankMany([mg]);
      await b.mergeLowRankMany([mg]);
    }
    const [da] = deltasOf(a.view(), [spec], zero), [db] = deltasOf(b.view(), [spec], zero);
    assert.deepEqual(db, da, "restored log continues identically");
    const held = await a.dense("w");
    const rebuilt = applyDeltas(base, da);
    const worst = Math.max(...Array.from(held, (v, i) => Math.abs(v - rebuilt[i])));
    assert.ok(worst < 1e-4, `rebuilt W off by ${worst}`);
    await assert.rejects(() => a.restore({ kind: "input", tensors: new Map() }), /no merge log/);
  } finally {
    await a.release();
    await b.release();
  }
});

globalThis.addEventListener("unload", () => {
  try {
    Deno.removeSync(root, { recursive: true });
  } catch {
    // already gone
  }
});
