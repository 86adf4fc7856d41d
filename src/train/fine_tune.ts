/**
 * The fine-tuning pipeline (CLI `deno task train` and the job worker):
 * open the model and tokenizer → prepare the data (fine_tune_data.ts: validate
 * and tokenize the JSONL files, bad lines fail with DatasetInvalidError before
 * any session is opened; split; batches) → the training phase
 * (fine_tune_run.ts: LM training model with recorded merges, resume, Trainer
 * steps with metrics events, periodic validation and checkpoints) → deltas
 * (W_final − W_base per layer).
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
import { openCheckpoint } from "../model/checkpoint.ts";
import { loadTokenizer } from "../model/tokenizer.ts";
import { fingerprint } from "./fine_tune_checkpoints.ts";
import {
  type FineTuneConfig,
  type FineTuneConfigInput,
  parseFineTuneOptions,
  TRAJECTORY_KEYS,
} from "./fine_tune_config.ts";
import { prepareData } from "./fine_tune_data.ts";
import { type CheckpointMetrics, FineTuneRun } from "./fine_tune_run.ts";
import type { LayerDelta } from "./layer_delta.ts";

// The pipeline's public surface: the CLI and the job worker import these from here.
export { DatasetInvalidError } from "./dataset_errors.ts";
export { FineTuneCheckpointError } from "./fine_tune_checkpoints.ts";
export { FineTuneOptionsError } from "./fine_tune_config.ts";
export { type CheckpointMetrics, FineTuneAborted } from "./fine_tune_run.ts";
export { writeMergedModel } from "./merged_model.ts";
export type { MergedModelOptions } from "./merged_model.ts";

/** fineTune's options: the configuration (fine_tune_config.ts, with its defaults) and how to report and stop. */
export type FineTuneOptions = FineTuneConfigInput & {
  onEvent?: (e: FineTuneEvent) => void | Promise<void>;
  /** Stop between steps (cancel/pause): writes a checkpoint first when possible, then throws FineTuneAborted. */
  signal?: AbortSignal;
};

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
    /** The learning rate the adapter was stepped at: the scheduled one times `lrBoost`. */
    learningRate: number;
    /** ScaLoRA's learning-rate boost ω (lr_boost.ts); 1 for LoRA and with a fixed L. */
    lrBoost: number;
    /**
     * Present on steps that rescaled (ScaLoRA). `updateRank`: mean per layer of the rank the accumulated
     * update can have (merged columns + r, at most min(m, n)).
     */
    scaling?: { columnwiseShare: number; meanAlphaBeta: number; updateRank: number };
  }
  | {
    type: "checkpoint";
    step: number;
    dir: string;
    metrics: CheckpointMetrics;
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

export async function fineTune(opts: FineTuneOptions): Promise<FineTuneResult> {
  const { onEvent, signal, ...options } = opts;
  const o = parseFineTuneOptions(options);
  const emit = async (e: FineTuneEvent) => {
    await onEvent?.(e);
  };
  const info = (message: string) => emit({ type: "message", level: "info", message });

  const ckpt = await openCheckpoint(o.model, { cacheDir: `${o.dataDir}/hub` });
  try {
    const data = prepareData(await loadTokenizer(ckpt.dir), ckpt.config.eosTokenIds[0] ?? 0, o);
    const { train, validation, totalSteps, batchesPerEpoch } = data;
    if (data.truncated) {
      await emit({
        type: "message",
        level: "warn",
        message: `${data.truncated} example(s) longer than ${o.maxLength} tokens were truncated`,
      });
    }
    await info(
      `data: ${train.length} training examples (${sum(train, (e) => e.trainableTokens)} trainable tokens), ` +
        `${validation.length} validation; ${totalSteps} steps (${o.epochs} epoch(s) x ${batchesPerEpoch} batches` +
        `${o.gradientAccumulation > 1 ? ` / ${o.gradientAccumulation} accumulated` : ""})`,
    );
    const run = await FineTuneRun.open(ckpt, o, data, await trajectoryId(ckpt.rawConfig, o), emit);
    try {
      await info(
        `model: ${ckpt.config.architecture}, ${ckpt.config.numLayers} layers; ${o.method} r=${o.rank} ` +
          `alpha=${o.alpha} on ${run.model.adapters.length} linear layers` +
          (o.method === "lora" ? "" : `, interval ${o.interval}, L ${JSON.stringify(o.lipschitz)}`),
      );
      if (o.resume) await run.resume();
      return await run.train(signal);
    } finally {
      await run.release();
    }
  } finally {
    ckpt.close();
  }
}

/** What determines the trajectory: the model, the data and the trajectory options (see TRAJECTORY_KEYS). */
async function trajectoryId(modelConfig: unknown, o: FineTuneConfig): Promise<string> {
  return await fingerprint({
    config: modelConfig,
    train: await fingerprint(o.trainText),
    validation: o.validationText === undefined ? null : await fingerprint(o.validationText),
    ...Object.fromEntries(TRAJECTORY_KEYS.map((k) => [k, o[k]])),
  });
}

function sum<T>(xs: readonly T[], f: (x: T) => number): number {
  return xs.reduce((s, x) => s + f(x), 0);
}
