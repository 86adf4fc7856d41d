/**
 * A fine-tuning job's specification (pure): the API's hyperparameters —
 * OpenAI's three (a number or "auto") plus the ScaLoRA extras — resolved once,
 * at creation, into the concrete values stored with the job; how a stored job
 * maps onto fineTune's options; and the names of its models.
 *
 * "auto" resolves from the training file's example count n (OpenAI's
 * documented heuristics, so clients see the same kind of numbers):
 * - n_epochs: 3, raised so that n x epochs reaches 100 (at most 25 epochs) and
 *   lowered so that it stays under 25 000 (at least 1);
 * - batch_size: about 0.2% of n, between 1 and 256;
 * - learning_rate_multiplier: 1 (times BASE_LEARNING_RATE, a common LoRA rate);
 * - checkpoint_every: the steps of one epoch (a checkpoint per epoch).
 * Resolving at creation makes the stored job self-describing and its run
 * reproducible: the runner never re-derives a value.
 */
import { z } from "zod";
import { GATE_METRICS, type GateMetric, type PromotionGate } from "../registry/types.ts";
import type { Device } from "../runtime/device.ts";
import type { FineTuneOptions } from "../train/fine_tune.ts";
import { ALPHA_PER_RANK, type Method, TRAINING_DEFAULTS } from "../train/fine_tune_config.ts";
import { TARGET_MODULES, type TargetModule } from "../train/lm_training_graph.ts";
import { DEFAULT_SPLIT, type LipschitzRule, MERGE_SPLITS, type MergeSplit } from "../train/lipschitz.ts";
import { DEFAULT_LR_BOOST, MAX_LR_BOOST } from "../train/lr_boost.ts";

/** learning_rate_multiplier x this = the optimizer's peak learning rate (the configuration's default rate). */
export const BASE_LEARNING_RATE = TRAINING_DEFAULTS.learningRate;

/** API `scaling` → fineTune `method`: column-wise ScaLoRA, its scalar variant, or plain LoRA. */
export const SCALING_METHODS = { column: "scalora", scalar: "scalora-scalar", none: "lora" } as const satisfies Record<
  string,
  Method
>;
export type Scaling = keyof typeof SCALING_METHODS;
export const SCALINGS = Object.keys(SCALING_METHODS) as Scaling[];

function scalingOf(method: Method): Scaling {
  return SCALINGS.find((s) => SCALING_METHODS[s] === method)!;
}

/** The lipschitz values the API accepts: a number or "auto" (the auto rule's knobs are not exposed). */
function apiLipschitz(l: typeof TRAINING_DEFAULTS.lipschitz): number | "auto" {
  return typeof l === "object" ? "auto" : l;
}

export const LIMITS = {
  nEpochs: { min: 1, max: 50 },
  batchSize: { min: 1, max: 256 },
  learningRateMultiplier: { max: 1000 },
  rank: { min: 1, max: 256 },
  alpha: { max: 4096 },
  interval: { min: 1, max: 1_000_000 },
  maxLength: { min: 8, max: 32_768 },
  checkpointEvery: { min: 0, max: 1_000_000 },
  lrBoost: { min: 1, max: MAX_LR_BOOST },
} as const;

/** The defaults of the options a request may leave out: the fine-tuning configuration's (fine_tune_config.ts). */
export const DEFAULTS = {
  rank: TRAINING_DEFAULTS.rank,
  /** alpha defaults to this x rank. */
  alphaPerRank: ALPHA_PER_RANK,
  scaling: scalingOf(TRAINING_DEFAULTS.method),
  interval: TRAINING_DEFAULTS.interval,
  lipschitz: apiLipschitz(TRAINING_DEFAULTS.lipschitz),
  mergeSplit: DEFAULT_SPLIT,
  lrBoost: DEFAULT_LR_BOOST,
  targetModules: TRAINING_DEFAULTS.targetModules,
  maxLength: TRAINING_DEFAULTS.maxLength,
};

/** What a request may set (after the HTTP layer's shape checks); absent or null = default / "auto". */
export interface HyperparameterRequest {
  n_epochs?: number | "auto" | null;
  batch_size?: number | "auto" | null;
  learning_rate_multiplier?: number | "auto" | null;
  rank?: number | null;
  alpha?: number | null;
  scaling?: Scaling | null;
  interval?: number | null;
  lipschitz?: number | "auto" | null;
  merge_split?: MergeSplit | null;
  lr_boost?: number | null;
  target_modules?: TargetModule[] | null;
  max_length?: number | null;
  checkpoint_every?: number | "auto" | null;
}

