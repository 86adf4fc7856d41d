/**
 * How much memory a training step's activations take, and how a batch is cut
 * so that they fit a budget.
 *
 * The estimate reads the training graph itself (src/onnx/graph_cost.ts
 * peakLiveBytes): the most bytes its values hold at once at the batch's
 * sizes, running the nodes in the order they were built (the forward pass,
 * then the backward pass as autodiff emitted it; onnxruntime follows it
 * where it matters: the loss slices and recomputed layers are chained, and
 * adapter gradients are tied into the backward chain, src/onnx/autodiff.ts).
 * Measured on the 135M preset, the process's peak RSS above its weights is
 * 0.9–2.4x that estimate (allocator slack, kernels' scratch memory), so a
 * run is sized to fit the budget at twice the estimate.
 *
 * A batch too big for the budget runs as micro-batches of whole rows, whose
 * gradients are combined weighted by their counted tokens (the full batch's
 * mean, up to float rounding). When even one row of the longest sequences
 * does not fit without recomputation, the model is built with it.
 */
import type { Graph } from "../onnx/ir.ts";
import { peakLiveBytes } from "../onnx/graph_cost.ts";
import { LOSS_CHUNK_ROWS } from "../onnx/losses.ts";

/** Slices of the loss (linearCrossEntropy's `chunks`) in the LM training graph. */
export const LOSS_CHUNKS = 8;

/** The symbol sizes of an LM training graph for a batch of `rows` x `seqLen`. */
export function lmGraphDims(rows: number, seqLen: number, lossChunks = LOSS_CHUNKS): Record<string, number> {
  return {
    batch_size: rows,
    sequence_length: seqLen,
    total_sequence_length: seqLen,
    [LOSS_CHUNK_ROWS]: Math.ceil(rows * seqLen / lossChunks),
  };
}

export const GiB = 2 ** 30;

/** Default activation budget: 4 GiB (a 135M model's 4 x 256 batch is estimated at 1.8 GiB without recomputation). */
export const DEFAULT_ACTIVATION_BUDGET = 4 * GiB;

/** A run is sized so that this many times its estimate fits the budget. */
export const ALLOCATOR_SLACK = 2;

export class ActivationMemory {
  readonly #cache = new Map<string, number>();

  /** `graph`: the training graph; `recompute`: whether its layers are recomputed regions. */
  constructor(readonly graph: Graph, readonly recompute: boolean) {}

  /** Estimated activation bytes of one run over `rows` x `seqLen` tokens (the most alive at once). */
  bytes(rows: number, seqLen: number): number {
    const key = `${rows}x${seqLen}`;
    let hit = this.#cache.get(key);
    if (hit === undefined) {
      hit = peakLiveBytes(this.graph, lmGraphDims(rows, seqLen)).bytes;
      this.#cache.set(key, hit);
    }
    return hit;
  }

  /**
   * The most rows of `seqLen` tokens (at least 1, at most `rows`) whose run
   * fits `budget` with ALLOCATOR_SLACK: every activation has the batch dim,
   * so the bytes grow linearly with the rows.
   */
  rowsPerRun(rows: number, seqLen: number, budget: number): number {
    return Math.max(1, Math.min(rows, Math.floor(budget / (ALLOCATOR_SLACK * this.bytes(1, seqLen)))));
  }

  /** Whether one row of `seqLen` tokens fits `budget` (with ALLOCATOR_SLACK). */
  fits(seqLen: number, budget: number): boolean {
    return ALLOCATOR_SLACK * this.bytes(1, seqLen) <= budget;
  }
}
