/**
 * The hyper-parameter L of ScaLoRA. Only the product Lηs² enters
 * (α_k² = x_k / Lηs², β_k² = y_k / Lηs²), so a rule yields that product per
 * layer and scaling event.
 *
 * - fixed: Lηs² = L · η_t · s² with the scheduled learning rate η_t (the
 *   paper's grid-searched L; on the synthetic task L = 1000·λmax(XᵀX/N)).
 * - auto (default): under Adam what L really sets is the size of the factors
 *   after rescaling, ‖ã_k‖² = x_k‖a_k‖² / Lηs² (x_k‖a_k‖² is dimensionless
 *   and invariant to the gradient scale), while Adam moves each factor entry
 *   by about η per step. The rule picks Lηs² so that the rescaled factors'
 *   RMS entry (geometric mean of the A and B sides) is
 *       ρ = max(factorScale · rms(B at init), minFactorToStep · η):
 *       Lηs² = sqrt(S_A · S_B) / ρ²,
 *       S_A = Σ_k x_k (AᵀA)_kk / (m r'),  S_B = Σ_k y_k (BᵀB)_kk / (n r')
 *   over the r' non-free columns. No curvature estimate, and invariant to
 *   the loss scale (the paper's L = c·λmax is not, under Adam, where the
 *   dynamics depend on Lηs² alone), to how a column's magnitude was split
 *   between A and B, and to s. The default factorScale 0.4 serves both
 *   benchmark tasks untuned: on the synthetic task (bench/results/synthetic.md)
 *   smaller is better (final loss 3.4e-3 at 0.16, 4.2e-2 at 0.3, 0.13 at 0.4,
 *   0.23 at 0.5; the paper's L gives 0.14), while on the LM facts task
 *   (bench/results/train.md) 0.16 never reaches LoRA's final loss and 0.3,
 *   0.4, 0.5 reach it in 0.63x, 0.45x, 0.37x of LoRA's steps. The 3η floor
 *   takes over at high lr, where smaller factors make Adam's relative steps
 *   too large.
 */
import type { ScalingGrams } from "../../kernels/scaling_grams.ts";
import type { ScalingSolution } from "./scalora.ts";
import type { AdapterSpec } from "./types.ts";

export type LipschitzRule =
  | { kind: "fixed"; L: number }
  | {
    kind: "auto";
    /** Target factor RMS relative to B's RMS at initialisation (default 0.4). */
    factorScale?: number;
    /** Floor of the target in units of the learning rate (default 3). */
    minFactorToStep?: number;
  };

export const DEFAULT_FACTOR_SCALE = 0.4;
export const DEFAULT_MIN_FACTOR_TO_STEP = 3;
export const DEFAULT_LIPSCHITZ: LipschitzRule = { kind: "auto" };

export interface LipschitzContext {
  spec: AdapterSpec;
  /** Learning rate of this step. */
  lr: number;
  /** RMS of B's entries at initialisation (the adapter's natural scale). */
  initRms: number;
  solution: ScalingSolution;
  grams: ScalingGrams;
}

/** The target RMS of the rescaled factors under the auto rule. */
export function autoFactorTarget(rule: Extract<LipschitzRule, { kind: "auto" }>, lr: number, initRms: number): number {
  const target = Math.max(
    (rule.factorScale ?? DEFAULT_FACTOR_SCALE) * initRms,
    (rule.minFactorToStep ?? DEFAULT_MIN_FACTOR_TO_STEP) * lr,
  );
  if (!(target > 0)) throw new RangeError(`auto L: target factor RMS must be positive, got ${target}`);
  return target;
}

export function lEtaS2(rule: LipschitzRule, ctx: LipschitzContext): number {
  const { spec, solution: sol, grams } = ctx;
  if (rule.kind === "fixed") return rule.L * ctx.lr * spec.scale * spec.scale;
  const target = autoFactorTarget(rule, ctx.lr, ctx.initRms);
  const r = spec.rank;
  const side = (v: Float64Array, free: boolean[], gram: Float64Array, rows: number) => {
    let s = 0, cols = 0;
    for (let k = 0; k < r; k++) {
      if (free[k]) continue;
      s += v[k] * gram[k * r + k];
      cols++;
    }
    return cols ? s / (rows * cols) : 0;
  };
  const sA = side(sol.x, sol.freeX, grams.AtA, spec.m), sB = side(sol.y, sol.freeY, grams.BtB, spec.n);
  // A boundary solution zeroes one side: size the other alone.
  const s = sA > 0 && sB > 0 ? Math.sqrt(sA * sB) : Math.max(sA, sB);
  // Nothing to size (skipped layer): any positive value gives α = β = 1.
  return s > 0 ? s / target ** 2 : 1;
}
