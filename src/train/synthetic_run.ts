/**
 * One run of the synthetic Figure-1 benchmark through the full training path
 * (RegressionModel + Trainer + kernels), with the probe statistics of
 * SCALORA.md: loss curve, effective rank of W − W_0 (+ s·ABᵀ), per-phase
 * step timings, per-event column-wise share and mean α∘β.
 */
import type { Device } from "../runtime/session.ts";
import { effectiveRank, singularValues } from "./linalg.ts";
import type { LipschitzRule } from "./lipschitz.ts";
import { RegressionModel } from "./regression_model.ts";
import { fullBatch, SyntheticBatches, type SyntheticTask } from "./synthetic_task.ts";
import { type StepTimings, Trainer, type TrainerConfig, type TrainMode } from "./trainer.ts";

export interface SyntheticRunOptions {
  mode: TrainMode;
  interval: number;
  lipschitz: LipschitzRule;
  steps: number;
  seed: number;
  rank?: number;
  lr?: number;
  batchSize?: number;
  /** Std of B's normal init (default 1/√d: 1/8 at d = 64). */
  initStd?: number;
  layout?: "input" | "baked";
  maxPendingRank?: number;
  device?: Device;
  /** Full-data loss every this many steps (default 10); 0 = only at the ends. */
  evalEvery?: number;
  /** Called after every step (progress, early checks). */
  onStep?: (step: number, loss: number) => void;
}

export interface SyntheticRunResult {
  /** Minibatch loss of every step (before its update). */
  losses: number[];
  /** Full-data loss at steps 0, evalEvery, ..., steps. */
  evalLosses: { step: number; loss: number }[];
  initialLoss: number;
  finalLoss: number;
  /** Effective rank (σ > 1e-6·σ_max) of the cumulative update W + s·ABᵀ − W_0. */
  rank: number;
  singularValues: number[];
  /** Mean milliseconds per step, by phase (scaling and merge averaged over all steps). */
  meanTimings: StepTimings;
  /** Mean total milliseconds per step. */
  meanStepMs: number;
  scalingEvents: number;
  meanColumnwiseShare: number;
  meanAlphaBeta: number;
  meanLEtaS2: number;
}

export function syntheticConfig(o: SyntheticRunOptions, dim = 64): TrainerConfig {
  return {
    mode: o.mode,
    interval: o.interval,
    lipschitz: o.lipschitz,
    optimizer: { lr: o.lr ?? 3e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
    schedule: { decay: "constant", warmupSteps: 0, totalSteps: o.steps },
    maxGradNorm: 0,
    accumulationSteps: 1,
    seed: o.seed,
    init: { kind: "normal", std: o.initStd ?? 1 / Math.sqrt(dim) },
  };
}

export async function runSynthetic(task: SyntheticTask, o: SyntheticRunOptions): Promise<SyntheticRunResult> {
  const d = task.dim, device = o.device ?? "cpu";
  const adapter = { name: "probe", m: d, n: d, rank: o.rank ?? 8, scale: 1 };
  const model = await RegressionModel.create({
    adapter,
    w0: new Float32Array(d * d),
    layout: o.layout ?? "input",
    device,
    maxPendingRank: o.maxPendingRank,
  });
  const trainer = new Trainer(model, new SyntheticBatches(task, o.batchSize ?? 32, o.seed), syntheticConfig(o, d), {
    device,
  });
  try {
    const all = [fullBatch(task)];
    const evalEvery = o.evalEvery ?? 10;
    const evalLosses = [{ step: 0, loss: (await trainer.evaluate(all)).loss }];
    const losses: number[] = [];
    const sum: StepTimings = { forwardBackward: 0, scaling: 0, merge: 0, optimizer: 0 };
    let events = 0, colShare = 0, ab = 0, lSum = 0, total = 0;
    for (let s = 0; s < o.steps; s++) {
      const t0 = performance.now();
      const rep = await trainer.trainStep();
      total += performance.now() - t0;
      losses.push(rep.loss);
      for (const k of Object.keys(sum) as (keyof StepTimings)[]) sum[k] += rep.timings[k];
      if (rep.scaling && rep.scaling.scaled > 0) {
        events++;
        colShare += rep.scaling.columnwiseShare;
        ab += rep.scaling.meanAlphaBeta;
        lSum += rep.scaling.meanLEtaS2;
      }
      if ((evalEvery > 0 && rep.step % evalEvery === 0) || rep.step === o.steps) {
        evalLosses.push({ step: rep.step, loss: (await trainer.evaluate(all)).loss });
      }
      o.onStep?.(rep.step, rep.loss);
    }
    const delta = await cumulativeUpdate(model, trainer, adapter.scale);
    const sv = singularValues(delta, d, d);
    const per = (x: number) => x / Math.max(1, o.steps);
    return {
      losses,
      evalLosses,
      initialLoss: evalLosses[0].loss,
      finalLoss: evalLosses[evalLosses.length - 1].loss,
      rank: effectiveRank(delta, d, d),
      singularValues: Array.from(sv),
      meanTimings: {
        forwardBackward: per(sum.forwardBackward),
        scaling: per(sum.scaling),
        merge: per(sum.merge),
        optimizer: per(sum.optimizer),
      },
      meanStepMs: per(total),
      scalingEvents: events,
      meanColumnwiseShare: events ? colShare / events : 0,
      meanAlphaBeta: events ? ab / events : 1,
      meanLEtaS2: events ? lSum / events : 0,
    };
  } finally {
    await trainer.release();
    await model.release();
  }
}

/** W + s·A Bᵀ − W_0 in float64 (W_0 = 0 here). */
async function cumulativeUpdate(
  model: RegressionModel,
  trainer: Trainer<unknown>,
  s: number,
): Promise<Float64Array> {
  const a = model.adapters[0];
  const W = await model.weights.dense(a.name);
  const { A, B } = trainer.factors.get(a.name)!;
  const out = Float64Array.from(W);
  for (let i = 0; i < a.m; i++) {
    for (let j = 0; j < a.n; j++) {
      let acc = 0;
      for (let k = 0; k < a.rank; k++) acc += A[i * a.rank + k] * B[j * a.rank + k];
      out[i * a.n + j] += s * acc;
    }
  }
  return out;
}
