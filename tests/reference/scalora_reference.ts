/**
 * An independent plain-TypeScript float64 implementation of the synthetic
 * ScaLoRA training loop (no ORT, no kernels, no graph): forward/backward of
 * the regression layer, Grams, merge, rescale with the crossed moment
 * transform, the learning-rate boost (written out here again), AdamW
 * (PyTorch's formula). It shares only the host solve (src/train/scalora.ts,
 * tested on its own against NNLS), the L rule (with the boost's cap) and the
 * data order / init streams, so the device path can be checked against it.
 */
import { columnScales, solveScaling } from "../../src/train/scalora.ts";
import { appliedScales, lEtaS2, type LipschitzRule, lrBoostCap } from "../../src/train/lipschitz.ts";
import { SyntheticBatches, type SyntheticTask } from "../../src/train/synthetic_task.ts";
import { initFactors, type TrainMode } from "../../src/train/trainer.ts";

export interface ReferenceOptions {
  mode: TrainMode;
  interval: number;
  lipschitz: LipschitzRule;
  steps: number;
  seed: number;
  rank: number;
  lr: number;
  initStd: number;
}

/** Minibatch losses of each step. */
export function referenceRun(task: SyntheticTask, o: ReferenceOptions): number[] {
  const d = task.dim, r = o.rank, s = 1, m = d, n = d;
  const spec = { name: "probe", m, n, rank: r, scale: s };
  const init = initFactors(spec, { seed: o.seed, init: { kind: "normal", std: o.initStd } });
  const A = Float64Array.from(init.A), B = Float64Array.from(init.B);
  const W = new Float64Array(m * n);
  const mA = new Float64Array(m * r),
    vA = new Float64Array(m * r),
    mB = new Float64Array(n * r),
    vB = new Float64Array(n * r);
  const source = new SyntheticBatches(task, 32, o.seed);
  const losses: number[] = [];
  // The lr boost: every 10 steps, ω moves by the sign of (this window's mean loss − the one 10 windows back); off
  // where one Adam step moves B's entries by more than a tenth of their init RMS.
  const cap = o.mode === "lora" || o.lr / o.initStd > 0.1 ? 1 : lrBoostCap(o.lipschitz);
  let omega = 1, windowLosses: number[] = [];
  const means: number[] = [];
  for (let t = 0; t < o.steps; t++) {
    const batch = source.next();
    const rows = batch.rows;
    // Forward and G = dℓ/dW_eff (m x n).
    const G = new Float64Array(m * n);
    let loss = 0;
    for (let b = 0; b < rows; b++) {
      const x = batch.x.subarray(b * n, (b + 1) * n), y = batch.y.subarray(b * m, (b + 1) * m);
      const xb = new Float64Array(r);
      for (let k = 0; k < r; k++) for (let j = 0; j < n; j++) xb[k] += x[j] * B[j * r + k];
      for (let i = 0; i < m; i++) {
        let p = 0;
        for (let j = 0; j < n; j++) p += W[i * n + j] * x[j];
        for (let k = 0; k < r; k++) p += s * A[i * r + k] * xb[k];
        const e = p - y[i];
        loss += 0.5 * e * e / rows;
        for (let j = 0; j < n; j++) G[i * n + j] += e * x[j] / rows;
      }
    }
    losses.push(loss);
    const gA = new Float64Array(m * r), gB = new Float64Array(n * r);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < r; k++) {
          gA[i * r + k] += s * G[i * n + j] * B[j * r + k];
          gB[j * r + k] += s * G[i * n + j] * A[i * r + k];
        }
      }
    }
    if (cap > 1) {
      if (t % 10 === 0 && windowLosses.length) {
        const mean = windowLosses.reduce((a, b) => a + b, 0) / windowLosses.length;
        if (means.length >= 10) {
          omega = mean <= means[means.length - 10] ? Math.min(cap, omega * 1.1) : Math.max(1, omega / 1.21);
        }
        means.push(mean);
        windowLosses = [];
      }
      windowLosses.push(loss);
    }
    const lr = o.lr;
    const zero = (v: Float64Array) => v.every((x) => x === 0);
    if (o.mode !== "lora" && t % o.interval === 0 && !zero(A) && !zero(B)) {
      const gram = (X: Float64Array, Y: Float64Array, rowsX: number) => {
        const out = new Float64Array(r * r);
        for (let p = 0; p < rowsX; p++) {
          for (let i = 0; i < r; i++) for (let j = 0; j < r; j++) out[i * r + j] += X[p * r + i] * Y[p * r + j];
        }
        return out;
      };
      // Grams from float32-rounded operands, as the device sees them.
      const f = (v: Float64Array) => Float64Array.from(Float32Array.from(v));
      const [A32, B32, gA32, gB32] = [f(A), f(B), f(gA), f(gB)];
      const grams = {
        r,
        AtA: gram(A32, A32, m),
        BtB: gram(B32, B32, n),
        PtP: gram(gA32, gA32, m),
        QtQ: gram(gB32, gB32, n),
        AtP: gram(A32, gA32, m),
      };
      const sol = solveScaling(grams, { mode: o.mode === "scalora-scalar" ? "scalar" : "columnwise" });
      const product = lEtaS2(o.lipschitz, {
        spec,
        lr,
        baseLr: o.lr,
        interval: o.interval,
        initRms: o.initStd,
        solution: sol,
        grams,
      });
      const { alpha, beta } = appliedScales(o.lipschitz, columnScales(sol, product), grams, spec);
      for (let i = 0; i < m; i++) {
        for (let j = 0; j < n; j++) {
          let acc = 0;
          for (let k = 0; k < r; k++) acc += A[i * r + k] * (1 - alpha[k] * beta[k]) * B[j * r + k];
          W[i * n + j] += s * acc;
        }
      }
      for (let i = 0; i < m; i++) {
        for (let k = 0; k < r; k++) {
          A[i * r + k] *= alpha[k];
          gA[i * r + k] *= beta[k];
          mA[i * r + k] *= beta[k];
          vA[i * r + k] *= beta[k] ** 2;
        }
      }
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < r; k++) {
          B[j * r + k] *= beta[k];
          gB[j * r + k] *= alpha[k];
          mB[j * r + k] *= alpha[k];
          vB[j * r + k] *= alpha[k] ** 2;
        }
      }
    }
    adam(A, gA, mA, vA, lr * omega, t + 1);
    adam(B, gB, mB, vB, lr * omega, t + 1);
  }
  return losses;
}

function adam(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array, lr: number, step: number) {
  const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const bc1 = 1 - b1 ** step, bc2 = 1 - b2 ** step;
  for (let i = 0; i < p.length; i++) {
    m[i] = b1 * m[i] + (1 - b1) * g[i];
    v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
    p[i] -= (lr / bc1) * m[i] / (Math.sqrt(v[i]) / Math.sqrt(bc2) + eps);
  }
}
