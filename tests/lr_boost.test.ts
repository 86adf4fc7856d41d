/**
 * ScaLoRA's learning-rate boost (src/train/lr_boost.ts): the sign test against the window BOOST_LAG windows back,
 * the cap and the floor, the cap by the run's relative step, invariance to the loss's scale and offset, the drift
 * threshold P = 2/3, a slow trend under noise, non-finite losses, and the state check (with the conversion of older
 * checkpoints) used on resume.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import {
  BOOST_GROWTH,
  BOOST_LAG,
  boostCap,
  type BoostState,
  closeWindow,
  initialBoost,
  MAX_RELATIVE_STEP,
  recordLoss,
  storedBoost,
} from "../src/train/lr_boost.ts";

/** ω after each window of `windows` (each a list of step losses), closed at the next window's start. */
function omegas(windows: number[][], max = 2): number[] {
  let s = initialBoost();
  const out: number[] = [];
  for (const losses of windows) {
    for (const l of losses) s = recordLoss(s, l);
    s = closeWindow(s, max);
    out.push(s.omega);
  }
  return out;
}

/** Window means whose comparison with the one BOOST_LAG back falls (true) or rises (false) as `pattern` says. */
function compared(pattern: boolean[], n: number): number[][] {
  const means: number[] = Array(BOOST_LAG).fill(100);
  for (let i = BOOST_LAG; i < n; i++) means.push(means[i - BOOST_LAG] + (pattern[i % pattern.length] ? -1 : 0.5));
  return means.map((m) => [m]);
}

/** A deterministic pseudo-random number in [−0.5, 0.5) per index. */
const noise = (i: number) => {
  const x = Math.sin(i * 12.9898 + 78.233) * 43758.5453;
  return x - Math.floor(x) - 0.5;
};

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

Deno.test("lr boost: the first BOOST_LAG windows set the reference; falling loss grows ω by g up to the cap", () => {
  const w = omegas(Array.from({ length: BOOST_LAG + 12 }, (_, i) => [50 - i, 49.5 - i]));
  assert.ok(w.slice(0, BOOST_LAG).every((x) => x === 1), "nothing to compare with yet");
  assert.ok(close(w[BOOST_LAG], BOOST_GROWTH) && close(w[BOOST_LAG + 1], BOOST_GROWTH ** 2));
  assert.equal(w.at(-1), 2, "capped");
  assert.ok(w.every((x, i) => i === 0 || x >= w[i - 1]));
});

Deno.test("lr boost: a rise against BOOST_LAG windows back divides ω by g², never below 1; a cap of 1 keeps it off", () => {
  const falling = Array.from({ length: BOOST_LAG + 3 }, (_, i) => [100 - i]);
  const w = omegas([...falling, [200], [200], [200]]);
  const k = BOOST_LAG + 2;
  assert.ok(close(w[k], BOOST_GROWTH ** 3));
  assert.ok(close(w[k + 1], BOOST_GROWTH));
  assert.equal(w[k + 2], 1);
  assert.equal(w[k + 3], 1);
  assert.ok(omegas(falling, 1).every((x) => x === 1));
  assert.throws(() => closeWindow(recordLoss(initialBoost(), 1), 0.5), RangeError);
});

Deno.test("lr boost: invariant to the loss's scale and offset (only compares losses)", () => {
  const losses = Array.from({ length: 60 }, (_, i) => [3 - 0.02 * i + noise(i), 2.9 - 0.02 * i + noise(i + 100)]);
  const base = omegas(losses);
  assert.ok(base.some((x) => x > 1) && base.some((x, i) => i > 0 && x < base[i - 1]), "the sequence moves ω both ways");
  for (const [c, d] of [[10, 0], [1e-3, 0], [1, 100], [7, -1]]) {
    assert.deepEqual(omegas(losses.map((xs) => xs.map((x) => c * x + d))), base, `scale ${c}, offset ${d}`);
  }
});

Deno.test("lr boost: grows only where the loss is below BOOST_LAG windows back in more than 2/3 of the windows", () => {
  const half = omegas(compared([true, false], 80));
  const twoThirds = omegas(compared([true, true, false], 80));
  const threeQuarters = omegas(compared([true, true, true, false], 80), 4);
  assert.ok(Math.max(...half) <= BOOST_GROWTH + 1e-12, "P = 1/2: stays at the user's lr");
  assert.ok(Math.max(...twoThirds) <= BOOST_GROWTH ** 2 + 1e-9, "P = 2/3: no drift");
  assert.ok(threeQuarters.at(-1)! > 2, "P = 3/4: climbs");
});