const ResolvedSchema = z.object({
  n_epochs: z.number().int().min(1),
  batch_size: z.number().int().min(1),
  learning_rate_multiplier: z.number().positive(),
  rank: z.number().int().min(1),
  alpha: z.number().positive(),
  scaling: z.enum(SCALINGS as [Scaling, ...Scaling[]]),
  interval: z.number().int().min(1),
  lipschitz: z.union([z.number().positive(), z.literal("auto")]),
  /** A job stored before the field existed takes the default (its checkpoints resume: see trainOptions). */
  merge_split: z.enum(MERGE_SPLITS).default(DEFAULT_SPLIT),
  /**
   * A job stored before the field existed takes the default, as merge_split does: its run's options stay plain
   * "auto", so its checkpoints resume (see trainOptions); from there on it trains with the boost.
   */
  lr_boost: z.number().min(LIMITS.lrBoost.min).max(LIMITS.lrBoost.max).default(DEFAULT_LR_BOOST),
  target_modules: z.array(z.enum(TARGET_MODULES)).min(1),
  max_length: z.number().int().min(2),
  checkpoint_every: z.number().int().min(0),
});

/** The concrete values a job trains with (stored in the job's `hyperparameters` and `method`). */
export type ResolvedHyperparameters = z.infer<typeof ResolvedSchema>;

/** Training examples of a JSONL text = its non-blank lines (what the validator will tokenize). */
export function autoEpochs(examples: number): number {
  const n = Math.max(1, examples);
  if (n * 3 < 100) return Math.min(25, Math.ceil(100 / n));
  if (n * 3 > 25_000) return Math.max(1, Math.floor(25_000 / n));
  return 3;
}

export function autoBatchSize(examples: number): number {
  return Math.min(LIMITS.batchSize.max, Math.max(1, Math.ceil(0.002 * examples)));
}

/** Resolves every "auto" and default for a training set of `examples` examples. */
export function resolveHyperparameters(req: HyperparameterRequest, examples: number): ResolvedHyperparameters {
  const given = <T>(
    v: T | "auto" | null | undefined,
  ): T | null => (v === undefined || v === null || v === "auto" ? null : v);
  const batchSize = given(req.batch_size) ?? autoBatchSize(examples);
  const rank = given(req.rank) ?? DEFAULTS.rank;
  const stepsPerEpoch = Math.max(1, Math.ceil(Math.max(1, examples) / batchSize));
  return {
    n_epochs: given(req.n_epochs) ?? autoEpochs(examples),
    batch_size: batchSize,
    learning_rate_multiplier: given(req.learning_rate_multiplier) ?? 1,
    rank,
    alpha: given(req.alpha) ?? DEFAULTS.alphaPerRank * rank,
    scaling: given(req.scaling) ?? DEFAULTS.scaling,
    interval: given(req.interval) ?? DEFAULTS.interval,
    lipschitz: req.lipschitz ?? DEFAULTS.lipschitz,
    merge_split: req.merge_split ?? DEFAULTS.mergeSplit,
    lr_boost: req.lr_boost ?? DEFAULTS.lrBoost,
    target_modules: [...new Set(given(req.target_modules) ?? DEFAULTS.targetModules)],
    max_length: given(req.max_length) ?? DEFAULTS.maxLength,
    checkpoint_every: given(req.checkpoint_every) ?? stepsPerEpoch,
  };
}

/** An eval-gated promotion as requested (`promotion` of the create request); absent fields take the defaults. */
export interface PromotionRequest {
  alias: string;
  metric?: GateMetric | null;
  must_beat?: "current" | number | null;
  min_improvement?: number | null;
  /** A fine-tune file to evaluate on instead of the job's validation file. */
  eval_file?: string | null;
}

const PromotionSchema = z.object({
  alias: z.string(),
  metric: z.enum(GATE_METRICS),
  must_beat: z.union([z.literal("current"), z.number()]),
  min_improvement: z.number().min(0),
  eval_file: z.string().nullable(),
});

/** A promotion with every default resolved (stored with the job, shown in the job object). */
export type StoredPromotion = z.infer<typeof PromotionSchema>;

export const PROMOTION_DEFAULTS = { metric: "full_valid_loss", must_beat: "current", min_improvement: 0 } as const;

export function resolvePromotion(p: PromotionRequest): StoredPromotion {
  return {
    alias: p.alias,
    metric: p.metric ?? PROMOTION_DEFAULTS.metric,
    must_beat: p.must_beat ?? PROMOTION_DEFAULTS.must_beat,
    min_improvement: p.min_improvement ?? PROMOTION_DEFAULTS.min_improvement,
    eval_file: p.eval_file ?? null,
  };
}

/** The registry's gate of a stored promotion. */
export function promotionGate(p: StoredPromotion): PromotionGate {
  return { metric: p.metric, mustBeat: p.must_beat, minImprovement: p.min_improvement };
}

