/** Learning-rate schedule: linear warmup, then constant, linear or cosine decay to `minRatio · lr`. */

export interface LrSchedule {
  decay: "constant" | "linear" | "cosine";
  /** Steps of linear warmup (lr·(t+1)/warmup for t < warmup, so the first step is not wasted at 0). */
  warmupSteps: number;
  /** Total optimizer steps; decay ends here. */
  totalSteps: number;
  /** Floor of the decay as a fraction of the base lr (default 0). */
  minRatio?: number;
}

/** The learning rate of the 0-based optimizer step `t`. */
export function learningRate(baseLr: number, s: LrSchedule, t: number): number {
  if (t < s.warmupSteps) return baseLr * (t + 1) / s.warmupSteps;
  if (s.decay === "constant") return baseLr;
  const span = Math.max(1, s.totalSteps - s.warmupSteps);
  const progress = Math.min(1, Math.max(0, (t - s.warmupSteps) / span));
  const floor = s.minRatio ?? 0;
  const shape = s.decay === "linear" ? 1 - progress : 0.5 * (1 + Math.cos(Math.PI * progress));
  return baseLr * (floor + (1 - floor) * shape);
}
