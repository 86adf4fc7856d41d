import assert from "node:assert/strict";
import {
  logSumExp,
  Rng,
  sampleToken,
  samplingDistribution,
  type SamplingParams,
  topKIndices,
} from "../src/serve/sampler.ts";
import { rawLogprob } from "../src/serve/sequence.ts";
import { logSoftmax } from "./helpers/log_softmax.ts";

const params = (p: Partial<SamplingParams>): SamplingParams => ({ temperature: 1, topP: 1, topK: 0, ...p });
const logitsOf = (probs: number[]) => Float32Array.from(probs, Math.log);

/** Samples n tokens and returns per-token counts. */
function histogram(logits: Float32Array, p: SamplingParams, n: number, seed: number): number[] {
  const rng = new Rng(seed);
  const counts = new Array<number>(logits.length).fill(0);
  for (let i = 0; i < n; i++) counts[sampleToken(logits, p, rng)]++;
  return counts;
}

/** Pearson chi-square of observed counts against expected probabilities. */
function chiSquare(counts: number[], probs: number[]): number {
  const n = counts.reduce((a, b) => a + b, 0);
  return counts.reduce(
    (s, c, i) => (probs[i] === 0 ? (c === 0 ? s : Infinity) : s + (c - n * probs[i]) ** 2 / (n * probs[i])),
    0,
  );
}

const normalise = (xs: number[]) => xs.map((x) => x / xs.reduce((a, b) => a + b, 0));
// Chi-square critical values at p = 0.001.
const CHI2_CRIT = { 1: 10.83, 2: 13.82, 3: 16.27 } as const;

Deno.test("Rng: deterministic, seed-sensitive (including beyond 2^32), uniform in [0, 1)", () => {
  const seq = (seed: number) => Array.from({ length: 8 }, ((r) => () => r.nextFloat())(new Rng(seed)));
  assert.deepEqual(seq(42), seq(42));
  assert.notDeepEqual(seq(42), seq(43));
  assert.notDeepEqual(seq(0), seq(2 ** 32)); // high word matters
  assert.notDeepEqual(seq(1), seq(2 ** 40 + 1));
  assert.notDeepEqual(seq(-1), seq(2 ** 32 - 1));
  assert.deepEqual(seq(Number.MAX_SAFE_INTEGER), seq(Number.MAX_SAFE_INTEGER));
  assert.throws(() => new Rng(1.5), RangeError);
  const r = new Rng(7);
  const bins = new Array<number>(10).fill(0);
  for (let i = 0; i < 100000; i++) {
    const x = r.nextFloat();
    assert.ok(x >= 0 && x < 1);
    bins[Math.floor(x * 10)]++;
  }
  assert.ok(chiSquare(bins, new Array(10).fill(0.1)) < 27.88); // df 9, p = 0.001
});

Deno.test("greedy: temperature 0 takes the argmax, ties → lowest id, rng untouched", () => {
  const rng = new Rng(1);
  assert.equal(sampleToken(Float32Array.of(0.1, 3, -2, 3, 2.9), params({ temperature: 0 }), rng), 1);
  assert.equal(sampleToken(Float32Array.of(-Infinity, -5, NaN, -4), params({ temperature: 0 }), rng), 3);
  assert.equal(rng.nextFloat(), new Rng(1).nextFloat());
});

Deno.test("reproducibility: same seed → same tokens; another seed differs", () => {
  const r = new Rng(99);
  const logits = Float32Array.from({ length: 1000 }, () => r.nextFloat() * 4);
  const run = (seed: number) => {
    const rng = new Rng(seed);
    return Array.from(
      { length: 200 },
      () => sampleToken(logits, params({ temperature: 0.8, topP: 0.95, topK: 100 }), rng),
    );
  };
  assert.deepEqual(run(2 ** 33 + 5), run(2 ** 33 + 5));
  assert.notDeepEqual(run(1), run(2));
});

Deno.test("distribution: samples follow softmax(logits / T) (chi-square, p = 0.001)", () => {
  const probs = [0.4, 0.3, 0.2, 0.1];
  const n = 20000;
  const t1 = histogram(logitsOf(probs), params({}), n, 123);
  assert.ok(chiSquare(t1, probs) < CHI2_CRIT[3], `T=1 chi2 ${chiSquare(t1, probs)}`);
  // The test has power: the same counts are far from a wrong distribution.
  assert.ok(chiSquare(t1, [0.25, 0.25, 0.25, 0.25]) > 10 * CHI2_CRIT[3]);

  const tempered = normalise(probs.map((p) => p ** (1 / 2)));
  const t2 = histogram(logitsOf(probs), params({ temperature: 2 }), n, 456);
  assert.ok(chiSquare(t2, tempered) < CHI2_CRIT[3], `T=2 chi2 ${chiSquare(t2, tempered)}`);
  assert.ok(chiSquare(t2, probs) > 10 * CHI2_CRIT[3]);
});

