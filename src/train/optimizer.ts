/**
 * AdamW state of every adapter (first/second moments of A and B) and the
 * step that runs the AdamW kernel once for all of them, with ScaLoRA's
 * column rescale and crossed moment transform folded into the same run.
 */
import { AdamWKernel } from "../../kernels/adamw.ts";
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
  /** Per adapter: views into the flat moment buffers. */
  readonly moments = new Map<string, AdapterMoments>();
  readonly #kernel: AdamWKernel;
  /** Where each adapter's A and B start in the flat layout (A then B, adapter by adapter). */
  readonly #offsets: { a: number; b: number }[] = [];
  readonly #flat: { p: Float32Array; g: Float32Array; m: Float32Array; v: Float32Array };
  #scales: { param: Float32Array; moment: Float32Array } | null = null;

  constructor(readonly adapters: readonly AdapterSpec[], readonly config: AdamWConfig, kernel: SessionOptions) {
    let n = 0;
    for (const a of adapters) {
      this.#offsets.push({ a: n, b: n + a.m * a.rank });
      n += (a.m + a.n) * a.rank;
    }
    const buffer = () => new Float32Array(n);
    this.#flat = { p: buffer(), g: buffer(), m: buffer(), v: buffer() };
    adapters.forEach((a, i) => {
      const { a: oa, b: ob } = this.#offsets[i], mr = a.m * a.rank, nr = a.n * a.rank;
      const view = (x: Float32Array, at: number, len: number) => x.subarray(at, at + len);
      this.moments.set(a.name, {
        mA: view(this.#flat.m, oa, mr),
        vA: view(this.#flat.v, oa, mr),
        mB: view(this.#flat.m, ob, nr),
        vB: view(this.#flat.v, ob, nr),
      });
    });
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
    // One flat run (AdamWKernel.runFlat): factors and gradients gathered into the flat layout, the
    // columns' scales expanded per element on a scaling step, the factors scattered back.
    const { p, g } = this.#flat;
    const scaled = !!s.scales && s.scales.size > 0;
    if (scaled) this.#scales ??= { param: new Float32Array(p.length), moment: new Float32Array(p.length) };
    this.adapters.forEach((a, i) => {
      const f = factors.get(a.name)!, gr = grads.get(a.name)!, { a: oa, b: ob } = this.#offsets[i];
      const need = (x: Float32Array, len: number, what: string) => {
        if (x.length !== len) throw new Error(`AdamW: ${a.name}.${what} has ${x.length} values, expected ${len}`);
        return x;
      };
      p.set(need(f.A, a.m * a.rank, "A"), oa);
      p.set(need(f.B, a.n * a.rank, "B"), ob);
      g.set(need(gr.gA, a.m * a.rank, "gA"), oa);
      g.set(need(gr.gB, a.n * a.rank, "gB"), ob);
      if (!scaled) return;
      const sc = s.scales!.get(a.name);
      const { param, moment } = this.#scales!;
      // A: its columns take α, its gradient and moments β; B the other way round (SCALORA.md).
      expandColumns(param, oa, a.m, a.rank, sc?.alpha);
      expandColumns(moment, oa, a.m, a.rank, sc?.beta);
      expandColumns(param, ob, a.n, a.rank, sc?.beta);
      expandColumns(moment, ob, a.n, a.rank, sc?.alpha);
    });
    await this.#kernel.runFlat({
      ...this.#flat,
      ...(scaled ? { paramScale: this.#scales!.param, momentScale: this.#scales!.moment } : {}),
    }, {
      lr: s.lr,
      beta1: this.config.beta1,
      beta2: this.config.beta2,
      eps: this.config.eps,
      weightDecay: this.config.weightDecay,
      step: s.step,
      gradScale: s.gradScale,
    });
    this.adapters.forEach((a, i) => {
      const f = factors.get(a.name)!, { a: oa, b: ob } = this.#offsets[i];
      f.A.set(p.subarray(oa, oa + a.m * a.rank));
      f.B.set(p.subarray(ob, ob + a.n * a.rank));
    });
  }

  release(): Promise<void> {
    return this.#kernel.release();
  }
}

/** rows x cols column scales d (float32, as the per-tensor kernel took them; none: ones) at `at`, row-major. */
function expandColumns(out: Float32Array, at: number, rows: number, cols: number, d?: ArrayLike<number>): void {
  if (!d) {
    out.fill(1, at, at + rows * cols);
    return;
  }
  const row = Float32Array.from(d);
  for (let i = 0; i < rows; i++) out.set(row, at + i * cols);
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