Deno.test("lr boost: a slow trend under noise climbs to the cap; noise without a trend stays near the user's lr", () => {
  // Per window the trend (0.1) is below the noise (±0.3, period 3): against the window just before, the loss
  // falls in only 1/3 of the windows. Against BOOST_LAG windows back the trend is 1 and always wins.
  const wiggle = [0.3, -0.3, 0];
  const trend = omegas(Array.from({ length: 60 }, (_, i) => [10 - 0.1 * i + wiggle[i % 3]]));
  assert.equal(trend.at(-1), 2);
  const flat = omegas(Array.from({ length: 400 }, (_, i) => [10 + noise(i)]));
  const mean = flat.reduce((a, b) => a + b, 0) / flat.length;
  assert.ok(mean < 1.2, `a plateau keeps ω near 1 (mean ${mean})`);
});

Deno.test("lr boost: on only up to MAX_RELATIVE_STEP, the relative step η / RMS(B at init); off above", () => {
  assert.equal(boostCap(2, 0), 2, "lr 0 (or no adapter)");
  assert.equal(boostCap(2, 0.03), 2);
  assert.equal(boostCap(3, MAX_RELATIVE_STEP), 3, "the boundary keeps the boost");
  assert.equal(boostCap(2, MAX_RELATIVE_STEP * 1.0001), 1);
  assert.equal(boostCap(2, 0.6), 1);
  assert.equal(boostCap(1, 0.01), 1, "a cap of 1 stays off");
  // Dimensionless: the same lr and init scaled together (e.g. a wider layer's smaller init and lr) keep the cap.
  for (const [lr, rms] of [[3e-3, 0.072], [3e-4, 0.0072], [1e-2, 0.051], [1e-3, 0.0051]]) {
    assert.equal(boostCap(2, lr / rms), boostCap(2, (lr * 7) / (rms * 7)));
  }
  assert.equal(boostCap(2, Infinity), 1, "a zero init: off");
  for (const bad of [-1, NaN]) assert.throws(() => boostCap(2, bad), RangeError, `ρ ${bad}`);
  assert.throws(() => boostCap(0.5, 0.01), RangeError);
});

Deno.test("lr boost: a non-finite loss counts as a rise and clears the history", () => {
  let s: BoostState = initialBoost();
  for (let i = 0; i < BOOST_LAG + 3; i++) s = closeWindow(recordLoss(s, 100 - i), 2);
  const grown = s.omega;
  assert.ok(grown > 1);
  s = closeWindow(recordLoss(s, NaN), 2);
  assert.ok(close(s.omega, Math.max(1, grown / BOOST_GROWTH ** 2)));
  assert.deepEqual(s.history, []);
  let after = s;
  for (let i = 0; i < BOOST_LAG; i++) after = closeWindow(recordLoss(after, 50 - i), 2);
  assert.equal(after.omega, s.omega, "nothing to compare with for BOOST_LAG windows");
  assert.equal(closeWindow(initialBoost(), 2).omega, 1, "an empty window changes nothing");
});

Deno.test("lr boost: the state check refuses what a checkpoint must not restore and converts older states", () => {
  assert.deepEqual(storedBoost(initialBoost()), initialBoost());
  const current = { omega: 1.5, history: [3, 2.5], sum: 3, count: 2 };
  assert.deepEqual(storedBoost(current), current);
  // Written before the lag: the last interval's mean becomes the history.
  assert.deepEqual(storedBoost({ omega: 1.5, previous: 2.5, sum: 3, count: 2 }), {
    omega: 1.5,
    history: [2.5],
    sum: 3,
    count: 2,
  });
  assert.deepEqual(storedBoost({ omega: 1, previous: null, sum: 0, count: 0 }), initialBoost());
  for (
    const bad of [
      null,
      {},
      { omega: 0.5, history: [], sum: 0, count: 0 },
      { omega: NaN, history: [], sum: 0, count: 0 },
      { omega: 1, previous: "x", sum: 0, count: 0 },
      { omega: 1, history: [], sum: 0, count: 1.5 },
      { omega: 1, history: [1, NaN], sum: 0, count: 0 },
      { omega: 1, history: Array(BOOST_LAG + 1).fill(1), sum: 0, count: 0 },
    ]
  ) {
    assert.equal(storedBoost(bad), null, JSON.stringify(bad));
  }
});