Deno.test("top-k and top-p renormalise over the kept tokens", () => {
  const probs = [0.05, 0.5, 0.15, 0.3];
  const n = 20000;
  const k2 = histogram(logitsOf(probs), params({ topK: 2 }), n, 7);
  const k2Want = [0, 0.5 / 0.8, 0, 0.3 / 0.8];
  assert.ok(chiSquare(k2, k2Want) < CHI2_CRIT[1], `top-k chi2 ${chiSquare(k2, k2Want)}`);
  // top-p 0.85: 0.5 + 0.3 = 0.8 < 0.85, so 0.15 is needed too; 0.05 is cut.
  const p85 = histogram(logitsOf(probs), params({ topP: 0.85 }), n, 8);
  const p85Want = [0, 0.5 / 0.95, 0.15 / 0.95, 0.3 / 0.95];
  assert.ok(chiSquare(p85, p85Want) < CHI2_CRIT[2], `top-p chi2 ${chiSquare(p85, p85Want)}`);
  // Both: top-k 3 then top-p over the renormalised three (0.5/0.95 ≥ 0.5).
  const d = samplingDistribution(logitsOf(probs), params({ topK: 3, topP: 0.5 }));
  assert.deepEqual(Array.from(d.ids), [1]);
});

Deno.test("top-k = 1 and tiny top-p both equal greedy", () => {
  const r = new Rng(5);
  for (let trial = 0; trial < 200; trial++) {
    // Coarse values so ties happen; ties must resolve to the lowest id.
    const logits = Float32Array.from({ length: 50 }, () => Math.floor(r.nextFloat() * 8));
    const greedy = sampleToken(logits, params({ temperature: 0 }), r);
    assert.equal(sampleToken(logits, params({ temperature: 1.3, topK: 1 }), r), greedy);
    assert.equal(sampleToken(logits, params({ temperature: 1.3, topP: 1e-9 }), r), greedy);
    assert.equal(sampleToken(logits, params({ temperature: 1.3, topP: 0 }), r), greedy);
  }
});

Deno.test("penalties: OpenAI presence/frequency and HF repetition change the choice", () => {
  const greedy = (logits: number[], p: Partial<SamplingParams>, counts: [number, number][]) =>
    sampleToken(Float32Array.from(logits), params({ temperature: 0, ...p }), new Rng(0), { counts: new Map(counts) });
  const l = [2.0, 1.9, 0];
  assert.equal(greedy(l, {}, [[0, 5]]), 0); // no penalty configured
  assert.equal(greedy(l, { frequencyPenalty: 0.05 }, [[0, 1]]), 0); // 1.95 > 1.9
  assert.equal(greedy(l, { frequencyPenalty: 0.05 }, [[0, 3]]), 1); // 1.85 < 1.9
  assert.equal(greedy(l, { presencePenalty: 0.2 }, [[0, 1]]), 1); // 1.8 < 1.9
  assert.equal(greedy(l, { presencePenalty: 0.05 }, [[0, 9]]), 0); // presence ignores count
  assert.equal(greedy(l, { presencePenalty: 0.2 }, [[0, 0]]), 0); // count 0 = absent
  assert.equal(greedy(l, { presencePenalty: -1 }, [[2, 1]]), 0); // negative encourages: 0 + 1 < 2
  assert.equal(greedy(l, { presencePenalty: -3 }, [[2, 1]]), 2);
  assert.equal(greedy(l, { repetitionPenalty: 1.1 }, [[0, 1]]), 1); // 2 / 1.1 = 1.82
  assert.equal(greedy([-1, -1.05], { repetitionPenalty: 1.1 }, [[0, 1]]), 1); // -1 · 1.1 = -1.1
  // Sampling mode: a big frequency penalty removes the token's mass entirely.
  const logits = logitsOf([0.5, 0.5]);
  const counts = histogram(logits, params({}), 100, 1);
  assert.ok(counts[0] > 20 && counts[1] > 20);
  const rng = new Rng(1);
  for (let i = 0; i < 100; i++) {
    assert.equal(sampleToken(logits, params({ frequencyPenalty: 50 }), rng, { counts: new Map([[0, 1]]) }), 1);
  }
  // The caller's logits are never mutated.
  const input = Float32Array.of(2, 1);
  sampleToken(input, params({ frequencyPenalty: 1, temperature: 0 }), rng, { counts: new Map([[0, 1]]) });
  assert.deepEqual(Array.from(input), [2, 1]);
});

