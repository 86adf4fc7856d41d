/**
 * Deterministic data order for training: a fresh seeded permutation per
 * epoch, cut into batches (sampling without replacement, epoch reshuffle).
 * The position (epoch, batch index) is all a checkpoint needs: each epoch's
 * permutation is re-derived from (seed, epoch), not from a live RNG state.
 */
import { Rng } from "../model/rng.ts";
import type { BatchSource, DataPosition } from "./types.ts";

export interface EpochSamplerOptions {
  /** Examples in the dataset. */
  size: number;
  batchSize: number;
  seed: number;
}

/** Yields batches of example indices; a trailing partial batch is dropped (every batch has `batchSize`). */
export class EpochSampler implements BatchSource<number[]> {
  readonly batchesPerEpoch: number;
  #epoch = 0;
  #index = 0;
  #order: number[] | null = null;

  constructor(readonly options: EpochSamplerOptions) {
    if (!(options.batchSize >= 1 && options.batchSize <= options.size)) {
      throw new RangeError(`batch size ${options.batchSize} does not fit ${options.size} examples`);
    }
    this.batchesPerEpoch = Math.floor(options.size / options.batchSize);
  }

  next(): number[] {
    if (this.#index >= this.batchesPerEpoch) {
      this.#epoch++;
      this.#index = 0;
      this.#order = null;
    }
    this.#order ??= this.#permutation(this.#epoch);
    const b = this.options.batchSize, start = this.#index * b;
    this.#index++;
    return this.#order.slice(start, start + b);
  }

  position(): DataPosition {
    return { epoch: this.#epoch, index: this.#index };
  }

  seek(p: DataPosition): void {
    if (!(Number.isInteger(p.epoch) && p.epoch >= 0 && Number.isInteger(p.index) && p.index >= 0)) {
      throw new RangeError(`invalid data position ${JSON.stringify(p)}`);
    }
    this.#epoch = p.epoch;
    this.#index = p.index;
    this.#order = null;
  }

  #permutation(epoch: number): number[] {
    const order = Array.from({ length: this.options.size }, (_, i) => i);
    return new Rng(this.options.seed, `epoch:${epoch}`).shuffle(order);
  }
}
