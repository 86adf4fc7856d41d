/**
 * Contracts of the training engine. A training graph (LM or the synthetic
 * matrix-regression task) exposes its LoRA adapters and a forward/backward
 * step; the trainer (AdamW, schedule, ScaLoRA scaling, merges) drives it and
 * never cares which problem or device it is.
 *
 * Notation follows ../shared/SCALORA.md: a layer's frozen weight W is m x n
 * (out x in, HF layout); its adapter is W_eff = W + s · A Bᵀ with A (m x r,
 * output side, zero at init) and B (n x r, input side, random at init).
 */
import type { TransferBytes } from "../runtime/transfer.ts";

export interface AdapterSpec {
  /** HF module path, e.g. `model.layers.0.self_attn.q_proj` (or `probe` in the synthetic task). */
  name: string;
  /** Output features (rows of W). */
  m: number;
  /** Input features (columns of W). */
  n: number;
  rank: number;
  /** s = alpha / r (rsLoRA: alpha / sqrt(r)). */
  scale: number;
}

/** Row-major float32 factors: A is m x r, B is n x r. */
export interface AdapterFactors {
  A: Float32Array;
  B: Float32Array;
}

export interface AdapterGradients {
  gA: Float32Array;
  gB: Float32Array;
}

export interface StepResult {
  /** Mean loss over the batch's counted elements (tokens or rows). */
  loss: number;
  grads: Map<string, AdapterGradients>;
  /** Elements the loss averaged over (label-masked tokens for LMs, rows for regression). */
  count: number;
  /** Correct next-token predictions among `count` (LMs only). */
  correct?: number;
  /** Bytes the run copied between host and device (absent on the CPU). */
  transfer?: TransferBytes;
}

/** What an evaluation run reports: a StepResult without gradients. */
export type EvalResult = Omit<StepResult, "grads">;

/**
 * Several runs' results pooled: the loss weighted by each run's count (0 when nothing was counted), counts and
 * correct predictions summed (`correct` only when some run reported it).
 */
export function pooled(parts: readonly EvalResult[]): EvalResult {
  let sum = 0, count = 0, correct = 0, hasCorrect = false;
  for (const p of parts) {
    sum += p.loss * p.count;
    count += p.count;
    if (p.correct !== undefined) {
      correct += p.correct;
      hasCorrect = true;
    }
  }
  return { loss: count > 0 ? sum / count : 0, count, ...(hasCorrect ? { correct } : {}) };
}

/**
 * How the (merged) frozen weights are held. CPU: graph inputs over JS memory,
 * merged in place. CUDA: baked initializers plus the merges since the last
 * bake as low-rank factors fed as small inputs, re-baked when they grow.
 */
export interface WeightState {
  /** W_name ← W_name + U Vᵀ with U (m x k), V (n x k), row-major. */
  mergeLowRank(name: string, U: Float32Array, V: Float32Array, k: number): Promise<void>;
  /** Several merges at once (one kernel run where the state can batch them). */
  mergeLowRankMany(merges: readonly LowRankMerge[]): Promise<void>;
  /** The current dense W (m x n) of a layer (for probes, exports, checkpoints). */
  dense(name: string): Promise<Float32Array>;
  /** The exact held state, for checkpoints: restoring it makes a resumed run bit-identical. */
  snapshot(): Promise<WeightSnapshot>;
  restore(snapshot: WeightSnapshot): Promise<void>;
}

/** W_name ← W_name + scale · U diag(c) Vᵀ; U (m x k), V (n x k) row-major, c (k) default ones, scale default 1. */
export interface LowRankMerge {
  name: string;
  U: Float32Array;
  V: Float32Array;
  k: number;
  c?: Float32Array;
  scale?: number;
}

/** A weight state's tensors by name (row-major float32) plus what it needs to read them back. */
export interface WeightSnapshot {
  /** Which WeightState wrote it ("input" | "baked"); restore() rejects another kind. */
  kind: string;
  tensors: Map<string, { shape: number[]; data: Float32Array }>;
}

/** A problem the trainer can optimise. */
export interface TrainingModel<Batch> {
  readonly adapters: readonly AdapterSpec[];
  readonly weights: WeightState;
  /** Forward + backward at the current weights with the given adapter factors. */
  forwardBackward(batch: Batch, factors: ReadonlyMap<string, AdapterFactors>): Promise<StepResult>;
  /** Forward only (validation loss). */
  evaluate(batch: Batch, factors: ReadonlyMap<string, AdapterFactors>): Promise<EvalResult>;
  /**
   * An adapted layer's weight before any merge (a fresh copy), when the model
   * can read it again: checkpoints then rebuild merged weights by replaying
   * the merges instead of storing them (merge_log.ts).
   */
  baseWeight?(name: string): Promise<Float32Array>;
  release(): Promise<void>;
}

/** Where a data source stands: enough to resume the same batch order. */
export interface DataPosition {
  epoch: number;
  /** Batches already taken in this epoch. */
  index: number;
}

/** A deterministic, resumable stream of batches. */
export interface BatchSource<Batch> {
  /** The batch at the current position; advances it. */
  next(): Batch;
  position(): DataPosition;
  seek(position: DataPosition): void;
}
