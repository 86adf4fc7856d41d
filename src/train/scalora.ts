/**
 * ScaLoRA's host-side solve (../shared/SCALORA.md): from the five r x r Grams
 * of a layer, the optimal non-negative column scalings α, β of A and B.
 *
 * With x_k = Lηs²α_k², y_k = Lηs²β_k² the objective
 * ‖(1/L)G − ηs²(G B̃B̃ᵀ + ÃÃᵀG)‖² is (L² times) the least-squares fit of G by
 * the 2r atoms a_k Q_kᵀ and P_k b_kᵀ: normal equations H u = λ with
 *   H = [[AᵀA ⊙ QᵀQ, (AᵀP)⊙(AᵀP)], [·ᵀ, PᵀP ⊙ BᵀB]],  λ = [diag QᵀQ; diag PᵀP].
 * u does not depend on L, η or s (only the final α, β do), nor on the scale
 * of the gradients.
 */
import type { ScalingGrams } from "../../kernels/scaling_grams.ts";
import { choleskySolve, pinvSolveSymmetric } from "./linalg.ts";

export type ScalingKind =
  /** Column-wise solution, all u ≥ 0. */
  | "columnwise"
  /** One α for A, one β for B (2 x 2 system), interior solution. */
  | "scalar"
  /** Scalar system with a negative component: the better of (x, 0) and (0, y). */
  | "boundary"
  /** Zero gradient: nothing to fit, scales stay 1. */
  | "skipped";

export interface ScalingSolution {
  kind: ScalingKind;
  /** x_k = Lηs²α_k² (length r). */
  x: Float64Array;
  /** y_k = Lηs²β_k² (length r). */
  y: Float64Array;
  /**
   * Columns whose atom is zero (a_k = 0 or Q_k = 0 for x; P_k = 0 or b_k = 0
   * for y): the objective does not depend on them, so their scale stays 1.
   */
  freeX: boolean[];
  freeY: boolean[];
  /** True when the least-squares (pseudo-inverse) fallback was used. */
  leastSquares: boolean;
}

export interface ScalingSystem {
  r: number;
  /** 2r x 2r, row-major. */
  H: Float64Array;
  /** 2r. */
  lambda: Float64Array;
}

/** Builds H and λ exactly as SCALORA.md from the five Grams. */
export function scalingSystem(gr: ScalingGrams): ScalingSystem {
  const { r, AtA, BtB, PtP, QtQ, AtP } = gr;
  const n = 2 * r, H = new Float64Array(n * n), lambda = new Float64Array(n);
  for (let i = 0; i < r; i++) {
    lambda[i] = QtQ[i * r + i];
    lambda[r + i] = PtP[i * r + i];
    for (let j = 0; j < r; j++) {
      H[i * n + j] = AtA[i * r + j] * QtQ[i * r + j];
      H[(r + i) * n + r + j] = PtP[i * r + j] * BtB[i * r + j];
      const ab = AtP[i * r + j] ** 2; // H_AB[i, j] = ((AᵀP)[i, j])²
      H[i * n + r + j] = ab;
      H[(r + j) * n + i] = ab;
    }
  }
  return { r, H, lambda };
}

/** uᵀHu − 2uᵀλ: the objective up to the constant ‖G‖² and the factor 1/L². */
export function scalingObjective(H: Float64Array, lambda: Float64Array, u: ArrayLike<number>): number {
  const n = lambda.length;
  let f = 0;
  for (let i = 0; i < n; i++) {
    let hu = 0;
    for (let j = 0; j < n; j++) hu += H[i * n + j] * u[j];
    f += u[i] * hu - 2 * u[i] * lambda[i];
  }
  return f;
}

/** Pivots of the unit-diagonal (Jacobi-preconditioned) matrix below this count as singular. */
const MIN_PIVOT = 1e-10;
/** Eigenvalues below this fraction of the largest are dropped by the least-squares fallback. */
const RCOND = 1e-10;
/** A diagonal entry of H this small relative to the largest is a zero atom. */
const ZERO_ATOM = 1e-24;
/** Rounding-level negatives (relative to max |u|) count as zero, not as a failed column-wise solve. */
const NEG_TOL = 1e-12;

export interface SolveOptions {
  /** "columnwise" (ScaLoRA: column-wise, scalar fallback) or "scalar" (ScaLoRA-scalar). */
  mode: "columnwise" | "scalar";
}

