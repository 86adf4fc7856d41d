/**
 * AdamW state of every adapter (first/second moments of A and B) and the
 * step that runs the AdamW kernel once for all of them, with ScaLoRA's
 * column rescale and crossed moment transform folded into the same run.
 */
import { AdamWKernel, type AdamWTensor } from "../../kernels/adamw.ts";
import type { SessionOptions } from "../runtime/session.ts";
import type { ColumnScales } from "./scalora.ts";
import type { AdapterFactors, AdapterGradients, AdapterSpec } from "./types.ts";

export interface AdamWConfig {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export const DEFAULT_ADAMW: AdamWConfig = { lr: 1e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 };

export interface AdapterMoments {
  mA: Float32Array;
  vA: Float32Array;
  mB: Float32Array;
  vB: Float32Array;
}

export interface OptimizerStep {
  lr: number;
  /** 1-based optimizer step (bias correction). */
  step: number;
  /** Applied to every gradient first (clipping, accumulation averaging). */
  gradScale: number;
  /** Per-layer ScaLoRA scales of this step (layers absent: no rescale). */
  scales?: ReadonlyMap<string, ColumnScales>;
}

export class AdapterOptimizer {
  readonly moments = new Map<string, AdapterMoments>();
  readonly #kernel: AdamWKernel;

  constructor(readonly adapters: readonly AdapterSpec[], readonly config: AdamWConfig, kernel: SessionOptions) {
    for (const a of adapters) {
      const zA = () => new Float32Array(a.m * a.rank), zB = () => new Float32Array(a.n * a.rank);
      this.moments.set(a.name, { mA: zA(), vA: zA(), mB: zB(), vB: zB() });
    }
    // The factors, gradients and moments are host arrays, so the update runs on the CPU provider
    // whatever the training device: on a GPU it would copy 28 bytes per adapter parameter each step
    // (p, g, m, v up; p, m, v down) to save ~10 flops per parameter.
    this.#kernel = new AdamWKernel({ ...kernel, device: "cpu" });
  }

  /**
   * Rescales (A ← A diag(α), B ← B diag(β), gradients and moments crossed)
   * where `scales` says so, then one AdamW step; updates factors and moments in place.
   */
  async step(
    factors: ReadonlyMap<string, AdapterFactors>,
    grads: ReadonlyMap<string, AdapterGradients>,
    s: OptimizerStep,
  ): Promise<void> {
    const tensors: AdamWTensor[] = [];
    for (const a of this.adapters) {
      const f = factors.get(a.name)!, g = grads.get(a.name)!, mo = this.moments.get(a.name)!;
      const sc = s.scales?.get(a.name);
      const alpha = sc && Float32Array.from(sc.alpha), beta = sc && Float32Array.from(sc.beta);
      tensors.push(
        { rows: a.m, cols: a.rank, p: f.A, g: g.gA, m: mo.mA, v: mo.vA, paramScale: alpha, momentScale: beta },
        { rows: a.n, cols: a.rank, p: f.B, g: g.gB, m: mo.mB, v: mo.vB, paramScale: beta, momentScale: alpha },
      );
    }
    await this.#kernel.run(tensors, {
      lr: s.lr,
      beta1: this.config.beta1,
      beta2: this.config.beta2,
      eps: this.config.eps,
      weightDecay: this.config.weightDecay,
      step: s.step,
      gradScale: s.gradScale,
    });
  }

  release(): Promise<void> {
    return this.#kernel.release();
  }
}

/** ‖g‖₂ over every adapter gradient, accumulated in float64. */
export function globalGradNorm(grads: ReadonlyMap<string, AdapterGradients>): number {
  let s = 0;
  for (const { gA, gB } of grads.values()) {
    for (let i = 0; i < gA.length; i++) s += gA[i] * gA[i];
    for (let i = 0; i < gB.length; i++) s += gB[i] * gB[i];
  }
  return Math.sqrt(s);
}

/** Factor that brings the norm down to `maxNorm` (1 when within it, or when clipping is off). */
export function clipScale(norm: number, maxNorm: number): number {
  if (!(maxNorm > 0) || !(norm > maxNorm)) return 1;
  return maxNorm / (norm + 1e-6);
}
