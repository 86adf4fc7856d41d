/**
 * Contracts between training (src/train/fine_tune.ts, the job runner) and the
 * model registry (versions, aliases, hot-swap).
 *
 * A fine-tuned model is its base plus, for each adapted layer, the update
 * W_final − W_base as a sum of low-rank terms: every ScaLoRA merge
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

export type VersionKind = "final" | "checkpoint";

export interface NewVersion {
  /** `ft:<base>:<suffix>:<job-id>`, or `<that>:ckpt-step-<N>` for a checkpoint. */
  name: string;
  kind: VersionKind;
  jobId: string;
  /** The base model id as served (directory or hub id). */
  baseModel: string;
  deltas: LayerDelta[];
  /** Training metrics at this point (step, losses, …), kept with the version. */
  metrics?: Record<string, unknown>;
}
