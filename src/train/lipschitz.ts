/**
 * The hyper-parameter L of ScaLoRA. Only the product Lηs² enters
 * (α_k² = x_k / Lηs², β_k² = y_k / Lηs²), and the solve fixes everything
 * else: the ratios between columns and between the A and B sides. So a rule
 * is one positive number per layer and scaling event, and what it decides is
 * how much of the adapter is merged: α_kβ_k = sqrt(x_k·y_k) / Lηs², and
 * s·A·diag(1 − α∘β)·Bᵀ moves into W.
 *
 * - fixed: Lηs² = L · η_t · s² with the scheduled learning rate η_t (the
 *   paper's grid-searched L; on the synthetic task L = 1000·λmax(XᵀX/N)).
 *
 * - auto (default): merge a fixed share of the adapter per step, taken from
 *   the smaller side of each column (`split`, below). Lηs² is chosen so
 *   that the adapter keeps γ = q^I of its column magnitude at an event every
 *   I steps:
 *       Σ_k α_kβ_k·‖a_k‖‖b_k‖ = γ · Σ_k ‖a_k‖‖b_k‖
 *       ⇔ Lηs² = Σ_k w_k·sqrt(x_k·y_k) / (γ·Σ_k w_k),  w_k = ‖a_k‖‖b_k‖,
 *   over the columns with both atoms (free columns keep scale 1). q = 0.99
 *   (DEFAULT_KEEP: γ = 0.904 at I = 10, 0.99 at I = 1). Every quantity in it is
 *   dimensionless or cancels: x_k·y_k and w_k do not change with the loss or
 *   gradient scale (clipping, accumulated sums), with how a column's
 *   magnitude is split between a_k and b_k, or with s (the rescaled
 *   s·Ã·B̃ᵀ is the same for (s, A, B) and (s·c², A/c, B/c)), and the rule
 *   uses neither η nor the weights' scale nor a curvature estimate.
 *   Why this is the right invariant (bench/results/suite.md): under Adam
 *   with the crossed moment transform each factor entry moves ~η per step
 *   whatever the gradient's scale, so after an event the factors regrow
 *   until the next; merging a share 1 − γ lets them settle where Adam's own
 *   regrowth balances the merge: small where updates are incoherent (the
 *   factors turn to new directions quickly: rank grows), large where they
 *   are coherent (large steps of W_eff), with no scale given from outside.
 *   On the design tasks the best run of every other rule merged ~5–10 % per
 *   event at I = 10, while the best factor size differed by 2–4x between
 *   tasks; q^I keeps the steady state the same for I = 1 and I = 10.
 *   A boundary solution (one side zero) merges the adapter fully; the
 *   surviving side then keeps its size (Σ_k v_k‖·_k‖² / Σ_k ‖·_k‖² = 1).
 *
 *   Measured on the suite's design tasks with the solve's split
 *   (ScaLoRA-I(10)/LoRA final loss, d1–d5): q = 0.99: 1.05 / 0.40 / 0.09 /
 *   0.96 / 0.73; q = 0.995: 1.02 / 0.33 / 0.07 / 0.92 / 0.78; q = 0.998: 1.02 / 0.63 / 0.15 / 0.94 / 0.93;
 *   q = 0.98: 1.08 / 0.45 / 0.23 / 1.03 / 0.71 (bench/results/scalora-research.md
 *   has every rule tried, and why d1 does not gain).
 *
 * - auto with `lrScaled` (not the default): γ = q^(I·η_t/η), η_t/η the
 *   schedule's current share of the base lr (dimensionless: only the shape of
 *   the schedule enters). The steady-state factor size ∝ η_t/(1 − γ) is then
 *   constant through a decaying schedule, so Adam's W-space steps decay like
 *   LoRA's (∝ η_t) instead of ∝ η_t² late in the run. Helps the slow tasks
 *   (d4 0.96 → 0.88, d1 1.05 → 1.02) and costs d5 (0.73 → 0.80), whose final
 *   loss gains from the faster annealing (solve's split). With the default
 *   split "larger", seeds 0 / 1 / 2, d1–d5: 0.98 / 0.11 / 0.045 / 0.84 /
 *   0.74, 0.96 / 0.48 / 0.014 / 0.83 / 0.78, 0.92 / 0.38 / 0.009 / 0.86 /
 *   0.77: no better than without (below), so not adopted.
 * - how the merge is applied (`split`, appliedScales). The solve fixes each
 *   column's merge α_kβ_k and the rule above its size; the split of a
 *   column's rescale between a_k and b_k is the solve's only under `split:
 *   "solve"`. The solve models the next step as SGD's, where each side's
 *   step in W grows with the square of the other side's scale; under Adam
 *   with the crossed moment transform the next step moves W by
 *   −ηs·(D_A·diag(β)·Bᵀ + A·diag(α)·D_Bᵀ) (D = m̂/√v̂, unchanged by the
 *   transform, entries of size ~1): each side's step is *linear* in the
 *   other side's scale, and its expected size² is
 *   m·Σ_k β_k²‖b_k‖² + n·Σ_k α_k²‖a_k‖² (·η²s²·E d²). Given the merge
 *   α_kβ_k = p_k and that no factor grows (α_k, β_k ≤ 1), that size is
 *   largest at a corner of the hyperbola: shrink only the side with the
 *   smaller RMS entry (α_k = p_k, β_k = 1 when ‖a_k‖/√m ≤ ‖b_k‖/√n, else
 *   α_k = 1, β_k = p_k). This is the default `split: "larger"`: the larger
 *   side keeps the size that carries Adam's steps at the tuned learning rate
 *   (as LoRA's B does), the smaller side absorbs the merge. The merged part
 *   s·A·diag(1 − p)·Bᵀ and W_eff are the solve's and the rule's; what
 *   changes is only where the adapter's remaining magnitude sits. It is invariant to the loss and gradient scale
 *   and to s; it is not invariant to moving a column's magnitude between a_k
 *   and b_k (Adam is not: that move changes Adam's next step), but the merge
 *   is. A column with p_k = 0 (a boundary solution) keeps the solve's scales;
 *   p_k > 1 (a column the rule grows) grows the smaller side. `split:
 *   "balanced"`: α_k = β_k = sqrt(p_k). The paper's fixed L always applies
 *   the solve's α, β.
 *   Measured on the design tasks d1–d5 (I(10)/LoRA, keep 0.99), seeds
 *   0 / 1 / 2: solve 1.05 / 0.40 / 0.09 / 0.95 / 0.74, 0.97 / 0.67 / 0.061 /
 *   0.94 / 0.745, 0.93 / 0.26 / 0.145 / 0.92 / 0.74; larger 0.99 / 0.11 /
 *   0.055 / 0.88 / 0.73, 0.95 / 0.48 / 0.013 / 0.86 / 0.74, 0.95 / 0.26 /
 *   0.011 / 0.86 / 0.78 (seed means: solve 0.98 / 0.44 / 0.10 / 0.94 / 0.74,
 *   larger 0.96 / 0.28 / 0.026 / 0.87 / 0.75); balanced (seed 0) 1.01 / 0.27
 *   / 0.15 / 0.94 / 0.74. Tried and dropped: keeping the expected Adam step
 *   of a column unchanged by growing its larger side (0.97 / 0.45 / 0.051 /
 *   0.89 / 0.74, seed 0), and the exact NNLS in place of the scalar fallback
 *   (solve's split: d4 1.07, d1 1.03, d2 0.36, d3 0.17). On the held-out
 *   tasks the split kept every task at or below LoRA (h4 1.01 → 0.90) and
 *   cost h1, run at the edge of LoRA's stability (0.51 → 0.90): keeping
 *   Adam's steps at LoRA's size is what the low-lr tasks lack and what such
 *   a run does not want (bench/results/scalora-research.md).
 * - the learning-rate boost (`lrBoost`, lr_boost.ts): with the keep rule the factors are stepped at up to
 *   lrBoost (default 2) times the scheduled lr while the training loss keeps falling (against 100 steps back; only
 *   at a conservative lr: lr_boost.ts boostCap); the merges
 *   hold the factors at ∝ η/(1 − q) where LoRA's grow ∝ η·t, and ScaLoRA's own best lr measured 1.5–2x LoRA's.
 *   Not with the fixed rule or the size-based forms (lrBoostCap).
 * - auto with `stepScale` κ: the rescaled factors' RMS entry is κ·η (η the
 *   run's base lr): Lηs² = sqrt(S_A·S_B) / (κη)²,
 *   S_A = Σ_k x_k(AᵀA)_kk / (m r'), S_B = Σ_k y_k(BᵀB)_kk / (n r').
 * - auto with `factorScale` (the previous default, 0.4): the same with the
 *   target max(factorScale·rms(B at init), minFactorToStep·η_t).
 */
