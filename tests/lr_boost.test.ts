/**
 * ScaLoRA's learning-rate boost (src/train/lr_boost.ts): the sign test against the previous interval, the cap and
 * the floor, invariance to the loss's scale and offset, the drift threshold P = 2/3, non-finite losses, and the
 * state check used on resume.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import {
  BOOST_GROWTH,
  type BoostState,
  closeInterval,
  initialBoost,
  isBoostState,
  recordLoss,
} from "../src/train/lr_boost.ts";

/** ω after each interval of `intervals` (each a list of step losses), closed at the next event. */
function omegas(intervals: number[][], max = 2): number[] {
  let s = initialBoost();
  const out: number[] = [];
  for (const losses of intervals) {
    for (const l of losses) s = recordLoss(s, l);
    s = closeInterval(s, max);
    out.push(s.omega);
  }
  return out;
}

const close = (a: number, b: number) => Math.abs(a - b) < 1e-12;

Deno.test("lr boost: the first interval sets the reference; falling loss grows ω by g up to the cap", () => {
  const w = omegas([[5, 4], [4, 3], [3, 2], [2, 1.5], [1.5, 1.2], [1.2, 1.1], [1.1, 1], [1, 0.9], [0.9, 0.8]]);
  assert.equal(w[0], 1, "nothing to compare with yet");
  assert.ok(close(w[1], BOOST_GROWTH) && close(w[2], BOOST_GROWTH ** 2));
  assert.equal(w.at(-1), 2, "capped");
  assert.ok(w.every((x, i) => i === 0 || x >= w[i - 1]));
});

Deno.test("lr boost: a rise divides ω by g², never below 1; a cap of 1 keeps it off", () => {
  const w = omegas([[4], [3], [2], [1], [1.5], [2], [3]]);
  assert.ok(close(w[3], BOOST_GROWTH ** 3));
  assert.ok(close(w[4], BOOST_GROWTH));
  assert.equal(w[5], 1);
  assert.equal(w[6], 1);
  assert.deepEqual(omegas([[4], [3], [2], [1]], 1), [1, 1, 1, 1]);
  assert.throws(() => closeInterval(recordLoss(initialBoost(), 1), 0.5), RangeError);
});

Deno.test("lr boost: invariant to the loss's scale and offset (only compares losses)", () => {
  const losses = [[3, 2.9], [2.95, 2.7], [2.8, 2.9], [2.6, 2.5], [2.55, 2.6], [2.4, 2.3], [2.35, 2.5], [2.2, 2.1]];
  const base = omegas(losses);
  for (const [c, d] of [[10, 0], [1e-3, 0], [1, 100], [7, -1]]) {
    assert.deepEqual(omegas(losses.map((xs) => xs.map((x) => c * x + d))), base, `scale ${c}, offset ${d}`);
  }
});

Deno.test("lr boost: grows only where the loss falls in more than 2/3 of the intervals", () => {
  // A falling trend with noise: the loss falls in the share P of the intervals.
  const trend = (pattern: boolean[], n: number) => {
    let level = 100;
    return Array.from({ length: n }, (_, i) => [level += pattern[i % pattern.length] ? -1 : 0.5]);
  };
  const half = omegas(trend([true, false], 60));
  const twoThirds = omegas(trend([true, true, false], 60));
  const threeQuarters = omegas(trend([true, true, true, false], 60), 4);
  assert.ok(Math.max(...half) <= BOOST_GROWTH + 1e-12, "P = 1/2: stays at the user's lr");
  assert.ok(Math.max(...twoThirds) <= BOOST_GROWTH ** 2 + 1e-9, "P = 2/3: no drift");
  assert.ok(threeQuarters.at(-1)! > 2, "P = 3/4: climbs");
});

Deno.test("lr boost: a non-finite loss counts as a rise and leaves no reference", () => {
  let s: BoostState = initialBoost();
  for (const l of [3, 2, 1]) s = closeInterval(recordLoss(s, l), 2);
  const grown = s.omega;
  s = closeInterval(recordLoss(s, NaN), 2);
  assert.ok(close(s.omega, Math.max(1, grown / BOOST_GROWTH ** 2)));
  assert.equal(s.previous, null);
  const after = closeInterval(recordLoss(s, 50), 2);
  assert.equal(after.omega, s.omega, "nothing to compare with");
  assert.equal(closeInterval(initialBoost(), 2).omega, 1, "an empty interval changes nothing");
});

Deno.test("lr boost: the state check refuses what a checkpoint must not restore", () => {
  assert.ok(isBoostState(initialBoost()));
  assert.ok(isBoostState({ omega: 1.5, previous: 2.5, sum: 3, count: 2 }));
  for (
    const bad of [null, {}, { omega: 0.5, previous: null, sum: 0, count: 0 }, {
      omega: NaN,
      previous: null,
      sum: 0,
      count: 0,
    }, {
      omega: 1,
      previous: "x",
      sum: 0,
      count: 0,
    }, { omega: 1, previous: null, sum: 0, count: 1.5 }]
  ) {
    assert.equal(isBoostState(bad), false, JSON.stringify(bad));
  }
});
