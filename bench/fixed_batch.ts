/** A BatchSource that returns the same batch forever, so every training step costs the same (the benches). */
import type { LmBatch } from "../src/train/batching.ts";
import type { BatchSource, DataPosition } from "../src/train/types.ts";

export class FixedBatch implements BatchSource<LmBatch> {
  #i = 0;
  constructor(readonly batch: LmBatch) {}
  next(): LmBatch {
    this.#i++;
    return this.batch;
  }
  position(): DataPosition {
    return { epoch: 0, index: this.#i };
  }
  seek(p: DataPosition): void {
    this.#i = p.index;
  }
}