/** The job row's `method` column: OpenAI's method object plus our alias request. */
export type StoredMethod = {
  type: "supervised";
  supervised: { hyperparameters: ResolvedHyperparameters };
  /** On success, point this alias at the new version (null: leave aliases alone). */
  promote_to_alias: string | null;
  /** With it, only if the new version wins its evaluation gate (`promote_to_alias` is then its alias). */
  promotion: StoredPromotion | null;
};

export function storedMethod(
  hp: ResolvedHyperparameters,
  promoteToAlias: string | null,
  promotion: StoredPromotion | null = null,
): StoredMethod {
  return {
    type: "supervised",
    supervised: { hyperparameters: hp },
    promote_to_alias: promotion?.alias ?? promoteToAlias,
    promotion,
  };
}

const StoredMethodSchema = z.object({
  type: z.literal("supervised"),
  supervised: z.object({ hyperparameters: ResolvedSchema }),
  promote_to_alias: z.string().nullable().default(null),
  promotion: PromotionSchema.nullable().default(null),
});

/** A job row's stored spec is not what this build writes (a bug or a foreign row). */
export class JobSpecError extends Error {
  override name = "JobSpecError";
}

/** Reads a stored job's spec back (the runner's view), checking it is one this build wrote. */
export function parseStoredMethod(method: unknown): StoredMethod {
  const r = StoredMethodSchema.safeParse(method);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw new JobSpecError(
      `the job's stored method is invalid at ${issue.path.join(".") || "(root)"}: ${issue.message}`,
    );
  }
  return r.data;
}

/** `ft:<base>:<suffix>:<job-id>` (an empty suffix segment when none was given, as OpenAI does without an org). */
export function fineTunedModelName(baseModel: string, suffix: string | null, jobId: string): string {
  return `ft:${baseModel}:${suffix ?? ""}:${jobId}`;
}

export function checkpointModelName(fineTunedModel: string, step: number): string {
  return `${fineTunedModel}:ckpt-step-${step}`;
}

/** Where a run lives and what it runs on: everything fineTune needs besides the spec. */
export interface RunPlacement {
  /** What fineTune opens: a local model directory or a hub id (cached under `<dataDir>/hub`). */
  model: string;
  dataDir: string;
  trainText: string;
  validationText?: string;
  checkpointDir: string;
  seed: number;
  device?: Device;
  threads?: number;
}

export type TrainOptions = Omit<FineTuneOptions, "onEvent" | "signal">;

/**
 * The auto rule's knobs that differ from the defaults. The split and the lr boost apply to the auto rule only (a
 * fixed L is the paper's mode: the solve's α, β at the given lr). With every default it stays plain "auto", so the
 * run's fingerprint (and a checkpoint's resume) does not change.
 */
function autoRule(hp: ResolvedHyperparameters): "auto" | Omit<Extract<LipschitzRule, { kind: "auto" }>, "kind"> {
  const rule = {
    ...(hp.merge_split !== DEFAULT_SPLIT ? { split: hp.merge_split } : {}),
    ...(hp.lr_boost !== DEFAULT_LR_BOOST ? { lrBoost: hp.lr_boost } : {}),
  };
  return Object.keys(rule).length ? rule : "auto";
}

/** fineTune's options for a stored job. `resume` is always on: a fresh run has no checkpoint to resume. */
export function trainOptions(hp: ResolvedHyperparameters, at: RunPlacement): TrainOptions {
  return {
    model: at.model,
    dataDir: at.dataDir,
    trainText: at.trainText,
    ...(at.validationText !== undefined ? { validationText: at.validationText } : {}),
    method: SCALING_METHODS[hp.scaling],
    rank: hp.rank,
    alpha: hp.alpha,
    interval: hp.interval,
    lipschitz: hp.lipschitz === "auto" ? autoRule(hp) : hp.lipschitz,
    targetModules: [...hp.target_modules],
    epochs: hp.n_epochs,
    batchSize: hp.batch_size,
    learningRate: hp.learning_rate_multiplier * BASE_LEARNING_RATE,
    maxLength: hp.max_length,
    seed: at.seed,
    checkpointDir: at.checkpointDir,
    checkpointEvery: hp.checkpoint_every,
    resume: true,
    ...(at.device !== undefined ? { device: at.device } : {}),
    ...(at.threads !== undefined ? { threads: at.threads } : {}),
  };
}

/** Counts the non-blank lines of a UTF-8 stream without holding it in memory. */
export async function countJsonlLines(stream: ReadableStream<Uint8Array>): Promise<number> {
  let count = 0, blank = true;
  for await (const chunk of stream) {
    for (const b of chunk) {
      if (b === 0x0a) {
        if (!blank) count++;
        blank = true;
      } else if (b !== 0x20 && b !== 0x09 && b !== 0x0d) {
        blank = false;
      }
    }
  }
  return blank ? count : count + 1;
}
