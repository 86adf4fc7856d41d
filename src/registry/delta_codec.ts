/**
 * Pure math and layout of a version's delta: validation against the base
 * layout, the per-layer storage choice (low-rank log vs dense), factor
 * concatenation, and W + U Vᵀ.
 *
 * Σ_t U_t V_tᵀ = [U_1 … U_T] [V_1 … V_T]ᵀ, so a layer's whole log is stored as
 * one concatenated pair (U: m x K, V: n x K, K = Σ k_t), term order kept.
 */
import type { TensorSpec } from "../model/layout.ts";
import { RegistryError } from "./errors.ts";
import type { LayerDelta } from "../train/layer_delta.ts";

export type LayerFormat = "lowrank" | "dense";

/** Weight tensor name of a layer (`…q_proj` → `…q_proj.weight`). */
export function weightName(layer: string): string {
  return `${layer}.weight`;
}

/** Total rank of a layer's log. */
export function totalRank(delta: LayerDelta): number {
  return delta.terms.reduce((s, t) => s + t.k, 0);
}

/**
 * The low-rank log while it holds fewer numbers than the dense delta
 * (K·(m+n) < m·n), else dense. Counts elements, not bytes: the log is f32 and
 * the dense delta f16, which biases the choice toward the exact form.
 */
export function chooseFormat(delta: LayerDelta): LayerFormat {
  return totalRank(delta) * (delta.m + delta.n) < delta.m * delta.n ? "lowrank" : "dense";
}

/** Checks names, shapes and factor sizes against the base model's layout; throws invalid_delta. */
export function validateDeltas(deltas: readonly LayerDelta[], layout: readonly TensorSpec[]): void {
  const shapes = new Map(layout.map((t) => [t.name, t.shape]));
  const seen = new Set<string>();
  for (const [i, d] of deltas.entries()) {
    const where = `deltas[${i}] (${d.name})`;
    if (seen.has(d.name)) throw invalid(`${where}: layer appears twice`);
    seen.add(d.name);
    const shape = shapes.get(weightName(d.name));
    if (!shape || shape.length !== 2) {
      throw invalid(`${where}: the base model has no linear weight ${weightName(d.name)}`);
    }
    if (d.m !== shape[0] || d.n !== shape[1]) {
      throw invalid(`${where}: delta is ${d.m}x${d.n} but the base weight is ${shape[0]}x${shape[1]}`);
    }
    if (d.terms.length === 0) throw invalid(`${where}: no terms`);
    for (const [j, t] of d.terms.entries()) {
      if (!Number.isInteger(t.k) || t.k < 1) throw invalid(`${where}: term ${j} has rank ${t.k}`);
      if (t.U.length !== d.m * t.k || t.V.length !== d.n * t.k) {
        throw invalid(
          `${where}: term ${j} factors have ${t.U.length}/${t.V.length} values, expected ${d.m * t.k}/${d.n * t.k}`,
        );
      }
    }
  }
}

function invalid(message: string): RegistryError {
  return new RegistryError("invalid_delta", message, "deltas");
}

/** The concatenated factors: U (m x K) and V (n x K), row-major. */
export function concatFactors(delta: LayerDelta): { U: Float32Array; V: Float32Array; K: number } {
  const K = totalRank(delta);
  if (delta.terms.length === 1) return { U: delta.terms[0].U, V: delta.terms[0].V, K };
  const U = new Float32Array(delta.m * K);
  const V = new Float32Array(delta.n * K);
  let col = 0;
  for (const t of delta.terms) {
    for (let i = 0; i < delta.m; i++) U.set(t.U.subarray(i * t.k, (i + 1) * t.k), i * K + col);
    for (let j = 0; j < delta.n; j++) V.set(t.V.subarray(j * t.k, (j + 1) * t.k), j * K + col);
    col += t.k;
  }
  return { U, V, K };
}

/**
 * W + U Vᵀ (W is m x n, U m x K, V n x K) into a new array: each element
 * accumulated in f64 over l = 0..K-1 and rounded to f32 once, so the result
 * depends only on the values and term order (tests reproduce it exactly).
 * Pass `W` null for the bare U Vᵀ.
 */
export function addLowRank(
  W: Float32Array | null,
  U: Float32Array,
  V: Float32Array,
  m: number,
  n: number,
  K: number,
): Float32Array {
  const out = new Float32Array(m * n);
  for (let i = 0; i < m; i++) {
    const u = i * K;
    const row = i * n;
    for (let j = 0; j < n; j++) {
      const v = j * K;
      let acc = 0;
      for (let l = 0; l < K; l++) acc += U[u + l] * V[v + l];
      out[row + j] = (W === null ? 0 : W[row + j]) + acc;
    }
  }
  return out;
}

/** W + D elementwise (both f32) into a new array. */
export function addDense(W: Float32Array, D: Float32Array): Float32Array {
  if (W.length !== D.length) throw new RangeError(`addDense: ${W.length} vs ${D.length} values`);
  const out = new Float32Array(W.length);
  for (let i = 0; i < W.length; i++) out[i] = W[i] + D[i];
  return out;
}

/** Largest |x|; NaN when any value is NaN. */
export function maxAbs(values: Float32Array): number {
  let max = 0;
  for (let i = 0; i < values.length; i++) {
    const a = Math.abs(values[i]);
    if (Number.isNaN(a)) return NaN;
    if (a > max) max = a;
  }
  return max;
}
