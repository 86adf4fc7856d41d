/**
 * The fine-tuning configuration: one schema with documented defaults (as
 * PEFT's LoraConfig), used by fineTune(), the `train` CLI (its flags set these
 * fields; what a flag leaves out comes from here) and the HTTP API (a job's
 * OpenAI-style hyperparameters resolve into these fields, and their documented
 * defaults are the ones here, see src/jobs/job_spec.ts).
 *
 * Two groups: how to train (`TrainingConfigSchema`: every field has a default,
 * so `TRAINING_DEFAULTS` is a complete configuration, and together they fix a
 * run's trajectory) and what to train on and where (the model, the data, the
 * checkpoint directory, the device).
 */
import { z } from "zod";
import { DEVICES } from "../runtime/device.ts";
import { TARGET_MODULES } from "./lm_training_graph.ts";
import { type LipschitzRule, MERGE_SPLITS } from "./lipschitz.ts";
import { MAX_LR_BOOST } from "./lr_boost.ts";
import type { TrainerConfig } from "./trainer.ts";

export class FineTuneOptionsError extends Error {
  override name = "FineTuneOptionsError";
}

export const METHODS = ["scalora", "lora", "scalora-scalar"] as const;
export type Method = typeof METHODS[number];
export const SCHEDULES = ["linear", "cosine", "constant"] as const;

/** An unset alpha is this many times the rank (adapter scale s = alpha / rank = 2). */
export const ALPHA_PER_RANK = 2;

/**
 * How to train. The order of the fields is the order in which they enter a
 * run's fingerprint (TRAJECTORY_KEYS): keep it, or checkpoints written before
 * stop resuming.
 */
const trainingFields = {
  /** `scalora` (column-wise scaling with the scalar fallback), `scalora-scalar`, or plain `lora`. */
  method: z.enum(METHODS).default("scalora"),
  /** Adapter rank r. */
  rank: z.number().int().min(1).default(8),
  /** Adapter scale numerator (s = alpha / rank); unset: ALPHA_PER_RANK x rank. */
  alpha: z.number().positive().optional(),
  /** rsLoRA scaling (s = alpha / √rank). */
  rsLora: z.boolean().default(false),
  /** ScaLoRA scaling interval I: steps between rescalings and merges (ignored by lora). */
  interval: z.number().int().min(1).default(10),
  /**
   * ScaLoRA's L: a fixed value, "auto" (keep DEFAULT_KEEP of the adapter per
   * step), or the auto rule with its knobs (keep, lrScaled, split, lrBoost, or the
   * size-based stepScale / factorScale with minFactorToStep; lipschitz.ts).
   */
  lipschitz: z.union([
    z.number().positive(),
    z.literal("auto"),
    z.object({
      stepScale: z.number().positive().optional(),
      keep: z.number().positive().max(1).optional(),
      lrScaled: z.boolean().optional(),
      split: z.enum(MERGE_SPLITS).optional(),
      lrBoost: z.number().min(1).max(MAX_LR_BOOST).optional(),
      factorScale: z.number().positive().optional(),
      minFactorToStep: z.number().positive().optional(),
    }).strict(),
  ]).default("auto"),
  /** The linear layers to adapt. */
  targetModules: z.array(z.enum(TARGET_MODULES)).min(1).default([...TARGET_MODULES]),
  /** Passes over the training examples. */
  epochs: z.number().int().min(1).default(3),
  /** Examples per micro-batch. */
  batchSize: z.number().int().min(1).default(8),
  /** Peak learning rate (AdamW). */
  learningRate: z.number().positive().default(2e-4),
  /** Share of the steps with linear warmup. */
  warmupRatio: z.number().min(0).max(1).default(0),
  /** Decay after warmup, to 0. */
  schedule: z.enum(SCHEDULES).default("linear"),
  /** Global gradient-norm clip; 0 disables. */
  maxGradNorm: z.number().min(0).default(1),
  /** Micro-batches per optimizer step. */
  gradientAccumulation: z.number().int().min(1).default(1),
  /** Longest example in tokens (longer ones are truncated, with a warning). */
  maxLength: z.number().int().min(2).default(512),
  /** Adapter init and data order derive from it. */
  seed: z.number().int().default(0),
  /** Held-out share of the training file when no validation file is given. */
  validationFraction: z.number().min(0).max(0.9).default(0),
  /** AdamW weight decay. */
  weightDecay: z.number().min(0).default(0),
};

/** What to train on, where to keep it, and what to run it on. */
const runFields = {
  /** A local checkpoint directory or a hub id (downloaded into `<dataDir>/hub`). */
  model: z.string().min(1),
  /** Hub cache root. */
  dataDir: z.string().min(1).default("./data"),
  /** JSONL (OpenAI chat or prompt/completion). */
  trainText: z.string(),
  validationText: z.string().optional(),
  checkpointDir: z.string().min(1),
  /** Steps between checkpoints; 0 = only at the end. */
  checkpointEvery: z.number().int().min(0).default(0),
  /** Steps between validation passes (unset: checkpointEvery; 0 = only at the end). */
  evalEvery: z.number().int().min(0).optional(),
  /** Checkpoints kept in checkpointDir, newest first. */
  keepCheckpoints: z.number().int().min(1).default(2),
  /** Continue from the latest checkpoint in checkpointDir, bit-exact (none there: start fresh). */
  resume: z.boolean().default(false),
  device: z.enum(DEVICES).default("cpu"),
  /** Intra-op threads of the training sessions and kernels (unset: every core). */
  threads: z.number().int().min(1).optional(),
};

const withAlpha = <T extends { rank: number; alpha?: number }>(c: T) => ({
  ...c,
  alpha: c.alpha ?? ALPHA_PER_RANK * c.rank,
});

/** How to train; `parse({})` gives the defaults. */
export const TrainingConfigSchema = z.object(trainingFields).strict().transform(withAlpha);
export type TrainingConfig = z.output<typeof TrainingConfigSchema>;

/** Every training default (alpha: the default rank's). */
export const TRAINING_DEFAULTS: TrainingConfig = TrainingConfigSchema.parse({});

/** fineTune's options: the run fields and the training fields. */
export const FineTuneConfigSchema = z.object({ ...runFields, ...trainingFields }).transform(withAlpha);
/** What fineTune accepts: anything with a default may be left out. */
export type FineTuneConfigInput = z.input<typeof FineTuneConfigSchema>;
/** fineTune's options with every default filled in. */
export type FineTuneConfig = z.output<typeof FineTuneConfigSchema>;

/** What determines a run's trajectory (not where it is saved, how often, or on how many threads). */
export const TRAJECTORY_KEYS = Object.keys(trainingFields) as (keyof typeof trainingFields)[];

/** Checks fineTune's options and fills in the defaults. */
export function parseFineTuneOptions(opts: FineTuneConfigInput): FineTuneConfig {
  const r = FineTuneConfigSchema.safeParse(opts);
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
