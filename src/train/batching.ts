/**
 * Padding-aware batching of tokenized examples.
 *
 * Plan: a seeded shuffle of the examples, cut into buckets of
 * `bucketBatches` batches; each bucket is sorted by length and cut into
 * batches (so a batch holds examples of similar length and pads little);
 * then the batch order is shuffled. Same (lengths, options) → same batches.
 *
 * Tensors: right padding (real tokens first, pads after): causal attention
 * never lets a real token see a pad, and position ids are simply 0..len-1.
 * Pads get `padTokenId`, attention 0, position 0 and label IGNORE_INDEX.
 * Labels are unshifted; the training graph shifts them.
 */
import { z } from "zod";
import { Rng } from "../model/rng.ts";
import { DatasetOptionsError, IGNORE_INDEX } from "./dataset.ts";
import type { BatchSource, DataPosition } from "./types.ts";

/** One batch as the LM training graph takes it: [batchSize, seqLen] int64 tensors, row-major. */
export interface LmBatch {
  batchSize: number;
  seqLen: number;
  inputIds: BigInt64Array;
  attentionMask: BigInt64Array;
  positionIds: BigInt64Array;
  labels: BigInt64Array;
  /** Non-pad tokens. */
  tokens: number;
  /** Counted targets: labels ≠ IGNORE_INDEX at positions ≥ 1 (what the mean loss divides by). */
  targets: number;
}

export interface CollateExample {
  inputIds: readonly number[];
  labels: readonly number[];
}

export interface CollateOptions {
  padTokenId: number;
  /** Round seqLen up to a multiple (fewer distinct shapes); default 1. */
  padToMultipleOf?: number;
}

export function collate(examples: readonly CollateExample[], opts: CollateOptions): LmBatch {
  if (examples.length === 0) throw new DatasetOptionsError("cannot collate an empty batch");
  const mult = opts.padToMultipleOf ?? 1;
  const longest = Math.max(...examples.map((e) => e.inputIds.length));
  const seqLen = Math.ceil(longest / mult) * mult;
  const n = examples.length * seqLen;
  const inputIds = new BigInt64Array(n).fill(BigInt(opts.padTokenId));
  const attentionMask = new BigInt64Array(n);
  const positionIds = new BigInt64Array(n);
  const labels = new BigInt64Array(n).fill(BigInt(IGNORE_INDEX));
  let tokens = 0, targets = 0;
  examples.forEach((e, b) => {
    if (e.labels.length !== e.inputIds.length) {
      throw new DatasetOptionsError(`example ${b}: ${e.inputIds.length} ids but ${e.labels.length} labels`);
    }
    const row = b * seqLen;
    for (let t = 0; t < e.inputIds.length; t++) {
      inputIds[row + t] = BigInt(e.inputIds[t]);
      attentionMask[row + t] = 1n;
      positionIds[row + t] = BigInt(t);
      // Nothing predicts position 0, so its label never counts.
      const label = t === 0 ? IGNORE_INDEX : e.labels[t];
      labels[row + t] = BigInt(label);
      if (label !== IGNORE_INDEX) targets++;
    }
    tokens += e.inputIds.length;
  });
  return { batchSize: examples.length, seqLen, inputIds, attentionMask, positionIds, labels, tokens, targets };
}

/**
 * Rows [start, end) of a batch, cut after the last column any of them uses
 * (right padding: the columns after it are pads in every row).
 */
export function sliceRows(batch: LmBatch, start: number, end: number): LmBatch {
  const S = batch.seqLen;
  let used = 1, tokens = 0, targets = 0;
  for (let r = start; r < end; r++) {
    for (let t = 0; t < S; t++) {
      if (batch.attentionMask[r * S + t] === 0n) continue;
      used = Math.max(used, t + 1);
      tokens++;
      if (t > 0 && batch.labels[r * S + t] !== BigInt(IGNORE_INDEX)) targets++;
    }
  }
  const take = (x: BigInt64Array) => {
    const out = new BigInt64Array((end - start) * used);
    for (let r = start; r < end; r++) out.set(x.subarray(r * S, r * S + used), (r - start) * used);
    return out;
  };
  return {
    batchSize: end - start,
    seqLen: used,
    inputIds: take(batch.inputIds),
    attentionMask: take(batch.attentionMask),
    positionIds: take(batch.positionIds),
    labels: take(batch.labels),
    tokens,
    targets,
  };
}

