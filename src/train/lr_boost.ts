/**
 * ScaLoRA's learning-rate boost ω (auto L only): the factors are stepped at ω·η_t, ω ∈ [1, max], instead of η_t.
 *
 * Why ScaLoRA wants it: under the keep rule the merges hold the factors at a steady size ∝ η/(1 − q), where
 * LoRA's keep growing (∝ η·t), so at LoRA's learning rate ScaLoRA's steps in W are smaller than LoRA's after the
 * first ~100 steps. On the suite's design tasks ScaLoRA's own best lr was 1.5–2x LoRA's; a fixed 2x diverged on a
 * run already at the edge of LoRA's stability (README "L without tuning").
 *
 * The rule: at every scaling event, the mean training loss of the interval just ended is compared with the one
 * before. Lower (or equal): ω ← min(max, ω·g); higher: ω ← max(1, ω/g²), g = BOOST_GROWTH. ω therefore climbs only
 * while the loss falls in more than 2/3 of the intervals (the drift P·ln g − (1 − P)·2 ln g is positive iff
 * P > 2/3): a sign test of the loss trend against its own noise, which sinks back to the user's lr on a noisy
 * plateau or at the edge of stability. It compares losses only with each other, so it is invariant to the loss's
 * scale and offset, and it uses no weight, gradient or curvature scale. The cap (DEFAULT_LR_BOOST = 2) is the
 * design tasks' measured best ratio; `lrBoost: 1` turns it off.
 */

export const DEFAULT_LR_BOOST = 2;
/** The largest cap a run may set (fineTune's options and the API). */
export const MAX_LR_BOOST = 10;
/** ω's factor per event up (down: its square). */
export const BOOST_GROWTH = 1.1;

export interface BoostState {
  /** The current multiplier ω. */
  omega: number;
  /** Mean training loss of the previous closed interval (null before the first). */
  previous: number | null;
  /** Sum and count of the training losses of the interval in progress. */
  sum: number;
  count: number;
}

export const initialBoost = (): BoostState => ({ omega: 1, previous: null, sum: 0, count: 0 });

/** Adds one step's training loss to the interval in progress. */
export function recordLoss(s: BoostState, loss: number): BoostState {
  return { ...s, sum: s.sum + loss, count: s.count + 1 };
}

/**
 * Closes the interval in progress (at a scaling event) and updates ω against the previous interval's mean.
 * A non-finite loss counts as a rise. Without a recorded step the state is unchanged.
 */
export function closeInterval(s: BoostState, max: number): BoostState {
  if (!(max >= 1)) throw new RangeError(`lr boost: the cap must be ≥ 1, got ${max}`);
  if (s.count === 0) return s;
  const mean = s.sum / s.count;
  let omega = s.omega;
  if (s.previous !== null) {
    omega = mean <= s.previous ? Math.min(max, omega * BOOST_GROWTH) : Math.max(1, omega / BOOST_GROWTH ** 2);
  }
  return { omega, previous: Number.isFinite(mean) ? mean : null, sum: 0, count: 0 };
}

/** Checks a stored state (checkpoint resume). */
export function isBoostState(x: unknown): x is BoostState {
  const s = x as BoostState;
  return typeof s === "object" && s !== null && s.omega >= 1 && Number.isFinite(s.omega) &&
    (s.previous === null || Number.isFinite(s.previous)) && Number.isFinite(s.sum) &&
    Number.isInteger(s.count) && s.count >= 0;
}
