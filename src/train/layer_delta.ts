/**
 * What a fine-tuning run produces: for each adapted layer, the update
 * W_final − W_base as a sum of low-rank terms — every ScaLoRA merge
 * (s · A diag(1 − α∘β), B) and the final adapter (s · A, B). The registry
 * decides how to store it (the low-rank log while smaller than the dense
 * delta, else a dense f16/bf16 delta).
 */

/** One rank-k term U Vᵀ, U (m x k) and V (n x k) row-major float32. */
export interface LowRankTerm {
  U: Float32Array;
  V: Float32Array;
  k: number;
}

/** W_final − W_base of one layer (HF name without `.weight`, e.g. `model.layers.0.self_attn.q_proj`). */
export interface LayerDelta {
  name: string;
  /** Rows (out features) and columns (in features) of W. */
  m: number;
  n: number;
  terms: LowRankTerm[];
}
