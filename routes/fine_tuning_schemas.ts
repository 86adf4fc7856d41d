/**
 * Schemas of /v1/fine_tuning (OpenAI shapes plus the ScaLoRA options) and the
 * renderers from store records to API objects. Request objects are strict: a
 * misspelt hyperparameter is a 400 naming it, not a silently ignored option.
 */
import { ALIAS_NAME_PATTERN, ALIAS_NAME_RULE, RESERVED_ALIAS_PREFIX } from "../src/registry/hot_swap.ts";
import { z } from "@hono/zod-openapi";
import type { CheckpointRecord } from "../src/store/checkpoint_queries.ts";
import type { EventRecord } from "../src/store/event_queries.ts";
import type { JobRecord } from "../src/store/job_queries.ts";
import { JOB_STATUSES } from "../src/store/schema.ts";
import {
  BASE_LEARNING_RATE,
  DEFAULTS,
  LIMITS,
  parseStoredMethod,
  PROMOTION_DEFAULTS,
  type Scaling,
  SCALINGS,
} from "../src/jobs/job_spec.ts";
import { GATE_METRICS } from "../src/registry/types.ts";
import { TARGET_MODULES } from "../src/train/lm_training_graph.ts";
import { MERGE_SPLITS } from "../src/train/lipschitz.ts";

const int = (min: number, max: number) =>
  z.number({ error: `must be an integer between ${min} and ${max}` }).int({
    error: `must be an integer between ${min} and ${max}`,
  }).min(min, { error: `must be at least ${min}` }).max(max, { error: `must be at most ${max}` });

const positive = (max: number) =>
  z.number({ error: `must be a number greater than 0 and at most ${max}` })
    .gt(0, { error: "must be greater than 0" }).max(max, { error: `must be at most ${max}` });

const autoOr = <T extends z.ZodType>(schema: T, what: string) =>
  z.union([z.literal("auto"), schema], { error: `must be "auto" or ${what}` }).nullish();

export const HyperparametersSchema = z.strictObject({
  n_epochs: autoOr(int(LIMITS.nEpochs.min, LIMITS.nEpochs.max), "an integer between 1 and 50").openapi({
    description: "Passes over the training file. `auto`: 3, raised so that examples x epochs reaches 100 " +
      "(at most 25) and lowered to keep it under 25 000 (at least 1).",
  }),
  batch_size: autoOr(int(LIMITS.batchSize.min, LIMITS.batchSize.max), "an integer between 1 and 256").openapi({
    description: "Examples per optimizer step. `auto`: about 0.2% of the training examples, between 1 and 256.",
  }),
  learning_rate_multiplier: autoOr(positive(LIMITS.learningRateMultiplier.max), "a number in (0, 1000]").openapi({
    description: `Peak learning rate = multiplier x ${BASE_LEARNING_RATE} (linear decay). \`auto\`: 1.`,
  }),
  rank: int(LIMITS.rank.min, LIMITS.rank.max).nullish().openapi({
    description: `ScaLoRA/LoRA adapter rank r. Default ${DEFAULTS.rank}.`,
  }),
  alpha: positive(LIMITS.alpha.max).nullish().openapi({
    description: "Adapter scale numerator (s = alpha / rank). Default 2 x rank.",
  }),
  scaling: z.enum(SCALINGS as [Scaling, ...Scaling[]], { error: `must be one of ${SCALINGS.join(", ")}` })
    .nullish().openapi({
      description: "ScaLoRA rescaling: `column` (column-wise, the default), `scalar` (one factor per layer), " +
        "or `none` (plain LoRA).",
    }),
  interval: int(LIMITS.interval.min, LIMITS.interval.max).nullish().openapi({
    description: `Steps between ScaLoRA merges/rescalings (ignored with scaling none). Default ${DEFAULTS.interval}.`,
  }),
  lipschitz: autoOr(positive(1e12), "a positive number").openapi({
    description: "ScaLoRA's L: a fixed value, or `auto` (default: derived from the factors each rescaling).",
  }),
  merge_split: z.enum(MERGE_SPLITS, { error: `must be one of ${MERGE_SPLITS.join(", ")}` }).nullish().openapi({
    description: "With `lipschitz: auto`, where each rescaling takes a column's merge from: `larger` (the default: " +
      "only the side with the smaller entries shrinks, so Adam's steps keep LoRA's size), `balanced` (both sides " +
      "alike) or `solve` (the paper's α, β; smaller steps, for a learning rate at the edge of stability).",
  }),
  lr_boost: z.number({ error: `must be a number between ${LIMITS.lrBoost.min} and ${LIMITS.lrBoost.max}` })
    .min(LIMITS.lrBoost.min, { error: `must be at least ${LIMITS.lrBoost.min}` })
    .max(LIMITS.lrBoost.max, { error: `must be at most ${LIMITS.lrBoost.max}` }).nullish().openapi({
      description: "With `lipschitz: auto`, the cap of ScaLoRA's learning-rate boost: the adapter is stepped at " +
        "up to this many times the scheduled rate while the training loss keeps falling (every 10 steps it compares " +
        "the last 10 steps' mean loss with that of 100 steps before); off where one step at the learning rate moves " +
        `the adapter's entries by more than a tenth of their init size. Default ${DEFAULTS.lrBoost}; 1 turns it off.`,
    }),
  target_modules: z.array(z.enum(TARGET_MODULES, { error: `must be one of ${TARGET_MODULES.join(", ")}` }))
    .min(1, { error: "must name at least one module" }).nullish().openapi({
      description: "Linear layers to adapt. Default: all of q, k, v, o, gate, up, down projections.",
    }),
  max_length: int(LIMITS.maxLength.min, LIMITS.maxLength.max).nullish().openapi({
    description: `Longest example in tokens; longer ones are truncated. Default ${DEFAULTS.maxLength}.`,
  }),
  checkpoint_every: autoOr(int(LIMITS.checkpointEvery.min, LIMITS.checkpointEvery.max), "an integer >= 0")
    .openapi({
      description: "Steps between checkpoints (each becomes a `<model>:ckpt-step-N` version); 0 = only the final " +
        "one. `auto`: once per epoch.",
    }),
}).openapi("FineTuningHyperparameters", {
  description: "OpenAI's three hyperparameters plus the ScaLoRA options. Every value is resolved when the job is " +
    "created; the job object shows the resolved values.",
});

