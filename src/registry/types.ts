/**
 * What the registry records as a version: a fine-tuned model is its base plus
 * the training engine's per-layer deltas (src/train/layer_delta.ts). The job
 * service hands these over through its VersionSink port (src/jobs/ports.ts).
 */
import type { LayerDelta } from "../train/layer_delta.ts";

export type VersionKind = "final" | "checkpoint";

export interface NewVersion {
  /** `ft:<base>:<suffix>:<job-id>`, or `<that>:ckpt-step-<N>` for a checkpoint. */
  name: string;
  kind: VersionKind;
  jobId: string;
  /** The base model id as served (directory or hub id). */
  baseModel: string;
  deltas: LayerDelta[];
  /** Training metrics at this point (step, losses, …), kept with the version. */
  metrics?: Record<string, unknown>;
}

/** What an eval-gated promotion compares: the metrics a run reports on its validation set. */
export const GATE_METRICS = ["full_valid_loss", "full_valid_mean_token_accuracy"] as const;
export type GateMetric = typeof GATE_METRICS[number];

/** When a candidate may take an alias: it must beat the alias's current target, or a fixed value, on `metric`. */
export interface PromotionGate {
  metric: GateMetric;
  /** "current": the alias's current target (an alias with none: any candidate passes); a number: that value. */
  mustBeat: "current" | number;
  /** How much better than that the candidate must be, in the metric's units (default 0: strictly better). */
  minImprovement: number;
}

/** The set both models are scored on (one JSONL text, tokenized once with the base model's tokenizer). */
export interface EvaluationData {
  text: string;
  /** Where it came from, for the record (e.g. `validation_file file-abc`). */
  source: string;
  maxLength: number;
  batchSize: number;
  seed: number;
}

/** One model's scores on an evaluation set, under the names of GATE_METRICS. */
export interface ModelScores {
  model: string;
  full_valid_loss: number;
  full_valid_mean_token_accuracy: number;
  /** Counted (assistant) tokens. */
  tokens: number;
}

/** What a gate decided, with both scores; recorded as a job event, in the alias history and in API answers. */
export interface PromotionDecision {
  alias: string;
  /** switched: the alias points at the candidate now; refused: it kept its target; unchanged: it already pointed there. */
  decision: "switched" | "refused" | "unchanged";
  metric: GateMetric;
  must_beat: "current" | number;
  min_improvement: number;
  candidate: { model: string; score: number | null };
  /** The alias's target when it was evaluated (null: the alias had none). */
  incumbent: { model: string; score: number | null } | null;
  /** The value the candidate had to beat (null: nothing to beat). */
  threshold: number | null;
  reason: string;
  eval_set: { source: string; examples: number; tokens: number } | null;
}
