/**
 * Next-token sampling: penalties, temperature, top-k, top-p, seeded RNG.
 *
 * Cost per call for vocab V (no full-vocab sort unless top-k itself is ~V):
 * - temperature 0 (greedy): O(V).
 * - no top-k, no top-p: O(V).
 * - top-k (k < V): O(V log k) heap selection + O(k log k) sort of the k
 *   survivors; top-p then walks them in order.
 * - top-p without top-k: O(V). One pass builds a histogram of probability
 *   mass over -ln(p) (1/64-nat buckets) to find the bucket where the
 *   cumulative mass crosses topP; only that bucket's tokens get an exact cut,
 *   by weighted quickselect (expected linear). ~2-3 ms for V = 152k here,
 *   about the cost of the exp() calls plus two more passes.
 */

export interface SamplingParams {
  /** 0 = greedy argmax; otherwise logits are divided by it. */
  temperature: number;
  /** Nucleus mass in (0, 1]; 1 disables; ≤ 0 keeps only the top token. */
  topP: number;
  /** Keep the k most likely tokens; ≤ 0 or ≥ vocab disables. */
  topK: number;
  seed?: number;
  /** OpenAI: subtracted once from every token that already occurred. */
  presencePenalty?: number;
  /** OpenAI: subtracted count times from every token that already occurred. */
  frequencyPenalty?: number;
  /** HF/vLLM (CTRL paper): occurred tokens' logit l → l / r if l > 0 else l · r. */
  repetitionPenalty?: number;
}

/** Token occurrence counts that the penalties apply to (caller decides which tokens count). */
export interface TokenHistory {
  counts: Map<number, number>;
}

/** The sampler's RNG is the project's seeded xoshiro128** (re-exported for callers). */
export { Rng } from "../model/rng.ts";
import type { Rng } from "../model/rng.ts";

/** Index of the largest value; ties → lowest index; NaN never wins. */
export function argmax(values: ArrayLike<number>): number {
  let best = 0;
  let bestVal = -Infinity;
  for (let i = 0; i < values.length; i++) {
    if (values[i] > bestVal) {
      bestVal = values[i];
      best = i;
    }
  }
  return best;
}

/**
 * Indices of the k largest values, sorted descending (ties → lower index
 * first). NaN counts as -Infinity. O(n log k) via a size-k min-heap.
 */
export function topKIndices(values: ArrayLike<number>, k: number): Int32Array {
  k = Math.max(0, Math.min(Math.floor(k), values.length));
  if (k === 0) return new Int32Array(0);
  const idx = new Int32Array(k);
  const val = new Float64Array(k);
  // Heap order: root is the "worst" kept entry (smallest value, then largest index).
  const worse = (a: number, b: number) => val[a] < val[b] || (val[a] === val[b] && idx[a] > idx[b]);
  const swap = (a: number, b: number) => {
    const i = idx[a], v = val[a];
    idx[a] = idx[b], val[a] = val[b];
    idx[b] = i, val[b] = v;
  };
  const siftDown = (pos: number) => {
    for (;;) {
      const l = 2 * pos + 1, r = l + 1;
      let m = pos;
      if (l < k && worse(l, m)) m = l;
      if (r < k && worse(r, m)) m = r;
      if (m === pos) return;
      swap(pos, m);
      pos = m;
    }
  };
  for (let i = 0; i < k; i++) {
    const v = values[i];
    idx[i] = i;
    val[i] = v === v ? v : -Infinity;
  }
  for (let i = (k >> 1) - 1; i >= 0; i--) siftDown(i);
  for (let i = k; i < values.length; i++) {
    const v = values[i];
    // Later indices lose ties, so only a strictly larger value enters.
    if (v > val[0]) {
      idx[0] = i;
      val[0] = v;
      siftDown(0);
    }
  }
  const order = Array.from({ length: k }, (_, j) => j).sort((a, b) => val[b] - val[a] || idx[a] - idx[b]);
  return Int32Array.from(order, (j) => idx[j]);
}

/** Numerically stable log-softmax (accumulated in float64). */
/**
 * log Σ exp(logits), stable. -Infinity when every logit is -Infinity; NaN
 * when a logit is NaN or +Infinity.
 */
export function logSumExp(logits: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) {
    const x = logits[i];
    if (x > max || Number.isNaN(x)) max = x;
    if (Number.isNaN(max)) return NaN;
  }
  if (max === Infinity) return NaN;
  if (max === -Infinity) return -Infinity;
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  return max + Math.log(sum);
}

