/**
 * How much memory a training step's activations take, and how a batch is cut
 * so that they fit a budget.
 *
 * The estimate reads the training graph itself (src/onnx/graph_cost.ts):
 * the forward values its backward pass reads, at the batch's sizes, plus the
 * loss's [vocab, rows] buffers of one slice (logits, their exponentials,
 * their gradient: src/onnx/losses.ts). With layers recomputed (activation
 * checkpointing) the backward pass reads each layer's input only, and one
 * layer's intermediates exist at a time: that share is added.
 *
 * A batch too big for the budget runs as micro-batches of whole rows, whose
 * gradients are combined weighted by their counted tokens (the full batch's
 * mean, up to float rounding). When even one row of the longest sequences
 * does not fit without recomputation, the model is built with it.
 */
import type { Graph } from "../onnx/ir.ts";
import { carriedBytes } from "../onnx/graph_cost.ts";
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

/** Default activation budget: 4 GiB (a 135M model's 4 x 256 batch takes ~2 GiB without recomputation). */
export const DEFAULT_ACTIVATION_BUDGET = 4 * GiB;

export class ActivationMemory {
  readonly #cache = new Map<string, number>();

  /**
   * `graph`: the training graph (with or without recomputed layers); `layers`
   * its decoder layers; `plain`: the same graph without recomputation (for
   * one layer's intermediates), when `graph` recomputes.
   */
  constructor(
    readonly graph: Graph,
    readonly vocabSize: number,
    readonly layers: number,
    readonly plain: ActivationMemory | null = null,
  ) {}

  /** Estimated activation bytes of one run over `rows` x `seqLen` tokens. */
  bytes(rows: number, seqLen: number): number {
    const key = `${rows}x${seqLen}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined) return hit;
    const carried = carriedBytes(this.graph, lmGraphDims(rows, seqLen), (n) => !n.name.startsWith("/grad/")).bytes;
    // One loss slice at a time: logits, their exponentials, their gradient ([V, R] float32 each).
    const loss = 3 * Math.ceil(rows * seqLen / LOSS_CHUNKS) * this.vocabSize * 4;
    const layer = this.plain ? this.plain.bytes(rows, seqLen) / this.layers : 0;
    const total = carried + loss + layer;
    this.#cache.set(key, total);
    return total;
  }

  /**
   * The most rows of `seqLen` tokens (at least 1, at most `rows`) whose run
   * fits `budget`: every activation has the batch dim, so the bytes grow
   * linearly with the rows.
   */
  rowsPerRun(rows: number, seqLen: number, budget: number): number {
    return Math.max(1, Math.min(rows, Math.floor(budget / this.bytes(1, seqLen))));
  }
}