import type { ScalingGrams } from "../../kernels/scaling_grams.ts";
import type { ColumnScales, ScalingSolution } from "./scalora.ts";
import type { AdapterSpec } from "./types.ts";
import { DEFAULT_LR_BOOST } from "./lr_boost.ts";

export type LipschitzRule =
  | { kind: "fixed"; L: number }
  | {
    kind: "auto";
    /** Share of the adapter's column magnitude kept per step (default DEFAULT_KEEP): γ = keep^I per event. */
    keep?: number;
    /** Merge in proportion to the schedule: γ = keep^(I·η_t/η), η_t the scheduled, η the base learning rate. */
    lrScaled?: boolean;
    /**
     * How each column's merge α_kβ_k is applied (appliedScales): "larger" (default) shrinks only the side with
     * the smaller RMS entry, "balanced" both by sqrt(α_kβ_k), "solve" as the solve's α_k, β_k.
     */
    split?: MergeSplit;
    /** Cap of the learning-rate boost ω (lr_boost.ts; default DEFAULT_LR_BOOST, 1 = off); keep rule only. */
    lrBoost?: number;
    /** Instead: size the rescaled factors to stepScale·η (η = the base learning rate). */
    stepScale?: number;
    /** Instead (the previous default): size them to max(factorScale·rms(B at init), minFactorToStep·η_t). */
    factorScale?: number;
    /** Floor of the factorScale target in units of the scheduled learning rate (default 3). */
    minFactorToStep?: number;
  };