const SuffixSchema = z.string()
  .max(64, { error: "must be at most 64 characters" })
  .regex(/^[a-z0-9-]+$/, { error: "may contain only lower-case letters, digits and '-'" })
  .nullish()
  .openapi({ description: "Up to 64 characters of a-z, 0-9 and '-', added to the fine-tuned model's name." });

const MetadataSchema = z.record(
  z.string().max(64, { error: "keys must be at most 64 characters" }),
  z.string().max(512, { error: "values must be at most 512 characters" }),
).refine((m) => Object.keys(m).length <= 16, { error: "at most 16 keys" }).nullish();

const AliasSchema = z.string()
  .refine((name) => !name.startsWith(RESERVED_ALIAS_PREFIX), {
    error: `'${RESERVED_ALIAS_PREFIX}' starts version ids and is reserved; choose another alias name`,
  })
  .regex(ALIAS_NAME_PATTERN, { error: ALIAS_NAME_RULE })
  .nullish()
  .openapi({
    description: "On success, point this model alias at the new fine-tuned model (ScaLoRA extension). " +
      "The rules of PUT /v1/aliases/{name}: 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit.",
  });

/** The gate of an eval-gated switch (job `promotion`, and `evaluate` of PUT /v1/aliases/{name}). */
export const gateFields = {
  metric: z.enum(GATE_METRICS, { error: `must be one of ${GATE_METRICS.join(", ")}` }).nullish().openapi({
    description: "What both models are scored on: the validation loss (lower wins) or the mean token accuracy " +
      `(higher wins) over the evaluation set, as a job reports them. Default ${PROMOTION_DEFAULTS.metric}.`,
  }),
  must_beat: z.union([z.literal("current"), z.number({ error: 'must be "current" or a number' })], {
    error: 'must be "current" or a number',
  }).nullish().openapi({
    description: "`current` (default): the alias's current target, scored on the same set (an alias without " +
      "a target takes any candidate); a number: that value of the metric.",
  }),
  min_improvement: z.number({ error: "must be a number >= 0" }).min(0, { error: "must be at least 0" }).max(1e6)
    .nullish().openapi({ description: "How much better the candidate must be, in the metric's units. Default 0." }),
};