/** Full-sort reference of the filtered distribution, for comparison on a big vocab. */
function naiveDistribution(logits: Float32Array, p: SamplingParams): Map<number, number> {
  const ids = Array.from(logits.keys()).sort((a, b) => logits[b] - logits[a] || a - b);
  const kept = p.topK > 0 ? ids.slice(0, p.topK) : ids;
  const w = kept.map((id) => Math.exp((logits[id] - logits[kept[0]]) / p.temperature));
  const total = w.reduce((a, b) => a + b, 0);
  let cum = 0;
  let n = 0;
  while (n < kept.length) {
    cum += w[n++] / total;
    if (cum >= p.topP) break;
  }
  const mass = w.slice(0, n).reduce((a, b) => a + b, 0);
  return new Map(kept.slice(0, n).map((id, i) => [id, w[i] / mass]));
}

Deno.test("150k vocab: filtered distributions equal a full-sort reference", () => {
  const V = 151936;
  const r = new Rng(2024);
  // Gaussian-ish logits with a few strong peaks, like a real LM head.
  const logits = Float32Array.from({ length: V }, () => (r.nextFloat() + r.nextFloat() + r.nextFloat() - 1.5) * 4);
  for (let i = 0; i < 20; i++) logits[Math.floor(r.nextFloat() * V)] += 8 + r.nextFloat() * 4;
  const cases: SamplingParams[] = [
    params({ temperature: 0.7, topK: 50 }),
    params({ temperature: 1, topP: 0.9 }),
    params({ temperature: 0.6, topP: 0.5 }),
    params({ temperature: 1.5, topP: 0.99 }),
    params({ temperature: 1, topK: 1000, topP: 0.8 }),
    params({ temperature: 3, topP: 0.3 }), // flatter: more threshold passes
  ];
  for (const p of cases) {
    const got = samplingDistribution(logits, p);
    const want = naiveDistribution(logits, p);
    assert.equal(got.ids.length, want.size, JSON.stringify(p));
    got.ids.forEach((id, i) => {
      const prob = want.get(id);
      assert.ok(prob !== undefined, `${JSON.stringify(p)}: unexpected id ${id}`);
      assert.ok(Math.abs(got.weights[i] / got.total - prob) < 1e-9);
    });
  }
  // No filter: full vocab, normalised.
  const all = samplingDistribution(logits, params({}));
  assert.equal(all.ids.length, V);
});

Deno.test("top-p ties are cut lowest id first; masked tokens never survive", () => {
  const flat = new Float32Array(10);
  assert.deepEqual(Array.from(samplingDistribution(flat, params({ topP: 0.35 })).ids), [0, 1, 2, 3]);
  assert.deepEqual(Array.from(samplingDistribution(flat, params({ topP: 0.3 })).ids), [0, 1, 2]);
  const bigFlat = new Float32Array(151936);
  const d = samplingDistribution(bigFlat, params({ topP: 0.5 }));
  assert.equal(d.ids.length, 151936 / 2);
  assert.equal(d.ids[d.ids.length - 1], 151936 / 2 - 1);
  // Two tied leaders with masked and NaN tokens around them.
  const masked = Float32Array.of(-Infinity, 1, NaN, 1, -Infinity, 0);
  assert.deepEqual(Array.from(samplingDistribution(masked, params({ topP: 0.4 })).ids), [1]);
  assert.deepEqual(Array.from(samplingDistribution(masked, params({ topP: 0.99 })).ids), [1, 3, 5]);
  const rng = new Rng(4);
  for (let i = 0; i < 500; i++) {
    const tok = sampleToken(masked, params({ temperature: 5 }), rng);
    assert.ok(tok === 1 || tok === 3 || tok === 5, `sampled masked token ${tok}`);
  }
});

