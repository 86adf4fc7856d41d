/**
 * A job's `validating_files` phase, and how training failures become the
 * job's `error` object. Runs inside job_worker.ts (tokenizing a big file
 * would stall the HTTP thread); pure enough to call in-process in tests.
 */
import { isDiskFull } from "../disk_space.ts";
import { openCheckpoint } from "../model/checkpoint.ts";
import { describeError, ModelLoadError } from "../model/errors.ts";
import { loadTokenizer, TokenizerLoadError } from "../model/tokenizer.ts";
import { DatasetOptionsError, validateJsonl, type ValidationResult } from "../train/dataset.ts";
import { type DatasetIssue, formatIssue } from "../train/dataset_errors.ts";
import { DatasetInvalidError, FineTuneCheckpointError, FineTuneOptionsError } from "../train/fine_tune.ts";
import type { DatasetSummary, JobFailure, ValidateOutcome, ValidateRequest } from "./job_worker_protocol.ts";
import { CheckpointError } from "../train/train_checkpoint.ts";

/** Every failure as the job's error object: data problems name their file, the rest say what broke. */
export function jobFailure(e: unknown): JobFailure {
  // Checkpoints could not be written: the runner pauses the job until there is room.
  if (isDiskFull(e)) return { code: "insufficient_storage", message: describeError(e), param: null };
  if (e instanceof DatasetInvalidError) {
    return jobErrorFromIssues(e.issues, e.file) ?? { code: "invalid_file", message: e.message, param: e.file };
  }
  if (e instanceof FineTuneOptionsError || e instanceof DatasetOptionsError) {
    return { code: "invalid_hyperparameters", message: describeError(e), param: "hyperparameters" };
  }
  if (e instanceof FineTuneCheckpointError || e instanceof CheckpointError) {
    return { code: "checkpoint_error", message: `cannot resume: ${describeError(e)}`, param: null };
  }
  if (e instanceof ModelLoadError || e instanceof TokenizerLoadError) {
    return {
      code: "model_load_error",
      message: `the base model could not be loaded: ${describeError(e)}`,
      param: "model",
    };
  }
  return { code: "training_error", message: `training failed: ${describeError(e)}`, param: null };
}

/**
 * The job error for a failed file: the first issue's code, a message naming
 * its line (and how many more there are), and `param` = which file.
 */
export function jobErrorFromIssues(
  issues: readonly DatasetIssue[],
  file: "training_file" | "validation_file",
): JobFailure | null {
  if (issues.length === 0) return null;
  const first = issues[0];
  const more = issues.length > 1 ? ` (and ${issues.length - 1} more problem${issues.length > 2 ? "s" : ""})` : "";
  return { code: first.code, message: `${file}: ${formatIssue(first)}${more}`, param: file };
}

function summary(r: ValidationResult): DatasetSummary {
  const { examples, tokens, trainableTokens, truncated } = r.stats;
  return { examples, tokens, trainableTokens, truncated };
}

/** Tokenizes both files with the model's tokenizer, exactly as fineTune will; stops at the first bad file. */
export async function validateJobFiles(req: ValidateRequest): Promise<ValidateOutcome> {
  try {
    const ckpt = await openCheckpoint(req.model, { cacheDir: `${req.dataDir}/hub` });
    try {
      const tokenizer = await loadTokenizer(ckpt.dir);
      const files = [["training_file", req.trainText], ["validation_file", req.validationText]] as const;
      const results: ValidationResult[] = [];
      for (const [file, text] of files) {
        if (text === undefined) continue;
        const r = validateJsonl(text, { tokenizer, maxLength: req.maxLength });
        if (r.errors.length > 0) {
          return { kind: "invalid", file, issues: r.errors.slice(0, req.maxIssues), issueCount: r.errors.length };
        }
        results.push(r);
      }
      return { kind: "valid", train: summary(results[0]), validation: results[1] ? summary(results[1]) : null };
    } finally {
      ckpt.close();
    }
  } catch (e) {
    return { kind: "error", error: jobFailure(e) };
  }
}