const PromotionSchema = z.strictObject({
  alias: AliasSchema.unwrap().unwrap().openapi({ description: "The alias to switch if the new model wins." }),
  ...gateFields,
  eval_file: z.string().min(1).nullish().openapi({
    description: "A fine-tune file to evaluate both models on. Default: the job's validation_file (one is then " +
      "required).",
  }),
}).openapi("FineTuningPromotion", {
  description: "Eval-gated promotion (ScaLoRA extension): when the job succeeds, its model and the alias's " +
    "current target are scored on the same evaluation set (the validation loss code of training, one " +
    "tokenization); the alias switches only if the new model wins. The decision with both scores is a job " +
    "event (`data.promotion`) and a row of the alias history (`evaluation`).",
});

export const CreateJobSchema = z.strictObject({
  model: z.string().min(1).openapi({ description: "The base model to fine-tune (a model this server serves)." }),
  training_file: z.string().min(1).openapi({ example: "file-abc123", description: "A file with purpose fine-tune." }),
  validation_file: z.string().min(1).nullish(),
  suffix: SuffixSchema,
  seed: int(0, 2_147_483_647).nullish().openapi({ description: "Default: random (shown in the job)." }),
  method: z.strictObject({
    type: z.enum(["supervised", "dpo", "reinforcement"]).openapi({ description: "Only `supervised` is supported." }),
    supervised: z.strictObject({ hyperparameters: HyperparametersSchema.nullish() }).nullish(),
    dpo: z.unknown().optional(),
    reinforcement: z.unknown().optional(),
  }).nullish(),
  hyperparameters: HyperparametersSchema.nullish().openapi({
    description: "Deprecated by OpenAI (use `method`); accepted when `method` has no hyperparameters.",
  }),
  metadata: MetadataSchema,
  integrations: z.array(z.unknown()).nullish().openapi({ description: "Not supported (must be empty)." }),
  promote_to_alias: AliasSchema,
  promotion: PromotionSchema.nullish(),
}).openapi("CreateFineTuningJobRequest");

// ---------- responses ----------

const ResolvedHyperparametersSchema = z.object({
  n_epochs: z.number().int(),
  batch_size: z.number().int(),
  learning_rate_multiplier: z.number(),
  rank: z.number().int(),
  alpha: z.number(),
  scaling: z.enum(SCALINGS as [Scaling, ...Scaling[]]),
  interval: z.number().int(),
  lipschitz: z.union([z.number(), z.literal("auto")]),
  merge_split: z.enum(MERGE_SPLITS),
  lr_boost: z.number(),
  target_modules: z.array(z.string()),
  max_length: z.number().int(),
  checkpoint_every: z.number().int(),
}).openapi("FineTuningResolvedHyperparameters");

const JobErrorSchema = z.object({ code: z.string(), message: z.string(), param: z.string().nullable() });

export const FineTuningJobSchema = z.object({
  id: z.string().openapi({ example: "ftjob-abc123" }),
  object: z.literal("fine_tuning.job"),
  created_at: z.number().int(),
  finished_at: z.number().int().nullable(),
  estimated_finish: z.number().int().nullable(),
  model: z.string(),
  fine_tuned_model: z.string().nullable().openapi({ description: "`ft:<base>:<suffix>:<job-id>` once succeeded." }),
  organization_id: z.string(),
  result_files: z.array(z.string()),
  status: z.enum(JOB_STATUSES).openapi({ description: "OpenAI's statuses plus `paused`." }),
  training_file: z.string(),
  validation_file: z.string().nullable(),
  hyperparameters: ResolvedHyperparametersSchema,
  method: z.object({
    type: z.literal("supervised"),
    supervised: z.object({ hyperparameters: ResolvedHyperparametersSchema }),
  }),
  trained_tokens: z.number().int().nullable(),
  error: JobErrorSchema.nullable().openapi({
    description: "Why the job failed: for bad data the first bad line's code (e.g. `invalid_json`, " +
      "`missing_content`), a message naming the line, and `param` = the file parameter.",
  }),
  seed: z.number().int(),
  integrations: z.array(z.unknown()).nullable(),
  metadata: z.record(z.string(), z.string()).nullable(),
  user_provided_suffix: z.string().nullable(),
  promote_to_alias: z.string().nullable(),
  promotion: z.object({
    alias: z.string(),
    metric: z.enum(GATE_METRICS),
    must_beat: z.union([z.literal("current"), z.number()]),
    min_improvement: z.number(),
    eval_file: z.string().nullable(),
  }).nullable().openapi({ description: "The eval-gated promotion with its defaults resolved (null: none)." }),
}).openapi("FineTuningJob");

