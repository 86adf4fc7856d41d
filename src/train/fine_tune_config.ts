/**
 * fineTune's options: their schema with defaults (checked once, at the start
 * of a run), what part of them determines the trajectory (a checkpoint of
 * another trajectory is not resumed), and the trainer configuration they
 * imply.
 */
import { z } from "zod";
import { DEVICES } from "../runtime/device.ts";
import { TARGET_MODULES } from "./lm_training_graph.ts";
import type { LipschitzRule } from "./lipschitz.ts";
import type { TrainerConfig } from "./trainer.ts";

export class FineTuneOptionsError extends Error {
  override name = "FineTuneOptionsError";
}

export const FineTuneOptionsSchema = z.object({
  model: z.string().min(1),
  dataDir: z.string().min(1).default("./data"),
  trainText: z.string(),
  validationText: z.string().optional(),
  method: z.enum(["lora", "scalora", "scalora-scalar"]),
  rank: z.number().int().min(1),
  alpha: z.number().positive(),
  rsLora: z.boolean().default(false),
  interval: z.number().int().min(1),
  lipschitz: z.union([
    z.number().positive(),
    z.literal("auto"),
    z.object({ factorScale: z.number().positive().optional(), minFactorToStep: z.number().positive().optional() })
      .strict(),
  ]).default("auto"),
  targetModules: z.array(z.enum(TARGET_MODULES)).min(1).default([...TARGET_MODULES]),
  epochs: z.number().int().min(1),
  batchSize: z.number().int().min(1),
  learningRate: z.number().positive(),
  warmupRatio: z.number().min(0).max(1).default(0),
  schedule: z.enum(["linear", "cosine", "constant"]).default("linear"),
  maxGradNorm: z.number().min(0).default(1),
  gradientAccumulation: z.number().int().min(1).default(1),
  maxLength: z.number().int().min(2),
  seed: z.number().int(),
  validationFraction: z.number().min(0).max(0.9).default(0),
  checkpointDir: z.string().min(1),
  checkpointEvery: z.number().int().min(0),
  resume: z.boolean().default(false),
  device: z.enum(DEVICES).default("cpu"),
  threads: z.number().int().min(1).optional(),
  weightDecay: z.number().min(0).default(0),
  evalEvery: z.number().int().min(0).optional(),
  keepCheckpoints: z.number().int().min(1).default(2),
});
/** fineTune's options with every default filled in. */
export type FineTuneConfig = z.output<typeof FineTuneOptionsSchema>;

/** Checks fineTune's options and fills in the defaults. */
export function parseFineTuneOptions(opts: unknown): FineTuneConfig {
  const r = FineTuneOptionsSchema.safeParse(opts);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new FineTuneOptionsError(`invalid fine-tuning option ${first.path.join(".")}: ${first.message}`);
  }
  return r.data;
}

/** The trainer configuration a run's options imply. */
export function trainerConfig(o: FineTuneConfig, totalSteps: number): TrainerConfig {
  const l = o.lipschitz;
  const lipschitz: LipschitzRule = l === "auto"
    ? { kind: "auto" }
    : typeof l === "number"
    ? { kind: "fixed", L: l }
    : { kind: "auto", ...l };
  return {
    mode: o.method,
    interval: o.interval,
    lipschitz,
    optimizer: { lr: o.learningRate, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: o.weightDecay },
    schedule: { decay: o.schedule, warmupSteps: Math.round(o.warmupRatio * totalSteps), totalSteps },
    maxGradNorm: o.maxGradNorm,
    accumulationSteps: o.gradientAccumulation,
    seed: o.seed,
    init: { kind: "kaiming-uniform" },
  };
}

/** What determines a run's trajectory (not where it is saved, how often, or on how many threads). */
export const TRAJECTORY_KEYS = [
  "method",
  "rank",
  "alpha",
  "rsLora",
  "interval",
  "lipschitz",
  "targetModules",
  "epochs",
  "batchSize",
  "learningRate",
  "warmupRatio",
  "schedule",
  "maxGradNorm",
  "gradientAccumulation",
  "maxLength",
  "seed",
  "validationFraction",
  "weightDecay",
] as const satisfies readonly (keyof FineTuneConfig)[];
