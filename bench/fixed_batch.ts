/**
 * What the training benches share: a batch source of one fixed batch, one
 * trainer configuration, and their process measurements.
 */
import type { Checkpoint } from "../src/model/checkpoint.ts";
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

/** Peak resident memory of this process so far (VmHWM; the current RSS where /proc is missing). */
export function peakRssBytes(): number {
  const m = /VmHWM:\s+(\d+) kB/.exec(Deno.readTextFileSync("/proc/self/status"));
  return m ? Number(m[1]) * 1024 : Deno.memoryUsage().rss;
}

/** The 1, 5 and 15 minute load averages, or null where /proc is missing. */
export function loadAverage(): number[] | null {
  try {
    return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).map(Number);
  } catch {
    return null;
  }
}

/** Bytes of every tensor of a checkpoint held as float32 (the benches' weight budget). */
export function f32WeightBytes(ckpt: Checkpoint): number {
  return [...ckpt.tensors.values()].reduce((s, t) => s + t.shape.reduce((a, b) => a * b, 1) * 4, 0);
}
