/**
 * The fine-tuning pipeline (CLI `deno task train` and the job runner):
 * open the model and tokenizer → validate + tokenize the JSONL files (bad
 * lines: DatasetInvalidError, before any session is opened) → split →
 * LM training model with recorded merges → Trainer steps with metrics events,
 * periodic validation and checkpoints → deltas (W_final − W_base per layer).
 *
 * Checkpoints (`<checkpointDir>/step-NNNNNNNN/`, fine_tune_checkpoints.ts)
 * hold the full trainer state including the merge log, so `resume: true`
 * continues bit-exactly: the same loss curve and the same deltas as an
 * uninterrupted run. A checkpoint is written every `checkpointEvery` steps and
 * at the end, each announced by a "checkpoint" event; the newest
 * `keepCheckpoints` are kept. An aborted `signal` stops between steps, writes
 * a checkpoint (no event: it is a pause point, not a published checkpoint)
 * and throws FineTuneAborted.
 */
import { z } from "zod";
import { type Device, DEVICES } from "../runtime/device.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { loadTokenizer } from "../model/tokenizer.ts";
import type { LayerDelta } from "../registry/types.ts";
import { type LmBatch, LmBatchSource, makeBatches } from "./batching.ts";
import { type DatasetIssue, splitTrainValidation, type TokenizedExample, validateJsonl } from "./dataset.ts";
import {
  FineTuneCheckpointError,
  fingerprint,
  listCheckpoints,
  pruneCheckpoints,
  readFineTuneState,
  stepDir,
  writeFineTuneState,
} from "./fine_tune_checkpoints.ts";
import { LmTrainingModel, TARGET_MODULES } from "./lm_training_graph.ts";
import type { LipschitzRule } from "./lipschitz.ts";
import { deltasOf, RecordingModel } from "./merge_log.ts";
import { loadTrainingCheckpoint, saveTrainingCheckpoint } from "./train_checkpoint.ts";
import { type StepReport, Trainer, type TrainerConfig } from "./trainer.ts";
import type { BatchSource, DataPosition } from "./types.ts";

export { writeMergedModel } from "./merged_model.ts";
export type { MergedModelOptions } from "./merged_model.ts";

export interface FineTuneOptions {
  /** Local checkpoint dir (or hub id via openCheckpoint). */
  model: string;
  /** Hub cache root (`<dataDir>/hub`); default "./data". */
  dataDir?: string;
  /** JSONL (OpenAI chat or prompt/completion). */
  trainText: string;
  validationText?: string;
  method: "lora" | "scalora" | "scalora-scalar";
  rank: number;
  alpha: number;
  rsLora?: boolean;
  /** ScaLoRA scaling interval I (ignored by lora). */
  interval: number;
  /**
   * ScaLoRA's L: a fixed value, "auto" (default), or the auto rule with its
   * knobs (target factor RMS relative to B's init RMS, and its floor in
   * learning rates; lipschitz.ts).
   */
  lipschitz?: number | "auto" | { factorScale?: number; minFactorToStep?: number };
  /** Default: every linear layer (q, k, v, o, gate, up, down). */
  targetModules?: string[];
  epochs: number;
  /** Examples per micro-batch. */
  batchSize: number;
  learningRate: number;
  /** Share of the steps with linear warmup (default 0). */
  warmupRatio?: number;
  /** Decay after warmup (default "linear", to 0). */
  schedule?: "linear" | "cosine" | "constant";
  /** Global gradient-norm clip (default 1; 0 disables). */
  maxGradNorm?: number;
  /** Micro-batches per optimizer step (default 1). */
  gradientAccumulation?: number;
  /** Longest example in tokens (longer ones are truncated, with a warning). */
  maxLength: number;
  seed: number;
  /** Held-out share of the training file when no validation file is given (default 0). */
  validationFraction?: number;
  checkpointDir: string;
  /** Steps between checkpoints; 0 = only at the end. */
  checkpointEvery: number;
  /** Continue from the latest checkpoint in checkpointDir, bit-exact (none there: start fresh). */
  resume?: boolean;
  onEvent?: (e: FineTuneEvent) => void | Promise<void>;
  /** Stop between steps (cancel/pause): writes a checkpoint first when possible, then throws FineTuneAborted. */
  signal?: AbortSignal;
  device?: Device;
  /** Intra-op threads of the training sessions and kernels (default: all cores). */
  threads?: number;
  /** AdamW weight decay (default 0). */
  weightDecay?: number;
  /** Steps between validation passes (default checkpointEvery; 0 = only at the end). */
  evalEvery?: number;
  /** Checkpoints kept in checkpointDir, newest first (default 2). */
  keepCheckpoints?: number;
}