Deno.test("150k vocab: sampling cost (informational)", () => {
  const V = 151936;
  const r = new Rng(1);
  const logits = Float32Array.from({ length: V }, () => (r.nextFloat() + r.nextFloat() + r.nextFloat() - 1.5) * 4);
  for (let i = 0; i < 20; i++) logits[Math.floor(r.nextFloat() * V)] += 10;
  const rng = new Rng(3);
  const lines: string[] = [];
  for (
    const [name, p] of Object.entries({
      greedy: params({ temperature: 0 }),
      plain: params({}),
      "top-k 50": params({ topK: 50 }),
      "top-p 0.9": params({ topP: 0.9 }),
      "top-k 50 + top-p 0.9 + penalties": params({ topK: 50, topP: 0.9, frequencyPenalty: 0.5, presencePenalty: 0.5 }),
    })
  ) {
    const history = { counts: new Map(Array.from({ length: 100 }, (_, i) => [i * 7, 1] as [number, number])) };
    const n = 50;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) sampleToken(logits, p, rng, history);
    lines.push(`${name}: ${((performance.now() - t0) / n).toFixed(2)} ms/token`);
  }
  console.log(lines.join("\n"));
});

Deno.test("logSumExp is stable and normalised", () => {
  const logProbs = (x: Float32Array) => Array.from(x, (v) => v - logSumExp(x));
  const lp = logProbs(Float32Array.of(1000, 1001, 999, -Infinity));
  assert.ok(lp.slice(0, 3).every(Number.isFinite));
  assert.equal(lp[3], -Infinity);
  const sum = Array.from(lp).reduce((s, x) => s + Math.exp(x), 0);
  assert.ok(Math.abs(sum - 1) < 1e-6);
  assert.ok(Math.abs(lp[1] - lp[0] - 1) < 1e-4);
  const small = logProbs(Float32Array.of(Math.log(0.2), Math.log(0.8)));
  assert.ok(Math.abs(small[0] - Math.log(0.2)) < 1e-6 && Math.abs(small[1] - Math.log(0.8)) < 1e-6);
});

Deno.test("topKIndices: descending, ties → lower id, k clamped", () => {
  const lp = Float32Array.of(-3, -1, -2, -1, NaN, -0.5);
  assert.deepEqual(Array.from(topKIndices(lp, 3)), [5, 1, 3]);
  assert.equal(topKIndices(lp, 0).length, 0);
  assert.deepEqual(Array.from(topKIndices(lp, 99)), [5, 1, 3, 2, 0, 4]);
  const r = new Rng(11);
  const big = Float32Array.from({ length: 5000 }, () => Math.floor(r.nextFloat() * 100));
  const want = Array.from(big.keys()).sort((a, b) => big[b] - big[a] || a - b).slice(0, 40);
  assert.deepEqual(Array.from(topKIndices(big, 40)), want);
});

Deno.test("rawLogprob equals the materialised log-softmax; degenerate logits", () => {
  const r = new Rng(5);
  const logits = Float32Array.from({ length: 3000 }, () => 20 * r.nextFloat() - 10);
  const lp = logSoftmax(logits);
  const raw = rawLogprob(logits, 17, 4);
  assert.ok(Math.abs(raw.logprob - lp[17]) < 1e-5);
  assert.deepEqual(raw.top.map((t) => t.id), Array.from(topKIndices(lp, 4)));
  raw.top.forEach((t) => assert.ok(Math.abs(t.logprob - lp[t.id]) < 1e-5));
  assert.deepEqual(rawLogprob(logits, 3, 0).top, []);
  const ties = rawLogprob(Float32Array.of(2, 5, 5, 1), 2, 2);
  assert.deepEqual(ties.top.map((t) => t.id), [1, 2]);
  assert.equal(ties.top[0].logprob, ties.logprob);
  assert.equal(rawLogprob(Float32Array.of(-Infinity, -Infinity), 0, 1).logprob, -Infinity);
  assert.ok(Number.isNaN(rawLogprob(Float32Array.of(1, NaN), 0, 0).logprob), "NaN logits are reported, not hidden");
  assert.ok(Number.isNaN(rawLogprob(Float32Array.of(1, Infinity), 0, 0).logprob));
});

Deno.test("invalid parameters are rejected", () => {
  const l = Float32Array.of(1, 2);
  assert.throws(() => sampleToken(l, params({ temperature: -1 }), new Rng(0)), RangeError);
  assert.throws(() => sampleToken(l, params({ temperature: NaN }), new Rng(0)), RangeError);
  assert.throws(() => sampleToken(l, params({ repetitionPenalty: 0 }), new Rng(0)), RangeError);
});
