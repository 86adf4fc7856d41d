/**
 * ScaLoRA's learning-rate boost ω (auto L only): the factors are stepped at ω·η_t, ω ∈ [1, max], instead of η_t.
 *
 * Why ScaLoRA wants it: under the keep rule the merges hold the factors at a steady size ∝ η/(1 − q), where
 * LoRA's keep growing (∝ η·t), so at LoRA's learning rate ScaLoRA's steps in W are smaller than LoRA's after the
 * first ~100 steps. On the suite's design tasks ScaLoRA's own best lr was 1.5–2x LoRA's; a fixed 2x diverged on a
 * run already at the edge of LoRA's stability (bench/results/scalora-research.md).
 *
 * The rule: every BOOST_WINDOW steps (whatever the scaling interval I), the mean training loss of the window just
 * ended is compared with the mean of the window BOOST_LAG windows (100 steps) back. Lower (or equal):
 * ω ← min(max, ω·g); higher: ω ← max(1, ω/g²), g = BOOST_GROWTH. ω therefore climbs only while the loss is lower than
 * 100 steps before in more than 2/3 of the windows (the drift P·ln g − (1 − P)·2 ln g is positive iff P > 2/3): a
 * sign test of the loss trend against its own noise, which sinks back to the user's lr where the loss stalls or
 * rises. Why a lag: late in a run the loss falls little per window against the minibatch noise of a window's mean,
 * so a comparison with the window just before is close to a coin flip and sank ω to 1 exactly where a run still
 * makes slow, steady progress; over BOOST_LAG windows the trend is BOOST_LAG times larger while the noise of the
 * difference stays that of two window means. The window does not follow I so that ScaLoRA (I = 1) and ScaLoRA-I(10)
 * get the same test. The test compares losses only with each other, so it is invariant to the loss's scale and
 * offset. The cap (DEFAULT_LR_BOOST = 2) is the design tasks' measured best ratio; `lrBoost: 1` turns it off.
 *
 * Only at a conservative lr (boostCap): the boost is on where the run's relative step ρ = η / RMS(B at init) is at
 * most MAX_RELATIVE_STEP, and off above. Adam moves each factor entry by ~η per step, so ρ is the share of an entry's
 * natural size one step rewrites (taken at the run's base lr and the adapted layer with the smallest init; it is
 * dimensionless: it does not change with the loss or gradient scale, and scaling η and the init together leaves it
 * alone). A large ρ is what an lr near the edge of stability looks like, and there a boosted run can overshoot
 * before any test of the loss trend sees it: the trend test kept ω high on one such run whose loss still fell over
 * 100 steps, only more slowly than at the user's lr, and even the comparison with the window just before let another
 * end above LoRA (bench/results/scalora-research.md). MAX_RELATIVE_STEP = 0.1 lies between the suite's design
 * tasks that gained from the boost with its lag (ρ = 0.059) and those that did not (ρ ≥ 0.196); a 4096-wide model at
 * lr 2e-4 has ρ ≈ 0.02.
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
/** The largest relative step ρ = η / RMS(B at init) at which the boost is on (module comment). */
export const MAX_RELATIVE_STEP = 0.1;

/** The boost's cap at relative step `relativeStep` (η / RMS(B at init)): `cap` up to MAX_RELATIVE_STEP, else 1 (off). */
export function boostCap(cap: number, relativeStep: number): number {
  if (!(cap >= 1)) throw new RangeError(`lr boost: the cap must be ≥ 1, got ${cap}`);
  if (!(relativeStep >= 0)) {
    throw new RangeError(`lr boost: the relative step must be non-negative, got ${relativeStep}`);
  }
  // An infinite relative step (a zero init) is above the threshold: off.
  return relativeStep <= MAX_RELATIVE_STEP ? cap : 1;
}

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
 * Closes the window in progress and updates ω against the mean BOOST_LAG windows back (unchanged until there is
 * one). A non-finite loss counts as a rise and clears the history. Without a recorded step the state is unchanged.
 */
export function closeWindow(s: BoostState, max: number): BoostState {
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
  const withHistory = (history: number[]): BoostState => ({ omega: s.omega, history, sum: s.sum, count: s.count });
  if (Array.isArray(s.history)) {
    return s.history.length <= BOOST_LAG && s.history.every(Number.isFinite) ? withHistory([...s.history]) : null;
  }
  if (s.previous === null) return withHistory([]);
  return Number.isFinite(s.previous) ? withHistory([s.previous!]) : null;
}