export const DEFAULT_KEEP = 0.99;
export const DEFAULT_LR_SCALED = false;
export const MERGE_SPLITS = ["larger", "balanced", "solve"] as const;
export type MergeSplit = typeof MERGE_SPLITS[number];
export const DEFAULT_SPLIT: MergeSplit = "larger";
export const DEFAULT_MIN_FACTOR_TO_STEP = 3;
export const DEFAULT_LIPSCHITZ: LipschitzRule = { kind: "auto" };

export interface LipschitzContext {
  spec: AdapterSpec;
  /** Learning rate of this step (scheduled). */
  lr: number;
  /** The run's base (peak) learning rate; default `lr`. */
  baseLr?: number;
  /** Steps between scaling events (I); default 1. */
  interval?: number;
  /** RMS of B's entries at initialisation (the adapter's natural scale). */
  initRms: number;
  solution: ScalingSolution;
  grams: ScalingGrams;
}

type AutoRule = Extract<LipschitzRule, { kind: "auto" }>;

/**
 * γ: the share of the adapter's column magnitude an event keeps under the default rule;
 * `lrRatio` = η_t/η (the scheduled over the base learning rate) counts when the rule is lrScaled.
 */
export function keptShare(rule: AutoRule, interval = 1, lrRatio = 1): number {
  const q = rule.keep ?? DEFAULT_KEEP;
  if (!(q > 0 && q <= 1)) throw new RangeError(`auto L: keep must be in (0, 1], got ${q}`);
  if (!(lrRatio >= 0)) throw new RangeError(`auto L: η_t/η must be non-negative, got ${lrRatio}`);
  return q ** (interval * ((rule.lrScaled ?? DEFAULT_LR_SCALED) ? lrRatio : 1));
}

/** Whether an auto rule is one of the size-based forms (stepScale, factorScale) rather than the keep rule. */
function sizeBased(rule: AutoRule): boolean {
  return rule.factorScale !== undefined || rule.stepScale !== undefined;
}

/** The cap of ScaLoRA's learning-rate boost under `rule`: the keep rule's (default DEFAULT_LR_BOOST), else 1 (off). */
export function lrBoostCap(rule: LipschitzRule): number {
  if (rule.kind !== "auto" || sizeBased(rule)) return 1;
  const cap = rule.lrBoost ?? DEFAULT_LR_BOOST;
  if (!(cap >= 1)) throw new RangeError(`auto L: lrBoost must be ≥ 1, got ${cap}`);
  return cap;
}

/** The target RMS of the rescaled factors under the size-based auto forms (stepScale, factorScale). */
export function autoFactorTarget(rule: AutoRule, ctx: { lr: number; baseLr?: number; initRms: number }): number {
  const target = rule.factorScale !== undefined
    ? Math.max(rule.factorScale * ctx.initRms, (rule.minFactorToStep ?? DEFAULT_MIN_FACTOR_TO_STEP) * ctx.lr)
    : (rule.stepScale ?? NaN) * (ctx.baseLr ?? ctx.lr);
  if (!(target > 0)) throw new RangeError(`auto L: target factor RMS must be positive, got ${target}`);
  return target;
}

