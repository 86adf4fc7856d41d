/**
 * A job's training metrics under OpenAI's names (`train_loss`,
 * `full_valid_loss`, …), as they appear in metrics events, checkpoint
 * objects and the versions a job records. The training engine reports them
 * typed and unnamed; naming them is the service's business.
 */
import type { CheckpointMetrics, FineTuneEvent, FineTuneResult } from "../train/fine_tune.ts";

type MetricsEvent = Extract<FineTuneEvent, { type: "metrics" }>;

/** The `data` of a `metrics` job event. */
export function metricsEventData(e: MetricsEvent): Record<string, unknown> {
  return {
    step: e.step,
    total_steps: e.totalSteps,
    epoch: e.epoch,
    train_loss: e.trainLoss,
    train_mean_token_accuracy: e.tokenAccuracy,
    ...(e.validLoss !== undefined ? { valid_loss: e.validLoss } : {}),
    ...(e.validTokenAccuracy !== undefined ? { valid_mean_token_accuracy: e.validTokenAccuracy } : {}),
    tokens_per_second: e.tokensPerSecond,
    learning_rate: e.learningRate,
    lr_boost: e.lrBoost,
    ...(e.scaling
      ? {
        scaling: {
          columnwise_share: e.scaling.columnwiseShare,
          mean_alpha_beta: e.scaling.meanAlphaBeta,
          update_rank: e.scaling.updateRank,
        },
      }
      : {}),
  };
}

/**
 * A checkpoint object's `metrics` (and its version's). The validation pass
 * covers the whole validation set, so the `full_valid_*` values are the
 * `valid_*` ones.
 */
export function checkpointMetrics(m: CheckpointMetrics): Record<string, unknown> {
  return {
    step: m.step,
    train_loss: m.trainLoss,
    ...(m.tokenAccuracy !== undefined ? { train_mean_token_accuracy: m.tokenAccuracy } : {}),
    trained_tokens: m.trainedTokens,
    ...(m.validLoss !== undefined
      ? {
        valid_loss: m.validLoss,
        valid_mean_token_accuracy: m.validTokenAccuracy,
        full_valid_loss: m.validLoss,
        full_valid_mean_token_accuracy: m.validTokenAccuracy,
      }
      : {}),
  };
}

/** The final version's `metrics`. */
export function finalMetrics(result: FineTuneResult): Record<string, unknown> {
  return {
    steps: result.steps,
    trained_tokens: result.trainedTokens,
    final_train_loss: result.finalTrainLoss,
    ...(result.finalValidLoss !== undefined ? { final_valid_loss: result.finalValidLoss } : {}),
  };
}
