/**
 * Messages between the job runner (main thread) and job_worker.ts. A worker
 * serves exactly one request (validate or train) and is then terminated, so
 * a run's memory goes with it.
 */
import type { LayerDelta } from "../train/layer_delta.ts";
import type { DatasetIssue } from "../train/dataset.ts";
import type { CheckpointMetrics, FineTuneEvent, FineTuneResult } from "../train/fine_tune.ts";
import type { TrainOptions } from "./job_spec.ts";

/** The job's `error` object (OpenAI shape). */
export interface JobFailure {
  code: string;
  message: string;
  param: string | null;
}

export interface ValidateRequest {
  /** Model dir or hub id (its tokenizer decides the token counts). */
  model: string;
  dataDir: string;
  maxLength: number;
  trainText: string;
  validationText?: string;
  /** Issues sent back per file (the count is always exact). */
  maxIssues: number;
}

export interface DatasetSummary {
  examples: number;
  tokens: number;
  trainableTokens: number;
  truncated: number;
}

export type ValidateOutcome =
  | { kind: "valid"; train: DatasetSummary; validation: DatasetSummary | null }
  | { kind: "invalid"; file: "training_file" | "validation_file"; issues: DatasetIssue[]; issueCount: number }
  /** Not the data's fault: the model or tokenizer could not be loaded, or a bug. */
  | { kind: "error"; error: JobFailure };

/** fineTune's events, with a checkpoint's deltas materialized (functions do not cross threads). */
export type TrainEvent =
  | Exclude<FineTuneEvent, { type: "checkpoint" }>
  | { type: "checkpoint"; step: number; dir: string; metrics: CheckpointMetrics; deltas: LayerDelta[] };

export type TrainOutcome =
  | { kind: "succeeded"; result: FineTuneResult }
  /** Stopped on request; `checkpoint` is where the state was saved (null: nothing new to save). */
  | { kind: "aborted"; step: number; checkpoint: string | null }
  | { kind: "failed"; error: JobFailure };

export type ToWorker =
  | { type: "validate"; request: ValidateRequest }
  /** `deviceLock`: the process's WebGPU lock (runtime/device_lock.ts), shared with the serving workers. */
  | { type: "train"; options: TrainOptions; deviceLock: SharedArrayBuffer }
  | { type: "abort"; reason: string };

export type FromWorker =
  | { type: "validated"; outcome: ValidateOutcome }
  | { type: "event"; event: TrainEvent }
  | { type: "trained"; outcome: TrainOutcome };