export const FineTuningEventSchema = z.object({
  id: z.string(),
  object: z.literal("fine_tuning.job.event"),
  created_at: z.number().int(),
  level: z.enum(["info", "warn", "error"]),
  message: z.string(),
  type: z.enum(["message", "metrics"]),
  data: z.record(z.string(), z.unknown()).nullable().openapi({
    description: "metrics: step, total_steps, epoch, train_loss, train_mean_token_accuracy, valid_loss, " +
      "valid_mean_token_accuracy, tokens_per_second, learning_rate, scaling {columnwise_share, mean_alpha_beta, " +
      "update_rank: mean per layer of the rank the accumulated update can have, merged columns + r}. " +
      "Status changes: {status}.",
  }),
}).openapi("FineTuningJobEvent");

export const FineTuningCheckpointSchema = z.object({
  id: z.string(),
  object: z.literal("fine_tuning.job.checkpoint"),
  created_at: z.number().int(),
  fine_tuned_model_checkpoint: z.string().openapi({ description: "`<fine_tuned_model>:ckpt-step-N`" }),
  step_number: z.number().int(),
  metrics: z.record(z.string(), z.unknown()),
  fine_tuning_job_id: z.string(),
}).openapi("FineTuningJobCheckpoint");

export const listOf = <T extends z.ZodType>(item: T, name: string) =>
  z.object({
    object: z.literal("list"),
    data: z.array(item),
    first_id: z.string().nullable(),
    last_id: z.string().nullable(),
    has_more: z.boolean(),
  }).openapi(name);

// ---------- renderers ----------

const unix = (d: Date | null) => (d === null ? null : Math.floor(d.getTime() / 1000));

export function jobObject(job: JobRecord): z.infer<typeof FineTuningJobSchema> {
  const method = parseStoredMethod(job.method);
  const hp = method.supervised.hyperparameters;
  return {
    id: job.id,
    object: "fine_tuning.job",
    created_at: unix(job.createdAt)!,
    finished_at: unix(job.finishedAt),
    estimated_finish: job.status === "running" ? unix(job.estimatedFinish) : null,
    model: job.model,
    fine_tuned_model: job.fineTunedModel,
    organization_id: "org-scalora",
    result_files: job.resultFiles,
    status: job.status,
    training_file: job.trainingFile,
    validation_file: job.validationFile,
    hyperparameters: hp,
    method: { type: "supervised", supervised: { hyperparameters: hp } },
    trained_tokens: job.trainedTokens,
    error: job.error,
    seed: job.seed,
    integrations: null,
    metadata: job.metadata,
    user_provided_suffix: job.suffix,
    promote_to_alias: method.promote_to_alias,
    promotion: method.promotion,
  };
}

export function eventObject(e: EventRecord): z.infer<typeof FineTuningEventSchema> {
  return {
    id: e.id,
    object: "fine_tuning.job.event",
    created_at: unix(e.createdAt)!,
    level: e.level,
    message: e.message,
    type: e.type,
    data: e.data,
  };
}

export function checkpointObject(c: CheckpointRecord): z.infer<typeof FineTuningCheckpointSchema> {
  return {
    id: c.id,
    object: "fine_tuning.job.checkpoint",
    created_at: unix(c.createdAt)!,
    fine_tuned_model_checkpoint: c.fineTunedModelCheckpoint,
    step_number: c.step,
    metrics: c.metrics,
    fine_tuning_job_id: c.jobId,
  };
}

export function listObject<T extends { id: string }>(data: T[], hasMore: boolean) {
  return {
    object: "list" as const,
    data,
    first_id: data[0]?.id ?? null,
    last_id: data.at(-1)?.id ?? null,
    has_more: hasMore,
  };
}