function validate(params: SamplingParams): void {
  if (!(params.temperature >= 0) || params.temperature === Infinity) {
    throw new RangeError(`temperature must be finite and >= 0, got ${params.temperature}`);
  }
  if (Number.isNaN(params.topP)) throw new RangeError("topP must be a number");
  const rep = params.repetitionPenalty ?? 1;
  if (!(rep > 0) || rep === Infinity) throw new RangeError(`repetitionPenalty must be > 0, got ${rep}`);
}

/** Returns `logits` itself when no penalty applies, else a penalised copy (input is never mutated). */
export function applyPenalties(logits: Float32Array, params: SamplingParams, history?: TokenHistory): Float32Array {
  const rep = params.repetitionPenalty ?? 1;
  const presence = params.presencePenalty ?? 0;
  const frequency = params.frequencyPenalty ?? 0;
  if (!history || history.counts.size === 0 || (rep === 1 && presence === 0 && frequency === 0)) return logits;
  const out = logits.slice();
  for (const [id, count] of history.counts) {
    if (!(count > 0) || !Number.isInteger(id) || id < 0 || id >= out.length) continue;
    let l = out[id];
    if (rep !== 1) l = l > 0 ? l / rep : l * rep;
    out[id] = l - count * frequency - presence;
  }
  return out;
}

/** Post-filter distribution: token ids with unnormalised weights (prob = weight / total). */
export interface Candidates {
  ids: Int32Array;
  weights: Float64Array;
  total: number;
}

/**
 * Keeps the shortest prefix of already-sorted candidates whose mass reaches
 * `target` (at least one).
 */
function nucleusPrefix(ids: Int32Array, weights: Float64Array, target: number): Candidates {
  let cum = 0;
  let keep = 0;
  while (keep < ids.length) {
    cum += weights[keep++];
    if (cum >= target) break;
  }
  return { ids: ids.slice(0, keep), weights: weights.slice(0, keep), total: cum };
}

/**
 * Weighted quickselect: the largest weight τ such that the mass of weights
 * ≥ τ reaches `target`. Also returns the mass strictly above τ.
 * Expected O(n); `work` holds the positive weights and is reordered in place.
 */
function nucleusThreshold(work: Float64Array, target: number): { tau: number; massAbove: number } {
  let lo = 0;
  let hi = work.length;
  let above = 0; // mass of elements known to be larger than all of work[lo, hi)
  for (;;) {
    // Median of three (first, middle, last) as pivot.
    const a = work[lo], b = work[(lo + hi) >> 1], c = work[hi - 1];
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : (a < c ? a : b < c ? c : b);
    // Three-way partition: [lo, gt) > pivot, [gt, i) = pivot, [lt, hi) < pivot.
    let gt = lo, i = lo, lt = hi;
    let massG = 0, massE = 0;
    while (i < lt) {
      const w = work[i];
      if (w > pivot) {
        massG += w;
        work[i++] = work[gt];
        work[gt++] = w;
      } else if (w < pivot) {
        work[i] = work[--lt];
        work[lt] = w;
      } else {
        massE += w;
        i++;
      }
    }
    if (above + massG >= target && gt > lo) {
      hi = gt; // the cut lies among the larger weights
    } else if (above + massG >= target) {
      return { tau: pivot, massAbove: above }; // only when target ≤ 0: keep the top weight
    } else if (above + massG + massE >= target || lt === hi) {
      // lt === hi: nothing smaller left (rounding); the pivot is the cut.
      return { tau: pivot, massAbove: above + massG };
    } else {
      above += massG + massE;
      lo = lt;
    }
  }
}

/** Histogram resolution for top-p without top-k: buckets of 1/64 nat in -ln(weight). */
const BUCKETS_PER_NAT = 64;
const NUM_BUCKETS = 4096; // the last one also holds weights below e^-64 and zeros

/**
 * Top-p over the whole vocab without sorting. Pass 1 computes weights and a
 * histogram of mass by -ln(weight); scanning it from the top finds the
 * bucket where the cumulative mass crosses `topP`. Only that bucket's tokens
 * need an exact cut (weighted quickselect); ties at the cut weight are taken
 * lowest id first. Output is in id order.
 */
