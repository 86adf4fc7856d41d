/**
 * The scheduler's plan step, pure (data in, plan out): from the waiting queue
 * and the running batch, what the next engine step does — which running
 * sequences leave, which queued ones join, how the joining prompts are
 * prefilled, and which sequences then decode together. The executor
 * (scheduler.ts) runs the plan on the model worker, samples and delivers, as
 * vLLM's `schedule()` and `update_from_output()` split the work.
 */

/** A request waiting for a slot, in arrival order. */
export interface QueuedSequence {
  id: number;
  promptLength: number;
  /** Needs logits at every prompt position (prompt logprobs): gets a prefill pass of its own. */
  allLogits: boolean;
}

/** A sequence in the batch (its cache lives in the worker). */
export interface RunningSequence {
  id: number;
  /** Ended early (aborted, timed out, failed): it leaves at this step boundary. */
  cancelled: boolean;
}

export interface PlanLimits {
  /** Most sequences in the batch. */
  maxBatchSize: number;
  /** Prompt tokens prefilled per step; the first joining prompt is admitted whatever its length. */
  prefillTokensPerStep: number;
  /** Most padding a batched prefill pass may add, as a fraction of its real prompt tokens. */
  prefillPaddingRatio: number;
}

/** One left-padded prefill pass. */
export interface PrefillPass {
  seqs: number[];
  /** Return logits at every position (a single prompt that asked for prompt logprobs). */
  allLogits: boolean;
}

export interface StepPlan {
  /** Running sequences that leave the batch before the step (their caches are dropped). */
  leave: number[];
  /** Queued sequences that join the batch: the head of the queue, in order. */
  join: number[];
  /** The joining prompts' prefill passes, run in this order before the decode. */
  prefills: PrefillPass[];
  /**
   * The decode batch: the staying sequences, then the joining ones. A sequence
   * that finishes in its prefill, or is cancelled meanwhile, drops out of it.
   */
  decode: number[];
}

/**
 * Plans one step. Joining is first come, first served: the queue's head joins
 * while the batch has room and the prefill token budget lasts (a long prompt
 * is never overtaken by shorter ones behind it, and at least one joins, so a
 * prompt beyond the budget still runs). Budgeting prefill per step keeps a
 * burst of long prompts from stalling the running sequences for long.
 */
export function planStep(
  queue: readonly QueuedSequence[],
  running: readonly RunningSequence[],
  limits: PlanLimits,
): StepPlan {
  const leave = running.filter((s) => s.cancelled).map((s) => s.id);
  const staying = running.filter((s) => !s.cancelled).map((s) => s.id);
  const joining: QueuedSequence[] = [];
  let budget = limits.prefillTokensPerStep;
  for (const q of queue) {
    if (staying.length + joining.length >= limits.maxBatchSize) break;
    if (joining.length > 0 && q.promptLength > budget) break;
    joining.push(q);
    budget -= q.promptLength;
  }
  const passes = planPrefills(
    joining.map((q) => ({ length: q.promptLength, alone: q.allLogits })),
    limits.prefillPaddingRatio,
  );
  const join = joining.map((q) => q.id);
  return {
    leave,
    join,
    prefills: passes.map((pass) => ({
      seqs: pass.map((i) => join[i]),
      allLogits: pass.length === 1 && joining[pass[0]].allLogits,
    })),
    decode: [...staying, ...join],
  };
}

/**
 * Splits admitted prompts into prefill passes: longest first, a pass takes
 * the next prompt while its padding (every row padded to the pass's longest
 * prompt) stays within `paddingRatio` of its real tokens. Prompts marked
 * `alone` (they need logits at every position) get a pass of their own.
 * Returns indices into `prompts`, every index exactly once.
 */
export function planPrefills(prompts: { length: number; alone: boolean }[], paddingRatio: number): number[][] {
  const groups: number[][] = [];
  const order = prompts.map((_, i) => i).sort((a, b) => prompts[b].length - prompts[a].length || a - b);
  let group: number[] = [], real = 0;
  for (const i of order) {
    if (prompts[i].alone) {
      groups.push([i]);
      continue;
    }
    const width = group.length > 0 ? prompts[group[0]].length : prompts[i].length;
    const padded = (group.length + 1) * width;
    if (group.length > 0 && padded - (real + prompts[i].length) > paddingRatio * (real + prompts[i].length)) {
      groups.push(group);
      group = [];
      real = 0;
    }
    group.push(i);
    real += prompts[i].length;
  }
  if (group.length > 0) groups.push(group);
  return groups;
}

/**
 * How long an idle engine still waits before its first step (≤ 0: start now).
 * It starts once no request has arrived for `quietMs`, and after 10 × quietMs
 * at most: a burst of requests reaches the engine spread over a few
 * milliseconds of HTTP handling, and should be prefilled in one pass rather
 * than its first request alone.
 */
export function admissionWaitMs(now: number, lastArrival: number, gatherStart: number, quietMs: number): number {
  return Math.min(lastArrival + quietMs, gatherStart + 10 * quietMs) - now;
}
