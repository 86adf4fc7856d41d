/**
 * The synthetic matrix-regression task of the ScaLoRA paper's Figure 1
 * (../shared/SCALORA.md): X (N x d) standard normal, W* standard normal / √d (/ 8 at d = 64),
 * Y = X W*, loss 0.5 · mean over rows of ‖xW − y‖², W_0 = 0, batches of 32
 * without replacement (epoch reshuffle). In the HF layout the layer computes
 * y = x·W_effᵀ, so W_eff converges to W*ᵀ (same singular values and rank).
 */
import { Rng } from "../model/rng.ts";
import { EpochSampler } from "./batch_source.ts";
import { symmetricEigen } from "./linalg.ts";
import type { RegressionBatch } from "./regression_model.ts";
import type { BatchSource, DataPosition } from "./types.ts";

export interface SyntheticTask {
  rows: number;
  dim: number;
  /** Row-major rows x dim. */
  X: Float32Array;
  Y: Float32Array;
  /** W* (dim x dim), Y = X W*. */
  wStar: Float32Array;
  /** λmax(XᵀX / rows), float64 from the float32 X. */
  lambdaMax: number;
}

export function makeSyntheticTask(seed: number, rows = 1024, dim = 64): SyntheticTask {
  const X = new Rng(seed, "synthetic:X").fillNormal(new Float32Array(rows * dim));
  const wStar = new Rng(seed, "synthetic:W*").fillNormal(new Float32Array(dim * dim), 1 / Math.sqrt(dim));
  const Y = new Float32Array(rows * dim);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < dim; j++) {
      let s = 0;
      for (let k = 0; k < dim; k++) s += X[i * dim + k] * wStar[k * dim + j];
      Y[i * dim + j] = s;
    }
  }
  const xtx = new Float64Array(dim * dim);
  for (let i = 0; i < rows; i++) {
    for (let a = 0; a < dim; a++) {
      const xa = X[i * dim + a];
      for (let b = 0; b < dim; b++) xtx[a * dim + b] += xa * X[i * dim + b] / rows;
    }
  }
  return { rows, dim, X, Y, wStar, lambdaMax: symmetricEigen(xtx, dim).values[0] };
}

/** Rows of a task as batches: row subsets, or the whole set for evaluation. */
export function taskBatch(task: SyntheticTask, rows: readonly number[]): RegressionBatch {
  const d = task.dim, x = new Float32Array(rows.length * d), y = new Float32Array(rows.length * d);
  rows.forEach((r, i) => {
    x.set(task.X.subarray(r * d, (r + 1) * d), i * d);
    y.set(task.Y.subarray(r * d, (r + 1) * d), i * d);
  });
  return { rows: rows.length, x, y };
}

export function fullBatch(task: SyntheticTask): RegressionBatch {
  return { rows: task.rows, x: task.X, y: task.Y };
}

/** Batches of `batchSize` rows without replacement, reshuffled every epoch. */
export class SyntheticBatches implements BatchSource<RegressionBatch> {
  readonly sampler: EpochSampler;

  constructor(readonly task: SyntheticTask, batchSize: number, seed: number) {
    this.sampler = new EpochSampler({ size: task.rows, batchSize, seed });
  }

  next(): RegressionBatch {
    return taskBatch(this.task, this.sampler.next());
  }
  position(): DataPosition {
    return this.sampler.position();
  }
  seek(p: DataPosition): void {
    this.sampler.seek(p);
  }
}