function nucleusByHistogram(adjusted: Float32Array, max: number, invT: number, topP: number): Candidates {
  const V = adjusted.length;
  const last = NUM_BUCKETS - 1;
  const weights = new Float64Array(V);
  const bucket = new Uint16Array(V);
  const mass = new Float64Array(NUM_BUCKETS);
  const count = new Uint32Array(NUM_BUCKETS);
  let total = 0;
  for (let i = 0; i < V; i++) {
    const z = (max - adjusted[i]) * invT; // -ln(weight) ≥ 0
    const w = Math.exp(-z) || 0; // NaN logits get no mass
    const b = w > 0 ? Math.min(last, Math.floor(z * BUCKETS_PER_NAT)) : last;
    weights[i] = w;
    bucket[i] = b;
    mass[b] += w;
    count[b]++;
    total += w;
  }
  const target = topP * total;
  let cut = last;
  let massBefore = 0; // mass of buckets above the cut bucket
  for (let b = 0; b < last; b++) {
    if (massBefore + mass[b] >= target) {
      cut = b;
      break;
    }
    massBefore += mass[b];
  }
  const work = new Float64Array(count[cut]);
  let n = 0;
  for (let i = 0; i < V; i++) if (bucket[i] === cut && weights[i] > 0) work[n++] = weights[i];
  const need = target - massBefore; // > 0 by construction of `cut`
  const { tau, massAbove } = n > 0 ? nucleusThreshold(work.subarray(0, n), need) : { tau: Infinity, massAbove: 0 };

  const ids = new Int32Array(V);
  const kept = new Float64Array(V);
  let keep = 0;
  let tieMass = 0;
  let keptTotal = 0;
  for (let i = 0; i < V; i++) {
    const w = weights[i];
    const b = bucket[i];
    if (b < cut || (b === cut && (w > tau || (w === tau && massAbove + tieMass < need)))) {
      if (b === cut && w === tau) tieMass += w;
      ids[keep] = i;
      kept[keep++] = w;
      keptTotal += w;
    }
  }
  return { ids: ids.slice(0, keep), weights: kept.slice(0, keep), total: keptTotal };
}

/**
 * The distribution `sampleToken` draws from, after penalties, temperature,
 * top-k and top-p. Greedy (temperature 0), or a distribution with no finite
 * mass, yields the single argmax token.
 */
export function samplingDistribution(logits: Float32Array, params: SamplingParams, history?: TokenHistory): Candidates {
  validate(params);
  const adjusted = applyPenalties(logits, params, history);
  const greedy = (): Candidates => ({ ids: Int32Array.of(argmax(adjusted)), weights: Float64Array.of(1), total: 1 });
  if (params.temperature === 0) return greedy();
  const invT = 1 / params.temperature;
  const V = adjusted.length;
  const topP = Math.min(params.topP, 1);

  if (params.topK > 0 && params.topK < V) {
    const ids = topKIndices(adjusted, params.topK);
    const max = adjusted[ids[0]];
    if (!Number.isFinite(max)) return greedy();
    // Weights relative to the max, so the largest is exactly 1.
    const weights = Float64Array.from(ids, (id) => Math.exp((adjusted[id] - max) * invT) || 0);
    let total = 0;
    for (const w of weights) total += w;
    return topP < 1 ? nucleusPrefix(ids, weights, topP * total) : { ids, weights, total };
  }

  let max = -Infinity;
  for (let i = 0; i < V; i++) if (adjusted[i] > max) max = adjusted[i];
  if (!Number.isFinite(max) || topP <= 0) return greedy();
  if (topP < 1) return nucleusByHistogram(adjusted, max, invT, topP);
  const ids = new Int32Array(V);
  const weights = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) {
    const w = Math.exp((adjusted[i] - max) * invT) || 0; // NaN logits get no mass
    ids[i] = i;
    weights[i] = w;
    total += w;
  }
  return { ids, weights, total };
}

/**
 * Picks the next token. Temperature 0 is greedy (ties → lowest id) and does
 * not consume the rng; otherwise exactly one `rng.nextFloat()` is drawn per call,
 * so a seeded stream stays aligned regardless of filtering. Penalties apply
 * in both modes.
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, rng: Rng, history?: TokenHistory): number {
  const dist = samplingDistribution(logits, params, history);
  if (params.temperature === 0) return dist.ids[0];
  let u = rng.nextFloat() * dist.total;
  for (let i = 0; i < dist.ids.length; i++) {
    u -= dist.weights[i];
    if (u < 0 && dist.weights[i] > 0) return dist.ids[i];
  }
  // Rounding left u marginally ≥ 0: fall back to the last token with mass.
  for (let i = dist.ids.length - 1; i >= 0; i--) if (dist.weights[i] > 0) return dist.ids[i];
  return dist.ids[0];
}
