/**
 * ScaLoRA's learning-rate boost ω (auto L only): the factors are stepped at ω·η_t, ω ∈ [1, max], instead of η_t.
 *
 * Why ScaLoRA wants it: under the keep rule the merges hold the factors at a steady size ∝ η/(1 − q), where
 * LoRA's keep growing (∝ η·t), so at LoRA's learning rate ScaLoRA's steps in W are smaller than LoRA's after the
 * first ~100 steps. On the suite's design tasks ScaLoRA's own best lr was 1.5–2x LoRA's; a fixed 2x diverged on a
 * run already at the edge of LoRA's stability (README "L without tuning").
 *
 * The rule: every BOOST_WINDOW steps (whatever the scaling interval I), the mean training loss of the window just
 * ended is compared with the mean of the window BOOST_LAG windows back. Lower (or equal): ω ← min(max, ω·g); higher: ω ← max(1, ω/g²),
 * g = BOOST_GROWTH. ω therefore climbs only while the loss is lower than BOOST_LAG windows before in more than
 * 2/3 of the windows (the drift P·ln g − (1 − P)·2 ln g is positive iff P > 2/3): a sign test of the loss trend
 * against its own noise, which sinks back to the user's lr where the loss stalls or rises (a noisy plateau, the
 * edge of stability). Why a lag: late in a run the loss falls little per window against the minibatch noise of a
 * window's mean, so a comparison with the window just before is close to a coin flip and sank ω to 1 exactly where
 * a run still makes slow, steady progress; over BOOST_LAG windows the trend is BOOST_LAG times larger while the
 * noise of the difference stays that of two window means. The window does not follow I so that ScaLoRA (I = 1) and
 * ScaLoRA-I(10) get the same test. The test compares losses only with each other, so
 * it is invariant to the loss's scale and offset, and it uses no weight, gradient or curvature scale. The cap
 * (DEFAULT_LR_BOOST = 2) is the design tasks' measured best ratio; `lrBoost: 1` turns it off.
 */

export const DEFAULT_LR_BOOST = 2;
/** The largest cap a run may set (fineTune's options and the API). */
export const MAX_LR_BOOST = 10;
/** ω's factor per event up (down: its square). */
export const BOOST_GROWTH = 1.1;
/** Steps per window: ω changes only at t % BOOST_WINDOW = 0. */
export const BOOST_WINDOW = 10;
/** How many windows back a window's mean is compared with (100 steps). */
export const BOOST_LAG = 10;

export interface BoostState {
  /** The current multiplier ω. */
  omega: number;
  /** Mean training losses of the last closed windows (at most BOOST_LAG, oldest first). */
  history: number[];
  /** Sum and count of the training losses of the window in progress. */
  sum: number;
  count: number;
}

export const initialBoost = (): BoostState => ({ omega: 1, history: [], sum: 0, count: 0 });

/** Adds one step's training loss to the window in progress. */
export function recordLoss(s: BoostState, loss: number): BoostState {
  return { ...s, sum: s.sum + loss, count: s.count + 1 };
}

/**
 * Closes the window in progress and updates ω against the mean BOOST_LAG windows back
 * (unchanged until there is one). A non-finite loss counts as a rise and clears the history. Without a recorded
 * step the state is unchanged.
 */
export function closeInterval(s: BoostState, max: number): BoostState {
  if (!(max >= 1)) throw new RangeError(`lr boost: the cap must be ≥ 1, got ${max}`);
  if (s.count === 0) return s;
  const mean = s.sum / s.count;
  const up = (omega: number) => Math.min(max, omega * BOOST_GROWTH);
  const down = (omega: number) => Math.max(1, omega / BOOST_GROWTH ** 2);
  if (!Number.isFinite(mean)) return { omega: down(s.omega), history: [], sum: 0, count: 0 };
  const reference = s.history.length >= BOOST_LAG ? s.history[s.history.length - BOOST_LAG] : null;
  const omega = reference === null ? s.omega : mean <= reference ? up(s.omega) : down(s.omega);
  return { omega, history: [...s.history, mean].slice(-BOOST_LAG), sum: 0, count: 0 };
}

/**
 * Checks a stored state (checkpoint resume) and brings one written before the lag (`previous`: the last scaling interval's
 * mean) to today's form; null when it is not a state.
 */
export function storedBoost(x: unknown): BoostState | null {
  const s = x as BoostState & { previous?: number | null };
  if (
    typeof s !== "object" || s === null || !(s.omega >= 1) || !Number.isFinite(s.omega) ||
    !Number.isFinite(s.sum) || !Number.isInteger(s.count) || s.count < 0
  ) return null;
  if (Array.isArray(s.history)) {
    return s.history.length <= BOOST_LAG && s.history.every(Number.isFinite)
      ? { omega: s.omega, history: [...s.history], sum: s.sum, count: s.count }
      : null;
  }
  if (s.previous === null) return { omega: s.omega, history: [], sum: s.sum, count: s.count };
  return Number.isFinite(s.previous) ? { omega: s.omega, history: [s.previous!], sum: s.sum, count: s.count } : null;
}