export function lEtaS2(rule: LipschitzRule, ctx: LipschitzContext): number {
  if (rule.kind === "fixed") return rule.L * ctx.lr * ctx.spec.scale * ctx.spec.scale;
  if (!sizeBased(rule)) {
    return keepProduct(keptShare(rule, ctx.interval, ctx.lr / (ctx.baseLr ?? ctx.lr)), ctx);
  }
  return sizeProduct(autoFactorTarget(rule, ctx), ctx);
}

/** Diagonal entry k of an r x r Gram. */
const diag = (g: Float64Array, r: number, k: number) => g[k * r + k];

/** Lηs² that keeps the share γ of Σ_k ‖a_k‖‖b_k‖ (see the module comment). */
function keepProduct(gamma: number, ctx: LipschitzContext): number {
  const { spec, solution: sol, grams } = ctx;
  const r = spec.rank;
  let num = 0, den = 0;
  for (let k = 0; k < r; k++) {
    if (sol.freeX[k] || sol.freeY[k]) continue;
    const w = Math.sqrt(diag(grams.AtA, r, k) * diag(grams.BtB, r, k));
    num += w * Math.sqrt(sol.x[k] * sol.y[k]);
    den += w;
  }
  if (num > 0) return num / (gamma * den);
  // No column keeps both sides (a boundary solution): the surviving side keeps its size.
  const keepSize = (v: Float64Array, free: boolean[], gram: Float64Array) => {
    let a = 0, b = 0;
    for (let k = 0; k < r; k++) {
      if (free[k]) continue;
      a += v[k] * diag(gram, r, k);
      b += diag(gram, r, k);
    }
    return a > 0 ? a / b : 0;
  };
  const s = keepSize(sol.x, sol.freeX, grams.AtA) || keepSize(sol.y, sol.freeY, grams.BtB);
  // Nothing to size (skipped layer): any positive value gives α = β = 1.
  return s > 0 ? s : 1;
}

/** Lηs² that gives the rescaled factors the RMS entry `target` (geometric mean of the two sides). */
function sizeProduct(target: number, ctx: LipschitzContext): number {
  const { spec, solution: sol, grams } = ctx;
  const r = spec.rank;
  const side = (v: Float64Array, free: boolean[], gram: Float64Array, rows: number) => {
    let s = 0, cols = 0;
    for (let k = 0; k < r; k++) {
      if (free[k]) continue;
      s += v[k] * diag(gram, r, k);
      cols++;
    }
    return cols ? s / (rows * cols) : 0;
  };
  const sA = side(sol.x, sol.freeX, grams.AtA, spec.m), sB = side(sol.y, sol.freeY, grams.BtB, spec.n);
  // A boundary solution zeroes one side: size the other alone.
  const s = sA > 0 && sB > 0 ? Math.sqrt(sA * sB) : Math.max(sA, sB);
  return s > 0 ? s / target ** 2 : 1;
}

/**
 * The scales the trainer applies: under an auto rule each column's merge p_k = α_kβ_k (the solve's ratios,
 * the rule's size) applied by `split` (see the module comment); under the fixed rule and the size-based
 * forms the solve's α, β.
 * A column the solve merges fully (p_k = 0: a boundary solution) keeps the solve's scales, so the surviving
 * side keeps its size. `grams` gives the columns' sizes (‖a_k‖² = (AᵀA)_kk over m rows, ‖b_k‖² over n).
 */
export function appliedScales(
  rule: LipschitzRule,
  scales: ColumnScales,
  grams: Pick<ScalingGrams, "r" | "AtA" | "BtB">,
  dims: { m: number; n: number },
): ColumnScales {
  // The size-based forms size both sides, so they apply the solve's split, as the fixed rule does.
  const split = rule.kind === "auto" && !sizeBased(rule) ? rule.split ?? DEFAULT_SPLIT : "solve";
  if (split === "solve") return scales;
  const { r } = grams, alpha = scales.alpha.slice(), beta = scales.beta.slice();
  for (let k = 0; k < r; k++) {
    const p = alpha[k] * beta[k];
    if (!(p > 0)) continue;
    if (split === "balanced") {
      alpha[k] = beta[k] = Math.sqrt(p);
    } else if (diag(grams.AtA, r, k) / dims.m <= diag(grams.BtB, r, k) / dims.n) {
      [alpha[k], beta[k]] = [p, 1];
    } else {
      [alpha[k], beta[k]] = [1, p];
    }
  }
  return { alpha, beta };
}
