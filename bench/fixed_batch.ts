/** What the training benches share: a batch source of one fixed batch, and one trainer configuration. */
import type { LmBatch } from "../src/train/batching.ts";
import type { TrainerConfig, TrainMode } from "../src/train/trainer.ts";
import type { BatchSource, DataPosition } from "../src/train/types.ts";

/** The benches' trainer: default L rule and AdamW, constant lr, clipping at 1, one micro-batch, seed 0. */
export function benchTrainerConfig(mode: TrainMode, interval: number, lr = 1e-4): TrainerConfig {
  return {
    mode,
    interval,
    lipschitz: { kind: "auto" },
    optimizer: { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0 },
    schedule: { decay: "constant", warmupSteps: 0, totalSteps: 1000 },
    maxGradNorm: 1,
    accumulationSteps: 1,
    seed: 0,
    init: { kind: "kaiming-uniform" },
  };
}

/** A BatchSource that returns the same batch forever, so every training step costs the same. */

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