export type FineTuneEvent =
  | { type: "message"; level: "info" | "warn" | "error"; message: string }
  | {
    type: "metrics";
    step: number;
    totalSteps: number;
    /** 1-based epoch the step's last batch came from. */
    epoch: number;
    trainLoss: number;
    tokenAccuracy: number;
    validLoss?: number;
    validTokenAccuracy?: number;
    tokensPerSecond: number;
    learningRate: number;
    /** Present on steps that rescaled (ScaLoRA). */
    scaling?: { columnwiseShare: number; meanAlphaBeta: number };
  }
  | {
    type: "checkpoint";
    step: number;
    dir: string;
    metrics: Record<string, unknown>;
    /** The deltas as of this checkpoint (callable any time later). */
    deltas: () => Promise<LayerDelta[]>;
  };

export interface FineTuneResult {
  steps: number;
  /** Non-pad tokens fed to training steps (resumed runs include the steps before the checkpoint). */
  trainedTokens: number;
  finalTrainLoss: number;
  finalValidLoss?: number;
  deltas: LayerDelta[];
}

/** Validation failed before training; `issues` lists every bad line of `file`. */
export class DatasetInvalidError extends Error {
  override name = "DatasetInvalidError";
  constructor(readonly issues: DatasetIssue[], readonly file: "training_file" | "validation_file") {
    super(`${file}: ${issues.length} problem${issues.length === 1 ? "" : "s"} (first: line ${issues[0]?.line})`);
  }
}

export class FineTuneOptionsError extends Error {
  override name = "FineTuneOptionsError";
}

/** The signal fired; `checkpoint` is where the state was saved (null if nothing new to save or saving failed). */
export class FineTuneAborted extends Error {
  override name = "FineTuneAborted";
  constructor(readonly step: number, readonly checkpoint: string | null, readonly reason: unknown) {
    super(`fine-tuning stopped at step ${step}${checkpoint ? ` (checkpoint ${checkpoint})` : ""}`);
  }
}

export { FineTuneCheckpointError };

