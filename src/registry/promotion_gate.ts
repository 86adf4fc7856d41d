/**
 * The decision of an eval-gated promotion (pure): given the candidate's and
 * the incumbent's scores on one evaluation set, may the candidate take the
 * alias? Loss must go down, accuracy up, by more than `minImprovement`; a
 * non-finite score never wins. `must_beat: "current"` compares with what the
 * alias serves (no target yet: the candidate passes); a number compares with
 * that value (the incumbent's score is still recorded, for the reader).
 */
import type { GateMetric, ModelScores, PromotionDecision, PromotionGate } from "./types.ts";

/** Lower is better for losses, higher for accuracies. */
export function lowerIsBetter(metric: GateMetric): boolean {
  return metric === "full_valid_loss";
}

/** Whether `candidate` beats `threshold` by more than `minImprovement` on `metric`. */
export function beats(metric: GateMetric, candidate: number, threshold: number, minImprovement: number): boolean {
  if (!Number.isFinite(candidate)) return false;
  if (!Number.isFinite(threshold)) return true;
  return lowerIsBetter(metric)
    ? candidate < threshold && threshold - candidate >= minImprovement
    : candidate > threshold && candidate - threshold >= minImprovement;
}

const fmt = (x: number) => (Number.isFinite(x) ? x.toPrecision(5) : String(x));

export interface GateInput {
  alias: string;
  gate: PromotionGate;
  candidate: ModelScores;
  /** The alias's target's scores (null: no target). */
  incumbent: ModelScores | null;
  evalSet: { source: string; examples: number; tokens: number };
}

/** The decision (`switched` or `refused`; the caller applies it). */
export function decidePromotion(input: GateInput): PromotionDecision {
  const { alias, gate, candidate, incumbent } = input;
  const score = candidate[gate.metric];
  const incumbentScore = incumbent ? incumbent[gate.metric] : null;
  const threshold = gate.mustBeat === "current" ? incumbentScore : gate.mustBeat;
  const against = gate.mustBeat === "current"
    ? (incumbent ? `${incumbent.model} (${fmt(incumbentScore!)})` : null)
    : `the threshold ${fmt(gate.mustBeat)}`;
  const margin = gate.minImprovement > 0 ? ` by at least ${fmt(gate.minImprovement)}` : "";
  const better = lowerIsBetter(gate.metric) ? "lower" : "higher";
  const wins = threshold === null || beats(gate.metric, score, threshold, gate.minImprovement);
  const reason = against === null
    ? `alias ${alias} has no target yet: ${candidate.model} takes it (${gate.metric} ${fmt(score)})`
    : wins
    ? `${gate.metric} ${fmt(score)} of ${candidate.model} beats ${against}${margin}`
    : `${gate.metric} ${fmt(score)} of ${candidate.model} does not beat ${against}${margin} (${better} is better)`;
  return {
    alias,
    decision: wins ? "switched" : "refused",
    metric: gate.metric,
    must_beat: gate.mustBeat,
    min_improvement: gate.minImprovement,
    candidate: { model: candidate.model, score },
    incumbent: incumbent ? { model: incumbent.model, score: incumbentScore } : null,
    threshold,
    reason,
    eval_set: input.evalSet,
  };
}
