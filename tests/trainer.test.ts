/**
 * Trainer behaviour on the synthetic regression model: schedule, clipping,
 * data order, gradient accumulation, the step order per mode (scaling events,
 * skipped zero factors, interval), determinism and bit-exact checkpoint resume
 * (CPU and baked weight states, with pending merges at the save point).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { EpochSampler } from "../src/train/batch_source.ts";
import { clipScale, globalGradNorm } from "../src/train/optimizer.ts";
import { RegressionModel } from "../src/train/regression_model.ts";
import { learningRate } from "../src/train/schedule.ts";
import { BOOST_WINDOW } from "../src/train/lr_boost.ts";
import { syntheticConfig } from "../src/train/synthetic_run.ts";
import { makeSyntheticTask, SyntheticBatches, type SyntheticTask, taskBatch } from "../src/train/synthetic_task.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "../src/train/train_checkpoint.ts";
import { type StepReport, Trainer, type TrainerConfig, TrainerError } from "../src/train/trainer.ts";
import type { BatchSource, DataPosition } from "../src/train/types.ts";
import type { RegressionBatch } from "../src/train/regression_model.ts";
import { BakedWeightState } from "../src/train/weight_state.ts";

const TASK = makeSyntheticTask(5, 256, 16);
const SPEC = { name: "probe", m: 16, n: 16, rank: 4, scale: 2 };

function config(over: Partial<TrainerConfig> = {}): TrainerConfig {
  return {
    ...syntheticConfig({ mode: "scalora", interval: 1, lipschitz: { kind: "auto" }, steps: 40, seed: 3 }, 16),
    ...over,
  };
}

async function setup(
  cfg: TrainerConfig,
  opts: { layout?: "input" | "baked"; source?: BatchSource<RegressionBatch> } = {},
) {
  const model = await RegressionModel.create({
    adapter: SPEC,
    w0: new Float32Array(SPEC.m * SPEC.n),
    layout: opts.layout ?? "input",
    device: "cpu",
    maxPendingRank: 6,
  });
  const trainer = new Trainer(model, opts.source ?? new SyntheticBatches(TASK, 16, cfg.seed), cfg, { device: "cpu" });
  return {
    model,
    trainer,
    release: async () => {
      await trainer.release();
      await model.release();
    },
  };
}

async function steps(trainer: Trainer<RegressionBatch>, n: number): Promise<StepReport[]> {
  const out: StepReport[] = [];
  for (let i = 0; i < n; i++) out.push(await trainer.trainStep());
  return out;
}

Deno.test("schedule: warmup, then constant / linear / cosine decay to the floor", () => {
  const base = 1e-3;
  const s = { warmupSteps: 4, totalSteps: 14, minRatio: 0.1 };
  assert.equal(learningRate(base, { ...s, decay: "constant" }, 0), base / 4);
  assert.equal(learningRate(base, { ...s, decay: "constant" }, 3), base);
  assert.equal(learningRate(base, { ...s, decay: "constant" }, 100), base);
  assert.equal(learningRate(base, { ...s, decay: "linear" }, 4), base);
  assert.ok(Math.abs(learningRate(base, { ...s, decay: "linear" }, 9) - base * 0.55) < 1e-15);
  assert.ok(Math.abs(learningRate(base, { ...s, decay: "linear" }, 14) - base * 0.1) < 1e-15);
  assert.ok(Math.abs(learningRate(base, { ...s, decay: "cosine" }, 9) - base * 0.55) < 1e-15);
  assert.ok(Math.abs(learningRate(base, { ...s, decay: "cosine" }, 99) - base * 0.1) < 1e-15);
  assert.ok(learningRate(base, { ...s, decay: "cosine" }, 6) > learningRate(base, { ...s, decay: "linear" }, 6));
});

Deno.test("gradient norm and clipping factor", () => {
  const grads = new Map([["a", { gA: Float32Array.of(3), gB: Float32Array.of(0, 4) }], ["b", {
    gA: Float32Array.of(12),
    gB: new Float32Array(0),
  }]]);
  assert.equal(globalGradNorm(grads), 13);
  assert.equal(clipScale(13, 0), 1);
  assert.equal(clipScale(13, 20), 1);
  assert.ok(Math.abs(clipScale(13, 6.5) - 0.5) < 1e-6);
});

Deno.test("epoch sampler: without replacement, reshuffled per epoch, resumable from its position", () => {
  const s = new EpochSampler({ size: 10, batchSize: 3, seed: 9 });
  assert.equal(s.batchesPerEpoch, 3);
  const epoch0 = [s.next(), s.next(), s.next()].flat();
  assert.equal(new Set(epoch0).size, 9);
  const mid = s.position();
  const rest = [s.next(), s.next(), s.next(), s.next()];
  assert.deepEqual(mid, { epoch: 0, index: 3 });
  assert.notDeepEqual(rest.slice(0, 3).flat(), epoch0);
  const again = new EpochSampler({ size: 10, batchSize: 3, seed: 9 });
  again.seek(mid);
  assert.deepEqual([again.next(), again.next(), again.next(), again.next()], rest);
  assert.throws(() => again.seek({ epoch: -1, index: 0 }));
});

Deno.test("config validation", async () => {
  const t = await setup(config());
  try {
    const source = new SyntheticBatches(TASK, 16, 1);
    for (const bad of [{ interval: 0 }, { accumulationSteps: 1.5 }]) {
      assert.throws(() => new Trainer(t.model, source, config(bad), { device: "cpu" }), TrainerError);
    }
    const wrong = new Map([["probe", { A: new Float32Array(3), B: new Float32Array(3) }]]);
    assert.throws(() => new Trainer(t.model, source, config(), { device: "cpu", initialFactors: wrong }), TrainerError);
    const given = {
      A: new Float32Array(SPEC.m * SPEC.rank).fill(0.5),
      B: new Float32Array(SPEC.n * SPEC.rank).fill(2),
    };
    const tr = new Trainer(t.model, source, config(), { device: "cpu", initialFactors: new Map([["probe", given]]) });
    assert.deepEqual(tr.factors.get("probe"), given);
    assert.notEqual(tr.factors.get("probe")!.A, given.A, "copied, not aliased");
    await tr.release();
  } finally {
    await t.release();
  }
});

/** Yields fixed row sets in a cycle (accumulation equivalence). */
class FixedBatches implements BatchSource<RegressionBatch> {
  #i = 0;
  constructor(readonly task: SyntheticTask, readonly batches: number[][]) {}
  next() {
    return taskBatch(this.task, this.batches[this.#i++ % this.batches.length]);
  }
  position(): DataPosition {
    return { epoch: 0, index: this.#i };
  }
  seek(p: DataPosition) {
    this.#i = p.index;
  }
}

Deno.test("gradient accumulation: two halves of a batch step like the whole batch (scaling included)", async () => {
  const rows = Array.from({ length: 32 }, (_, i) => (i * 7) % 256);
  const whole = await setup(config({ accumulationSteps: 1 }), { source: new FixedBatches(TASK, [rows]) });
  const halves = await setup(config({ accumulationSteps: 2 }), {
    source: new FixedBatches(TASK, [rows.slice(0, 16), rows.slice(16)]),
  });
  try {
    const a = await steps(whole.trainer, 5), b = await steps(halves.trainer, 5);
    a.forEach((r, i) => {
      assert.ok(Math.abs(r.loss - b[i].loss) <= 1e-5 * r.loss, `step ${i}: loss ${r.loss} vs ${b[i].loss}`);
      assert.ok(
        Math.abs(r.gradNorm - b[i].gradNorm) <= 1e-4 * r.gradNorm,
        `grad norm ${r.gradNorm} vs ${b[i].gradNorm}`,
      );
      assert.equal(b[i].count, 32);
    });
    assert.ok(a.slice(1).every((r) => r.scaling?.scaled === 1));
    const fa = whole.trainer.factors.get("probe")!, fb = halves.trainer.factors.get("probe")!;
    fa.A.forEach((v, i) =>
      assert.ok(Math.abs(v - fb.A[i]) <= 1e-4 * (Math.abs(v) + 1e-3), `A[${i}] ${v} vs ${fb.A[i]}`)
    );
  } finally {
    await whole.release();
    await halves.release();
  }
});

Deno.test("gradient clipping scales the update and reports the pre-clip norm", async () => {
  const t = await setup(config({ maxGradNorm: 1e-3, mode: "lora" }));
  try {
    const [r] = await steps(t.trainer, 1);
    assert.ok(r.gradNorm > 1e-3);
    assert.ok(Math.abs(r.clipScale - 1e-3 / (r.gradNorm + 1e-6)) < 1e-12);
  } finally {
    await t.release();
  }
});

Deno.test("modes: LoRA never merges; ScaLoRA skips zero factors, scales every I steps; scalar mode stays scalar", async () => {
  const lora = await setup(config({ mode: "lora" }));
  const scal = await setup(config({ mode: "scalora", interval: 1 }));
  const i5 = await setup(config({ mode: "scalora", interval: 5 }));
  const scalar = await setup(config({ mode: "scalora-scalar", interval: 1 }));
  try {
    const rl = await steps(lora.trainer, 12);
    assert.ok(rl.every((r) => r.scaling === null && r.timings.merge === 0));
    assert.ok((await lora.model.weights.dense("probe")).every((v) => v === 0), "LoRA leaves W at W_0");

    const rs = await steps(scal.trainer, 12);
    assert.equal(rs[0].scaling?.scaled, 0, "A starts at zero: nothing to rescale at t = 0");
    assert.ok(rs.slice(1).every((r) => r.scaling?.scaled === 1 && r.scaling.layers === 1));
    assert.ok(rs.slice(1).every((r) => r.scaling!.meanAlphaBeta > 0 && r.scaling!.meanLEtaS2 > 0));
    assert.ok((await scal.model.weights.dense("probe")).some((v) => v !== 0), "ScaLoRA merges into W");

    const r5 = await steps(i5.trainer, 12);
    r5.forEach((r, t) => assert.equal(r.scaling !== null, t % 5 === 0, `step ${t}`));
    assert.equal(r5[5].scaling?.scaled, 1);
    // The lr boost (lr_boost.ts): LoRA never; ScaLoRA's changes only between windows, and the factors step at lr·ω.
    assert.ok(rl.every((r) => r.lrBoost === 1));
    const cfg5 = config({ mode: "scalora", interval: 5 });
    r5.forEach((r, t) => {
      assert.equal(r.lr, learningRate(cfg5.optimizer.lr, cfg5.schedule, t) * r.lrBoost, `step ${t}`);
      if (t % BOOST_WINDOW !== 0) assert.equal(r.lrBoost, r5[t - 1].lrBoost, `step ${t}: within a window, no change`);
    });

    const rc = await steps(scalar.trainer, 12);
    for (const r of rc.slice(1)) {
      assert.equal(r.scaling!.kinds.columnwise, 0);
      assert.equal(r.scaling!.kinds.scalar + r.scaling!.kinds.boundary + r.scaling!.kinds.skipped, 1);
    }
  } finally {
    for (const t of [lora, scal, i5, scalar]) await t.release();
  }
});

Deno.test("deterministic: the same seed gives the identical loss curve", async () => {
  const a = await setup(config()), b = await setup(config());
  try {
    const la = (await steps(a.trainer, 15)).map((r) => r.loss), lb = (await steps(b.trainer, 15)).map((r) => r.loss);
    assert.deepEqual(la, lb);
  } finally {
    await a.release();
    await b.release();
  }
});

for (const layout of ["input", "baked"] as const) {
  Deno.test(`checkpoint resume is bit-exact (${layout} weights, warmup + cosine, clipping, accumulation)`, async () => {
    const cfg = config({
      schedule: { decay: "cosine", warmupSteps: 5, totalSteps: 30, minRatio: 0.1 },
      maxGradNorm: 5,
      accumulationSteps: 2,
      interval: 2,
    });
    // Events at t = 2, 4, …; rank 4 and a re-bake above 6 pending columns: after
    // 11 steps the baked state has re-baked twice and carries 4 pending columns.
    const N = 11;
    // Run M more after it: the boost first compares a window's mean with the one BOOST_LAG windows back at
    // t = 110, with the first window's mean taken before N, so what it does after the resume depends on the saved
    // history.
    const M = 120;
    const dir = await Deno.makeTempDir({ prefix: "scalora-ckpt-" });
    const straight = await setup(cfg, { layout });
    let straightLosses: number[], straightBoost: number[], straightFactors: Float32Array, straightW: Float32Array;
    try {
      const reports = await steps(straight.trainer, N + M);
      straightLosses = reports.map((r) => r.loss);
      straightBoost = reports.map((r) => r.lrBoost);
      assert.ok(straightBoost.slice(N).some((w) => w > 1), "the lr boost moves after N, from the saved history");
      straightFactors = straight.trainer.factors.get("probe")!.A.slice();
      straightW = await straight.model.weights.dense("probe");
    } finally {
      await straight.release();
    }
    const first = await setup(cfg, { layout });
    let firstLosses: number[];
    try {
      firstLosses = (await steps(first.trainer, N)).map((r) => r.loss);
      if (first.model.weights instanceof BakedWeightState) {
        assert.equal(first.model.weights.bakes, 2);
        assert.equal(first.model.weights.pendingRank("probe"), 4);
      }
      await saveTrainingCheckpoint(first.trainer, `${dir}/ckpt`);
      // Keep going past the save point: the checkpoint must not alias live buffers.
      await steps(first.trainer, 2);
    } finally {
      await first.release();
    }
    const resumed = await setup(cfg, { layout });
    try {
      await loadTrainingCheckpoint(resumed.trainer, `${dir}/ckpt`);
      assert.equal(resumed.trainer.step, N);
      const rest = await steps(resumed.trainer, M);
      assert.deepEqual([...firstLosses, ...rest.map((r) => r.loss)], straightLosses);
      assert.deepEqual(rest.map((r) => r.lrBoost), straightBoost.slice(N));
      assert.deepEqual(resumed.trainer.factors.get("probe")!.A, straightFactors);
      assert.deepEqual(await resumed.model.weights.dense("probe"), straightW);
      // A checkpoint of another adapter set is refused.
      const other = JSON.parse(await Deno.readTextFile(`${dir}/ckpt/trainer.json`));
      other.adapters[0].rank = 5;
      await Deno.writeTextFile(`${dir}/ckpt/trainer.json`, JSON.stringify(other));
      await assert.rejects(() => loadTrainingCheckpoint(resumed.trainer, `${dir}/ckpt`), /adapters differ/);
    } finally {
      await resumed.release();
      await Deno.remove(dir, { recursive: true });
    }
  });
}