export interface BatchPlanOptions {
  /** Most examples per batch. */
  batchSize: number;
  seed: number;
  /** Reshuffles per epoch: same seed and epoch → same plan. */
  epoch?: number;
  /** Cap on batchSize · longest length (a batch of long examples gets fewer rows). */
  maxBatchTokens?: number;
  /** Batches per length-sorted bucket (default 16); 1 makes plain random batches. */
  bucketBatches?: number;
}

const PlanSchema = z.object({
  batchSize: z.number().int().min(1),
  seed: z.number().int(),
  epoch: z.number().int().min(0).default(0),
  maxBatchTokens: z.number().int().min(1).optional(),
  bucketBatches: z.number().int().min(1).default(16),
});

/** Example indices per batch; every index appears exactly once. */
export function planBatches(lengths: readonly number[], options: BatchPlanOptions): number[][] {
  const parsed = PlanSchema.safeParse(options);
  if (!parsed.success) {
    const first = parsed.error.issues[0];
    throw new DatasetOptionsError(`invalid batching option ${first.path.join(".")}: ${first.message}`);
  }
  const opts = parsed.data;
  const rng = new Rng(opts.seed, `dataset/batches/epoch:${opts.epoch}`);
  const order = rng.shuffle([...lengths.keys()]);
  const bucketSize = opts.batchSize * opts.bucketBatches;
  const batches: number[][] = [];
  for (let from = 0; from < order.length; from += bucketSize) {
    // Longest first within a bucket; ties by index keep it deterministic.
    const bucket = order.slice(from, from + bucketSize).sort((a, b) => lengths[b] - lengths[a] || a - b);
    let current: number[] = [];
    let longest = 0;
    for (const i of bucket) {
      const wouldBe = Math.max(longest, lengths[i]) * (current.length + 1);
      const full = current.length === opts.batchSize ||
        (opts.maxBatchTokens !== undefined && current.length > 0 && wouldBe > opts.maxBatchTokens);
      if (full) {
        batches.push(current);
        current = [];
        longest = 0;
      }
      current.push(i);
      longest = Math.max(longest, lengths[i]);
    }
    if (current.length) batches.push(current);
  }
  return rng.shuffle(batches);
}

/** Plans and collates in one go. */
export function makeBatches(
  examples: readonly CollateExample[],
  plan: BatchPlanOptions,
  collateOpts: CollateOptions,
): LmBatch[] {
  return planBatches(examples.map((e) => e.inputIds.length), plan)
    .map((idx) => collate(idx.map((i) => examples[i]), collateOpts));
}

/** Share of a batch list's tensor slots that are padding. */
export function paddingFraction(batches: readonly LmBatch[]): number {
  const slots = batches.reduce((n, b) => n + b.batchSize * b.seqLen, 0);
  const tokens = batches.reduce((n, b) => n + b.tokens, 0);
  return slots === 0 ? 0 : 1 - tokens / slots;
}

/**
 * The trainer's resumable batch stream over a tokenized dataset: each epoch's
 * plan is re-derived from (seed, epoch), so a position is all a checkpoint
 * needs. Every example appears once per epoch (last batches may be smaller).
 */
export class LmBatchSource implements BatchSource<LmBatch> {
  #position: DataPosition = { epoch: 0, index: 0 };
  #plan: { epoch: number; batches: number[][] } | null = null;

  constructor(
    readonly examples: readonly CollateExample[],
    readonly plan: Omit<BatchPlanOptions, "epoch">,
    readonly collateOptions: CollateOptions,
  ) {
    if (examples.length === 0) throw new DatasetOptionsError("no examples to batch");
  }

  /** Batches in `epoch` (bucketing with maxBatchTokens can change the count per epoch). */
  batchesIn(epoch: number): number {
    return this.#batches(epoch).length;
  }

  next(): LmBatch {
    let { epoch, index } = this.#position;
    if (index >= this.#batches(epoch).length) {
      epoch++;
      index = 0;
    }
    const idx = this.#batches(epoch)[index];
    this.#position = { epoch, index: index + 1 };
    return collate(idx.map((i) => this.examples[i]), this.collateOptions);
  }

  position(): DataPosition {
    return { ...this.#position };
  }

  seek(position: DataPosition): void {
    this.#position = { ...position };
  }

  #batches(epoch: number): number[][] {
    if (this.#plan?.epoch !== epoch) {
      const lengths = this.examples.map((e) => e.inputIds.length);
      this.#plan = { epoch, batches: planBatches(lengths, { ...this.plan, epoch }) };
    }
    return this.#plan.batches;
  }
}
