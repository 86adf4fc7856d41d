/**
 * Next-token sampling: penalties, temperature, top-k, top-p, seeded RNG.
 *
 * Cost per call for vocab V (no full sort unless the distribution is flat):
 * - temperature 0 (greedy): O(V).
 * - no top-k, no top-p: O(V).
 * - top-k (k < V): O(V log k) heap selection + O(k log k) sort; top-p then
 *   walks the k sorted candidates.
 * - top-p without top-k: O(V · r + m log m), where r ≤ 6 threshold passes
 *   (keep tokens with prob ≥ pmax · 2^-3, 2^-6, … until their mass reaches
 *   topP) and m is the number of tokens above the final threshold, typically
 *   tens to hundreds; only a near-flat distribution degrades to O(V log V).
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

const TWO_POW_32 = 4294967296;

/** murmur3 finaliser: spreads seed bits over the whole 32-bit word. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Deterministic xoshiro128** generator. */
export class Rng {
  #s0: number;
  #s1: number;
  #s2: number;
  #s3: number;

  /** Any integer-valued number (negative, or beyond 2^32, is fine); the low and high 32-bit words both feed the state. */
  constructor(seed: number) {
    if (!Number.isInteger(seed)) throw new RangeError(`seed must be an integer, got ${seed}`);
    const lo = ((seed % TWO_POW_32) + TWO_POW_32) % TWO_POW_32;
    const hi = ((Math.floor(seed / TWO_POW_32) % TWO_POW_32) + TWO_POW_32) % TWO_POW_32;
    const word = (i: number) => fmix32((lo + Math.imul(i, 0x9e3779b9)) ^ fmix32(hi ^ Math.imul(i, 0x7f4a7c15)));
    this.#s0 = word(1);
    this.#s1 = word(2);
    this.#s2 = word(3);
    this.#s3 = word(4);
    // xoshiro must never have an all-zero state.
    if ((this.#s0 | this.#s1 | this.#s2 | this.#s3) === 0) this.#s0 = 1;
  }

  /** Next uniformly distributed unsigned 32-bit integer. */
  nextUint32(): number {
    const s1 = this.#s1;
    const result = Math.imul(rotl(Math.imul(s1, 5), 7), 9) >>> 0;
    const t = s1 << 9;
    this.#s2 ^= this.#s0;
    this.#s3 ^= this.#s1;
    this.#s1 ^= this.#s2;
    this.#s0 ^= this.#s3;
    this.#s2 ^= t;
    this.#s3 = rotl(this.#s3, 11);
    return result;
  }

  /** Uniform double in [0, 1) with 53 random bits. */
  next(): number {
    const hi = this.nextUint32() >>> 5; // 27 bits
    const lo = this.nextUint32() >>> 6; // 26 bits
    return (hi * 67108864 + lo) / 9007199254740992;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}

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
export function logSoftmax(logits: Float32Array): Float32Array {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  const out = new Float32Array(logits.length);
  if (max === -Infinity || max === Infinity || Number.isNaN(max)) {
    out.fill(max === Infinity ? NaN : -Infinity);
    return out;
  }
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < logits.length; i++) out[i] = logits[i] - lse;
  return out;
}

/** The k highest log-probabilities, descending (ties → lower id first). */
export function topLogprobs(logprobs: Float32Array, k: number): { id: number; logprob: number }[] {
  return Array.from(topKIndices(logprobs, k), (id) => ({ id, logprob: logprobs[id] }));
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

/** Relative-probability thresholds tried by the top-p pass without top-k (see module doc). */
const NUCLEUS_THRESHOLDS = [2 ** -3, 2 ** -6, 2 ** -12, 2 ** -24, 2 ** -48, 0];

/**
 * Sorts candidate positions by weight descending (ties → lower id) and keeps
 * the shortest prefix whose mass reaches `target` (at least one).
 */
function nucleusCut(ids: ArrayLike<number>, weights: ArrayLike<number>, target: number, sorted: boolean): Candidates {
  let order = Array.from({ length: ids.length }, (_, j) => j);
  if (!sorted) order = order.sort((a, b) => weights[b] - weights[a] || ids[a] - ids[b]);
  let cum = 0;
  let keep = 0;
  while (keep < order.length) {
    cum += weights[order[keep++]];
    if (cum >= target) break;
  }
  order.length = keep;
  return { ids: Int32Array.from(order, (j) => ids[j]), weights: Float64Array.from(order, (j) => weights[j]), total: cum };
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
    return topP < 1 ? nucleusCut(ids, weights, topP * total, true) : { ids, weights, total };
  }

  let max = -Infinity;
  for (let i = 0; i < V; i++) if (adjusted[i] > max) max = adjusted[i];
  if (!Number.isFinite(max)) return greedy();
  const weights = new Float64Array(V);
  let total = 0;
  for (let i = 0; i < V; i++) {
    const w = Math.exp((adjusted[i] - max) * invT) || 0; // NaN logits get no mass
    weights[i] = w;
    total += w;
  }
  if (topP >= 1) return { ids: Int32Array.from({ length: V }, (_, i) => i), weights, total };

  // Top-p without top-k: collect tokens above a shrinking threshold until
  // they hold enough mass; the nucleus is then a prefix of them.
  const target = topP * total;
  const picked = new Int32Array(V);
  for (const threshold of NUCLEUS_THRESHOLDS) {
    let n = 0;
    let mass = 0;
    for (let i = 0; i < V; i++) {
      const w = weights[i];
      if (w > 0 && w >= threshold) {
        picked[n++] = i;
        mass += w;
      }
    }
    if (mass >= target || threshold === 0) {
      const ids = picked.subarray(0, n);
      return nucleusCut(ids, Float64Array.from(ids, (i) => weights[i]), target, false);
    }
  }
  throw new Error("unreachable: the last threshold keeps every token");
}

/**
 * Picks the next token. Temperature 0 is greedy (ties → lowest id) and does
 * not consume the rng; otherwise exactly one `rng.next()` is drawn per call,
 * so a seeded stream stays aligned regardless of filtering. Penalties apply
 * in both modes.
 */
export function sampleToken(logits: Float32Array, params: SamplingParams, rng: Rng, history?: TokenHistory): number {
  const dist = samplingDistribution(logits, params, history);
  if (params.temperature === 0) return dist.ids[0];
  let u = rng.next() * dist.total;
  for (let i = 0; i < dist.ids.length; i++) {
    u -= dist.weights[i];
    if (u < 0 && dist.weights[i] > 0) return dist.ids[i];
  }
  // Rounding left u marginally ≥ 0: fall back to the last token with mass.
  for (let i = dist.ids.length - 1; i >= 0; i--) if (dist.weights[i] > 0) return dist.ids[i];
  return dist.ids[0];
}