const OptionsSchema = z.object({
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
type Parsed = z.output<typeof OptionsSchema>;

function parseOptions(opts: FineTuneOptions): Parsed {
  const { onEvent: _e, signal: _s, ...rest } = opts;
  const r = OptionsSchema.safeParse(rest);
  if (!r.success) {
    const first = r.error.issues[0];
    throw new FineTuneOptionsError(`invalid fine-tuning option ${first.path.join(".")}: ${first.message}`);
  }
  return r.data;
}

/** The trainer configuration a run's options imply. */
function trainerConfig(o: Parsed, totalSteps: number): TrainerConfig {
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

/** Counts the tokens of the batches the trainer takes (tokens/s, trained tokens). */
class CountingSource implements BatchSource<LmBatch> {
  tokens = 0;
  constructor(readonly inner: LmBatchSource) {}
  next(): LmBatch {
    const b = this.inner.next();
    this.tokens += b.tokens;
    return b;
  }
  position(): DataPosition {
    return this.inner.position();
  }
  seek(p: DataPosition): void {
    this.inner.seek(p);
  }
}

export async function fineTune(opts: FineTuneOptions): Promise<FineTuneResult> {
  const o = parseOptions(opts);
  const emit = async (e: FineTuneEvent) => {
    await opts.onEvent?.(e);
  };
  const info = (message: string) => emit({ type: "message", level: "info", message });
  const threads = o.threads ?? navigator.hardwareConcurrency;

  const ckpt = await openCheckpoint(o.model, { cacheDir: `${o.dataDir}/hub` });
  try {
    const tokenizer = await loadTokenizer(ckpt.dir);
    const validate = (text: string, file: "training_file" | "validation_file") => {
      const r = validateJsonl(text, { tokenizer, maxLength: o.maxLength });
      if (r.errors.length) throw new DatasetInvalidError(r.errors, file);
      return r;
    };
    const trainSet = validate(o.trainText, "training_file");
    const validSet = o.validationText === undefined ? undefined : validate(o.validationText, "validation_file");
    const { train, validation } = splitTrainValidation<TokenizedExample>(trainSet.examples, {
      seed: o.seed,
      validationFraction: o.validationFraction,
      validation: validSet?.examples,
    });
    const truncated = train.filter((e) => e.truncated).length + validation.filter((e) => e.truncated).length;
    if (truncated) {
      await emit({
        type: "message",
        level: "warn",
        message: `${truncated} example(s) longer than ${o.maxLength} tokens were truncated`,
      });
    }

    const padTokenId = ckpt.config.eosTokenIds[0] ?? 0;
    const collateOpts = { padTokenId, padToMultipleOf: 8 };
    const source = new CountingSource(new LmBatchSource(train, { batchSize: o.batchSize, seed: o.seed }, collateOpts));
    const batchesPerEpoch = source.inner.batchesIn(0);
    const totalSteps = Math.max(1, Math.floor(o.epochs * batchesPerEpoch / o.gradientAccumulation));
    // Validation batches sorted by length (one bucket), so they pad little.
    const validBatches = validation.length
      ? makeBatches(validation, { batchSize: o.batchSize, seed: o.seed, bucketBatches: 1 << 20 }, collateOpts)
      : [];
    await info(
      `data: ${train.length} training examples (${sum(train, (e) => e.trainableTokens)} trainable tokens), ` +
        `${validation.length} validation; ${totalSteps} steps (${o.epochs} epoch(s) x ${batchesPerEpoch} batches` +
        `${o.gradientAccumulation > 1 ? ` / ${o.gradientAccumulation} accumulated` : ""})`,
    );

    // What determines the trajectory (not where it is saved, how often, or on how many threads).
    const runId = await fingerprint({
      config: ckpt.rawConfig,
      train: await fingerprint(o.trainText),
      validation: o.validationText === undefined ? null : await fingerprint(o.validationText),
      ...pick(o, TRAJECTORY_KEYS),
    });

    const inner = await LmTrainingModel.create(ckpt, {
      rank: o.rank,
      alpha: o.alpha,
      rsLora: o.rsLora,
      targetModules: o.targetModules,
    }, { device: o.device, threads });
    const model = new RecordingModel(inner, { device: o.device, threads });
    let trainer: Trainer<LmBatch>;
    try {
      trainer = new Trainer(model, source, trainerConfig(o, totalSteps), { device: o.device, threads });
    } catch (e) {
      await model.release();
      throw e;
    }
    try {
      await info(
        `model: ${ckpt.config.architecture}, ${ckpt.config.numLayers} layers; ${o.method} r=${o.rank} ` +
          `alpha=${o.alpha} on ${model.adapters.length} linear layers` +
          (o.method === "lora" ? "" : `, interval ${o.interval}, L ${JSON.stringify(o.lipschitz)}`),
      );
      let trainedTokens = 0, lastLoss: number | null = null, lastSaved = -1;
      if (o.resume) {
        const latest = (await listCheckpoints(o.checkpointDir)).at(-1);
        if (latest) {
          const state = await readFineTuneState(latest.dir);
          if (state.fingerprint !== runId) {
            throw new FineTuneCheckpointError(
              `${latest.dir} belongs to another run (different data, model or hyper-parameters): cannot resume`,
            );
          }
          await loadTrainingCheckpoint(trainer, latest.dir);
          trainedTokens = state.trainedTokens;
          lastLoss = state.lastTrainLoss;
          lastSaved = state.step;
          await info(`resumed from step ${state.step} (${latest.dir})`);
        } else {
          await info(`no checkpoint in ${o.checkpointDir}: starting from scratch`);
        }
      }

      const evalEvery = o.evalEvery ?? o.checkpointEvery;
      const evaluate = async () => {
        if (!validBatches.length) return undefined;
        const r = await trainer.evaluate(validBatches);
        return { loss: r.loss, accuracy: r.count ? (r.correct ?? 0) / r.count : 0 };
      };
      const save = async (metrics: Record<string, unknown>): Promise<string> => {
        const dir = stepDir(o.checkpointDir, trainer.step);
        await Deno.mkdir(o.checkpointDir, { recursive: true });
        await saveTrainingCheckpoint(trainer, dir);
        await writeFineTuneState(dir, {
          fingerprint: runId,
          step: trainer.step,
          totalSteps,
          trainedTokens,
          lastTrainLoss: lastLoss,
          metrics,
        });
        lastSaved = trainer.step;
        await pruneCheckpoints(o.checkpointDir, o.keepCheckpoints);
        return dir;
      };

      // Pause/cancel: save what is not saved yet, then report where.
      const abort = async (reason: unknown): Promise<FineTuneAborted> => {
        let dir: string | null = null;
        if (trainer.step > lastSaved && trainer.step > 0) {
          try {
            dir = await save({ step: trainer.step, train_loss: lastLoss, trained_tokens: trainedTokens });
          } catch (e) {
            await emit({
              type: "message",
              level: "error",
              message: `could not write a checkpoint at step ${trainer.step}: ${e instanceof Error ? e.message : e}`,
            });
          }
        } else if (trainer.step > 0) {
          dir = stepDir(o.checkpointDir, trainer.step);
        }
        return new FineTuneAborted(trainer.step, dir, reason);
      };

      let finalValid: { loss: number; accuracy: number } | undefined;
      while (trainer.step < totalSteps) {
        if (opts.signal?.aborted) throw await abort(opts.signal.reason);
        const t0 = performance.now(), tokens0 = source.tokens;
        const rep: StepReport = await trainer.trainStep();
        const seconds = (performance.now() - t0) / 1000;
        trainedTokens += source.tokens - tokens0;
        lastLoss = rep.loss;
        const step = trainer.step, last = step === totalSteps;
        const valid = last || (evalEvery > 0 && step % evalEvery === 0) ? await evaluate() : undefined;
        if (last) finalValid = valid;
        const accuracy = rep.count ? (rep.correct ?? 0) / rep.count : 0;
        await emit({
          type: "metrics",
          step,
          totalSteps,
          epoch: source.position().epoch + 1,
          trainLoss: rep.loss,
          tokenAccuracy: accuracy,
          ...(valid ? { validLoss: valid.loss, validTokenAccuracy: valid.accuracy } : {}),
          tokensPerSecond: (source.tokens - tokens0) / seconds,
          learningRate: rep.lr,
          ...(rep.scaling && rep.scaling.scaled > 0
            ? { scaling: { columnwiseShare: rep.scaling.columnwiseShare, meanAlphaBeta: rep.scaling.meanAlphaBeta } }
            : {}),
        });
        if (last || (o.checkpointEvery > 0 && step % o.checkpointEvery === 0)) {
          const metrics: Record<string, unknown> = {
            step,
            train_loss: rep.loss,
            train_mean_token_accuracy: accuracy,
            trained_tokens: trainedTokens,
            ...(valid
              ? {
                valid_loss: valid.loss,
                valid_mean_token_accuracy: valid.accuracy,
                full_valid_loss: valid.loss,
                full_valid_mean_token_accuracy: valid.accuracy,
              }
              : {}),
          };
          const dir = await save(metrics);
          const view = model.weights.view();
          const factors = new Map([...trainer.factors].map(([k, f]) => [k, { A: f.A.slice(), B: f.B.slice() }]));
          await emit({
            type: "checkpoint",
            step,
            dir,
            metrics,
            deltas: () => Promise.resolve(deltasOf(view, model.adapters, factors)),
          });
        }
      }
      if (lastLoss === null) throw new FineTuneCheckpointError("the run ended without a training step");
      finalValid ??= await evaluate();
      await info(`done: ${trainer.step} steps, ${trainedTokens} tokens, final train loss ${lastLoss.toFixed(4)}`);
      return {
        steps: trainer.step,
        trainedTokens,
        finalTrainLoss: lastLoss,
        ...(finalValid ? { finalValidLoss: finalValid.loss } : {}),
        deltas: deltasOf(model.weights.view(), model.adapters, trainer.factors),
      };
    } finally {
      await trainer.release();
      await model.release();
    }
  } finally {
    ckpt.close();
  }
}

const TRAJECTORY_KEYS = [
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
] as const satisfies readonly (keyof Parsed)[];

function pick<T extends object, K extends keyof T>(o: T, keys: readonly K[]): Pick<T, K> {
  return Object.fromEntries(keys.map((k) => [k, o[k]])) as Pick<T, K>;
}

function sum<T>(xs: readonly T[], f: (x: T) => number): number {
  return xs.reduce((s, x) => s + f(x), 0);
}