export function solveScaling(gr: ScalingGrams, opts: SolveOptions = { mode: "columnwise" }): ScalingSolution {
  const sys = scalingSystem(gr);
  const { r, lambda } = sys;
  const ones = () => new Float64Array(r).fill(1);
  if (lambda.every((l) => l === 0)) {
    return { kind: "skipped", x: ones(), y: ones(), freeX: [], freeY: [], leastSquares: false };
  }
  if (opts.mode === "columnwise") {
    const col = solveColumnwise(sys);
    const top = Math.max(...Array.from(col.u, Math.abs));
    if (col.u.every((v) => v >= -NEG_TOL * top)) {
      const u = col.u.map((v) => Math.max(0, v));
      return {
        kind: "columnwise",
        x: u.slice(0, r),
        y: u.slice(r),
        freeX: col.free.slice(0, r),
        freeY: col.free.slice(r),
        leastSquares: col.leastSquares,
      };
    }
  }
  return solveScalar(sys);
}

/** Jacobi-preconditioned solve of H u = λ over the non-zero atoms; pseudo-inverse when singular. */
function solveColumnwise(sys: ScalingSystem): { u: Float64Array; free: boolean[]; leastSquares: boolean } {
  const { H, lambda } = sys;
  const n = lambda.length;
  const diagMax = Math.max(...Array.from({ length: n }, (_, i) => H[i * n + i]));
  const free = Array.from({ length: n }, (_, i) => !(H[i * n + i] > ZERO_ATOM * diagMax));
  const act = [...free.keys()].filter((i) => !free[i]);
  const k = act.length;
  const d = act.map((i) => 1 / Math.sqrt(H[i * n + i]));
  const M = new Float64Array(k * k), b = new Float64Array(k);
  act.forEach((i, a) => {
    b[a] = d[a] * lambda[i];
    act.forEach((j, c) => M[a * k + c] = d[a] * H[i * n + j] * d[c]);
  });
  let z = choleskySolve(M, k, b, MIN_PIVOT);
  const leastSquares = z === null;
  z ??= pinvSolveSymmetric(M, k, b, RCOND);
  const u = new Float64Array(n);
  act.forEach((i, a) => u[i] = d[a] * z![a]);
  return { u, free, leastSquares };
}

/** The 2 x 2 system of SᵀHS z = Sᵀλ, S = [1_r 0; 0 1_r], with the boundary rule. */
function solveScalar(sys: ScalingSystem): ScalingSolution {
  const { r, H, lambda } = sys;
  const n = 2 * r;
  let h00 = 0, h01 = 0, h11 = 0, l0 = 0, l1 = 0;
  for (let i = 0; i < r; i++) {
    l0 += lambda[i];
    l1 += lambda[r + i];
    for (let j = 0; j < r; j++) {
      h00 += H[i * n + j];
      h01 += H[i * n + r + j];
      h11 += H[(r + i) * n + r + j];
    }
  }
  const H2 = Float64Array.of(h00, h01, h01, h11), l2 = Float64Array.of(l0, l1);
  const det = h00 * h11 - h01 * h01;
  let leastSquares = false;
  let z: Float64Array;
  if (h00 > 0 && h11 > 0 && det > MIN_PIVOT * h00 * h11) {
    z = Float64Array.of((h11 * l0 - h01 * l1) / det, (h00 * l1 - h01 * l0) / det);
  } else {
    z = pinvSolveSymmetric(H2, 2, l2, RCOND);
    leastSquares = true;
  }
  const top = Math.max(Math.abs(z[0]), Math.abs(z[1]));
  let kind: ScalingKind = "scalar";
  if (z[0] < -NEG_TOL * top || z[1] < -NEG_TOL * top) {
    const za = Float64Array.of(h00 > 0 ? l0 / h00 : 0, 0);
    const zb = Float64Array.of(0, h11 > 0 ? l1 / h11 : 0);
    z = scalingObjective(H2, l2, za) <= scalingObjective(H2, l2, zb) ? za : zb;
    kind = "boundary";
  }
  const x = new Float64Array(r).fill(Math.max(0, z[0])), y = new Float64Array(r).fill(Math.max(0, z[1]));
  const none = new Array<boolean>(r).fill(false);
  return { kind, x, y, freeX: none, freeY: none.slice(), leastSquares };
}

export interface ColumnScales {
  alpha: Float64Array;
  beta: Float64Array;
}

/** α = sqrt(x / (Lηs²)), β = sqrt(y / (Lηs²)); free columns and skipped layers keep 1. */
export function columnScales(sol: ScalingSolution, lEtaS2: number): ColumnScales {
  if (!(lEtaS2 > 0)) throw new RangeError(`Lηs² must be positive, got ${lEtaS2}`);
  const scale = (v: Float64Array, free: boolean[]) =>
    v.map((t, k) => sol.kind === "skipped" || free[k] ? 1 : Math.sqrt(t / lEtaS2));
  return { alpha: scale(sol.x, sol.freeX), beta: scale(sol.y, sol.freeY) };
}
