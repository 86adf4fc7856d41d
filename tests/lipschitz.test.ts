/**
 * The default L rule (src/train/lipschitz.ts) at the level the trainer uses
 * it: gradients g_A = s·G·B, g_B = s·Gᵀ·A → Grams (P = g_A, Q = g_B, as the
 * kernel takes them) → host solve → Lηs² → α, β → the rescaled factors
 * Ã = A·diag(α), B̃ = B·diag(β) and the merged part s·A·diag(1 − α∘β)·Bᵀ,
 * all in float64. Invariances: the loss scale (G → c·G), the gradient scale
 * the trainer hands over (accumulated sums, clipping), how each column's
 * magnitude is split between A and B (a_k → c_k·a_k, b_k → b_k / c_k: the
 * same W_eff), and s; the learning rate does not enter; an event keeps the
 * share γ = q^I of Σ_k‖a_k‖‖b_k‖. Edge cases: zero gradients, boundary
 * solutions (one side merged fully), free columns. The size-based forms
 * (stepScale, factorScale) are checked for their targets too.
 */
import assert from "node:assert/strict";
import type { ScalingGrams } from "../kernels/scaling_grams.ts";
import { Rng } from "../src/model/rng.ts";
import { appliedScales, DEFAULT_KEEP, keptShare, lEtaS2, type LipschitzRule } from "../src/train/lipschitz.ts";
import { columnScales, solveScaling } from "../src/train/scalora.ts";

interface Layer {
  m: number;
  n: number;
  r: number;
  s: number;
  A: Float64Array;
  B: Float64Array;
  G: Float64Array;
}

/** X (p x q) · Y (q x t), or with the first operand transposed (X is q x p). */
function mul(X: Float64Array, Y: Float64Array, p: number, q: number, t: number, transX = false): Float64Array {
  const out = new Float64Array(p * t);
  for (let i = 0; i < p; i++) {
    for (let k = 0; k < q; k++) {
      const x = transX ? X[k * p + i] : X[i * q + k];
      for (let j = 0; j < t; j++) out[i * t + j] += x * Y[k * t + j];
    }
  }
  return out;
}

function layer(seed: number, opts: Partial<Layer> = {}): Layer {
  const rng = new Rng(seed, "lipschitz-test");
  const m = opts.m ?? 14, n = opts.n ?? 11, r = opts.r ?? 3;
  const rand = (k: number, std: number) => Float64Array.from({ length: k }, () => std * rng.normal());
  return {
    m,
    n,
    r,
    s: opts.s ?? 2,
    A: opts.A ?? rand(m * r, 0.03),
    B: opts.B ?? rand(n * r, 0.1),
    G: opts.G ?? rand(m * n, 1e-2),
  };
}

/** The trainer's view: gradients (times `gradScale`, e.g. an accumulated sum) → Grams. */
function gramsOf(l: Layer, gradScale = 1): ScalingGrams {
  const { m, n, r, s, A, B, G } = l;
  const gA = mul(G, B, m, n, r).map((v) => v * s * gradScale);
  const gB = mul(G, A, n, m, r, true).map((v) => v * s * gradScale);
  return {
    r,
    AtA: mul(A, A, r, m, r, true),
    BtB: mul(B, B, r, n, r, true),
    PtP: mul(gA, gA, r, m, r, true),
    QtQ: mul(gB, gB, r, n, r, true),
    AtP: mul(A, gA, r, m, r, true),
  };
}

interface Rescaled {
  kind: string;
  alpha: Float64Array;
  beta: Float64Array;
  At: Float64Array;
  Bt: Float64Array;
  /** s·A·diag(1 − α∘β)·Bᵀ, m x n. */
  merged: Float64Array;
  product: number;
}

function rescale(
  l: Layer,
  opts: { lr?: number; baseLr?: number; gradScale?: number; rule?: LipschitzRule; interval?: number } = {},
): Rescaled {
  const grams = gramsOf(l, opts.gradScale);
  const solution = solveScaling(grams);
  const spec = { name: "t", m: l.m, n: l.n, rank: l.r, scale: l.s };
  const product = lEtaS2(opts.rule ?? { kind: "auto" }, {
    spec,
    lr: opts.lr ?? 1e-3,
    baseLr: opts.baseLr ?? 1e-3,
    interval: opts.interval ?? 10,
    initRms: 1 / Math.sqrt(3 * l.n),
    solution,
    grams,
  });
  const { alpha, beta } = appliedScales(opts.rule ?? { kind: "auto" }, columnScales(solution, product));
  const At = l.A.map((v, i) => v * alpha[i % l.r]), Bt = l.B.map((v, i) => v * beta[i % l.r]);
  const D = l.A.map((v, i) => l.s * v * (1 - alpha[i % l.r] * beta[i % l.r]));
  const merged = new Float64Array(l.m * l.n);
  for (let i = 0; i < l.m; i++) {
    for (let j = 0; j < l.n; j++) {
      for (let k = 0; k < l.r; k++) merged[i * l.n + j] += D[i * l.r + k] * l.B[j * l.r + k];
    }
  }
  return { kind: solution.kind, alpha, beta, At, Bt, merged, product };
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, what: string, rtol = 1e-9) {
  assert.equal(a.length, b.length, what);
  let scale = 0;
  for (let i = 0; i < a.length; i++) scale = Math.max(scale, Math.abs(a[i]), Math.abs(b[i]));
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= rtol * scale + 1e-300, `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

function sameOutcome(x: Rescaled, y: Rescaled, what: string) {
  assert.equal(x.kind, y.kind, `${what}: solution kind`);
  close(x.At, y.At, `${what}: Ã`);
  close(x.Bt, y.Bt, `${what}: B̃`);
  close(x.merged, y.merged, `${what}: merged part`);
}

/** RMS of the rescaled factors over non-free columns: geometric mean of the A and B sides. */
function rms(x: Rescaled, l: Layer): number {
  const side = (v: Float64Array, rows: number) => Math.sqrt(v.reduce((s, t) => s + t * t, 0) / (rows * l.r));
  const a = side(x.At, l.m), b = side(x.Bt, l.n);
  return a > 0 && b > 0 ? Math.sqrt(a * b) : Math.max(a, b);
}

/** Share of Σ_k‖a_k‖‖b_k‖ the event keeps: Σ_k α_kβ_k‖a_k‖‖b_k‖ / Σ_k‖a_k‖‖b_k‖. */
function keptOf(x: Rescaled, l: Layer): number {
  let kept = 0, all = 0;
  for (let k = 0; k < l.r; k++) {
    const na = Math.hypot(...[...Array(l.m).keys()].map((i) => l.A[i * l.r + k]));
    const nb = Math.hypot(...[...Array(l.n).keys()].map((j) => l.B[j * l.r + k]));
    kept += x.alpha[k] * x.beta[k] * na * nb;
    all += na * nb;
  }
  return kept / all;
}

Deno.test("auto L: an event keeps q^I of the adapter's column magnitude, whatever the learning rate", () => {
  let columnwise = 0;
  for (let seed = 0; seed < 12; seed++) {
    const l = layer(seed);
    const a = rescale(l);
    if (a.kind !== "columnwise") continue;
    columnwise++;
    assert.ok(Math.abs(keptOf(a, l) - DEFAULT_KEEP ** 10) < 1e-12, `seed ${seed}: ${keptOf(a, l)}`);
    assert.ok(Math.abs(keptOf(rescale(l, { interval: 1 }), l) - DEFAULT_KEEP) < 1e-12);
    assert.ok(Math.abs(keptOf(rescale(l, { rule: { kind: "auto", keep: 0.9 }, interval: 3 }), l) - 0.729) < 1e-12);
    // Neither the scheduled nor the base learning rate enters.
    sameOutcome(a, rescale(l, { lr: 2e-5, baseLr: 0.3 }), `seed ${seed}, learning rate`);
    // The merge only moves magnitude: the solve's ratios (α_k/β_k, and between columns) are kept.
    const b = rescale(l, { rule: { kind: "fixed", L: 123 } });
    for (let k = 0; k < l.r; k++) {
      close([a.alpha[k] / a.beta[k]], [b.alpha[k] / b.beta[k]], "α/β as the solve says");
      close([a.alpha[k] / a.alpha[0]], [b.alpha[k] / b.alpha[0]], "α ratios as the solve says");
    }
  }
  assert.ok(columnwise >= 6, `only ${columnwise} column-wise problems`);
  assert.equal(keptShare({ kind: "auto" }, 10), DEFAULT_KEEP ** 10);
  assert.throws(() => keptShare({ kind: "auto", keep: 1.5 }));
});

Deno.test("auto L, size forms: stepScale sizes the factors to κ·η_base, factorScale to its init-relative target", () => {
  for (let seed = 0; seed < 6; seed++) {
    const l = layer(seed);
    const a = rescale(l, { rule: { kind: "auto", stepScale: 8 }, lr: 1e-4, baseLr: 2e-3 });
    if (a.kind !== "columnwise") continue;
    assert.ok(Math.abs(rms(a, l) - 8 * 2e-3) < 1e-12, `${rms(a, l)}`);
    const b = rescale(l, { rule: { kind: "auto", factorScale: 0.4 }, lr: 1e-4 });
    assert.ok(Math.abs(rms(b, l) - 0.4 / Math.sqrt(3 * l.n)) < 1e-12);
  }
});

Deno.test("auto L: invariant to the loss scale and to the gradient scale the trainer hands over", () => {
  for (let seed = 0; seed < 8; seed++) {
    const l = layer(seed);
    const base = rescale(l);
    for (const c of [1e-4, 0.37, 250, 1e5]) {
      sameOutcome(base, rescale({ ...l, G: l.G.map((v) => v * c) }), `seed ${seed}: loss x ${c}`);
      sameOutcome(base, rescale(l, { gradScale: c }), `seed ${seed}: gradients x ${c}`);
    }
  }
});

Deno.test("auto L: invariant to how each column's magnitude is split between A and B", () => {
  for (let seed = 0; seed < 8; seed++) {
    const l = layer(seed);
    const c = [0.05, 3, 40];
    const split = {
      ...l,
      A: l.A.map((v, i) => v * c[i % l.r]),
      B: l.B.map((v, i) => v / c[i % l.r]),
    };
    sameOutcome(rescale(l), rescale(split), `seed ${seed}`);
  }
});

Deno.test("auto L: invariant to s (α, β do not depend on the adapter scale)", () => {
  for (let seed = 0; seed < 8; seed++) {
    const l = layer(seed);
    const a = rescale(l), b = rescale({ ...l, s: 0.25 }), c = rescale({ ...l, s: 16 });
    for (const other of [b, c]) {
      assert.equal(a.kind, other.kind);
      close(a.alpha, other.alpha, `seed ${seed}: α`);
      close(a.beta, other.beta, `seed ${seed}: β`);
    }
  }
  // Stronger: (s, A, B) and (s·c², A/c, B/c) are the same W_eff, and the rescaled s·Ã·B̃ᵀ and merge are too.
  for (let seed = 0; seed < 4; seed++) {
    const l = layer(seed), c = 7;
    const a = rescale(l), b = rescale({ ...l, s: l.s * c * c, A: l.A.map((v) => v / c), B: l.B.map((v) => v / c) });
    close(a.merged, b.merged, `seed ${seed}: merged part`);
    close(a.At, b.At.map((v) => v * c), `seed ${seed}: Ã`);
    close(a.Bt, b.Bt.map((v) => v * c), `seed ${seed}: B̃`);
  }
  // The paper's fixed L is not invariant to s: Lηs² grows with s².
  const l = layer(0);
  const f1 = rescale(l, { rule: { kind: "fixed", L: 50 } }),
    f2 = rescale({ ...l, s: 4 }, { rule: { kind: "fixed", L: 50 } });
  assert.ok(Math.abs(f2.product / f1.product - 4) < 1e-12);
});

Deno.test("auto L edge cases: zero gradients leave the layer alone", () => {
  const l = layer(3);
  const z = rescale({ ...l, G: new Float64Array(l.m * l.n) });
  assert.equal(z.kind, "skipped");
  assert.ok(Number.isFinite(z.product) && z.product > 0);
  assert.ok([...z.alpha, ...z.beta].every((v) => v === 1));
  assert.ok(z.merged.every((v) => v === 0));
});

Deno.test("auto L edge cases: a boundary solution merges one side fully and sizes the other alone", () => {
  // r = 1 Grams given directly (as in scalora_solve.test.ts): H = [[q, c²], [c², p]], λ = [q, p];
  // c² > q makes x < 0, and the boundary rule picks the better of (0, y) and (x, 0).
  const m = 7, n = 5, a2 = 1, b2 = 1;
  const grams = (p: number, q: number, c: number): ScalingGrams => ({
    r: 1,
    AtA: Float64Array.of(a2),
    BtB: Float64Array.of(b2),
    PtP: Float64Array.of(p),
    QtQ: Float64Array.of(q),
    AtP: Float64Array.of(c),
  });
  const spec = { name: "t", m, n, rank: 1, scale: 2 };
  for (const [g, zeroSide] of [[grams(4, 1, Math.sqrt(1.5)), "A"], [grams(1, 4, Math.sqrt(1.5)), "B"]] as const) {
    const solution = solveScaling(g);
    assert.equal(solution.kind, "boundary");
    const product = lEtaS2({ kind: "auto" }, { spec, lr: 1e-3, interval: 10, initRms: 0.1, solution, grams: g });
    assert.ok(Number.isFinite(product) && product > 0);
    const { alpha, beta } = columnScales(solution, product);
    // α = 0: A·Bᵀ is merged fully and A restarts at zero; B keeps its size (β = 1 at r = 1), and vice versa.
    const [zero, kept] = zeroSide === "A" ? [alpha[0], beta[0]] : [beta[0], alpha[0]];
    assert.equal(zero, 0);
    assert.ok(Math.abs(kept - 1) < 1e-12, `${kept}`);
  }
});

Deno.test("auto L edge cases: free columns keep scale 1 and do not enter the kept share", () => {
  const l = layer(5, { r: 3 });
  for (let i = 0; i < l.m; i++) l.A[i * 3 + 2] = 0; // column 2 of A is zero: its atom a_2·Q_2ᵀ is zero
  const x = rescale(l);
  assert.equal(x.kind, "columnwise");
  assert.equal(x.alpha[2], 1);
  // Column 2 has ‖a_2‖ = 0, so it weighs nothing; the other two keep the share γ.
  assert.ok(Math.abs(keptOf(x, l) - DEFAULT_KEEP ** 10) < 1e-12, `${keptOf(x, l)}`);
  assert.ok(x.merged.every(Number.isFinite));
});

Deno.test("auto L, lrScaled: an event keeps q^(I·η_t/η), so only the schedule's shape enters, not the lr's scale", () => {
  const rule: LipschitzRule = { kind: "auto", keep: 0.98, lrScaled: true };
  let columnwise = 0;
  for (let seed = 0; seed < 12; seed++) {
    const l = layer(seed);
    const full = rescale(l, { rule, lr: 2e-3, baseLr: 2e-3 });
    if (full.kind !== "columnwise") continue;
    columnwise++;
    // At the peak of the schedule it is the plain keep rule.
    sameOutcome(full, rescale(l, { rule: { kind: "auto", keep: 0.98 } }), `seed ${seed}: at η_t = η`);
    // Halfway down the schedule it merges half as much in the exponent: γ = q^(I/2).
    const half = rescale(l, { rule, lr: 1e-3, baseLr: 2e-3 });
    assert.ok(Math.abs(keptOf(half, l) - 0.98 ** 5) < 1e-12, `seed ${seed}: ${keptOf(half, l)}`);
    // Scaling both learning rates (a different peak lr, same schedule) changes nothing.
    sameOutcome(half, rescale(l, { rule, lr: 7e-6, baseLr: 1.4e-5 }), `seed ${seed}: lr scale`);
    // The other invariances of the keep rule hold at any point of the schedule.
    sameOutcome(half, rescale({ ...l, G: l.G.map((v) => v * 300) }, { rule, lr: 1e-3, baseLr: 2e-3 }), "loss");
    sameOutcome(half, rescale(l, { rule, lr: 1e-3, baseLr: 2e-3, gradScale: 1e-3 }), "gradients");
    const c = [0.1, 5, 30];
    const split = { ...l, A: l.A.map((v, i) => v * c[i % l.r]), B: l.B.map((v, i) => v / c[i % l.r]) };
    sameOutcome(half, rescale(split, { rule, lr: 1e-3, baseLr: 2e-3 }), "A/B split");
    const d = 3;
    const sB = rescale({ ...l, s: l.s * d * d, A: l.A.map((v) => v / d), B: l.B.map((v) => v / d) }, {
      rule,
      lr: 1e-3,
      baseLr: 2e-3,
    });
    close(half.merged, sB.merged, `seed ${seed}: s, merged part`);
    // At η_t = 0 nothing is merged on balance (the solve's ratios are applied, Σ_k α_kβ_k‖a_k‖‖b_k‖ kept whole).
    const zero = rescale(l, { rule, lr: 0, baseLr: 2e-3 });
    assert.ok(Math.abs(keptOf(zero, l) - 1) < 1e-12);
  }
  assert.ok(columnwise >= 6, `only ${columnwise} column-wise problems`);
  assert.equal(keptShare(rule, 10, 0.25), 0.98 ** 2.5);
  assert.equal(keptShare({ kind: "auto", keep: 0.98 }, 10, 0.25), 0.98 ** 10);
  assert.throws(() => keptShare(rule, 10, -1));
});

Deno.test("auto L, balanced: the solve's merge per column, applied as α_k = β_k (the A/B split kept)", () => {
  const rule: LipschitzRule = { kind: "auto", balanced: true };
  let columnwise = 0;
  for (let seed = 0; seed < 12; seed++) {
    const l = layer(seed);
    const plain = rescale(l), bal = rescale(l, { rule });
    if (plain.kind !== "columnwise") continue;
    columnwise++;
    // The same merge (α_kβ_k per column), so the same merged part and the same share kept.
    close(bal.merged, plain.merged, `seed ${seed}: merged part`);
    close(bal.alpha.map((a, k) => a * bal.beta[k]), plain.alpha.map((a, k) => a * plain.beta[k]), "α∘β");
    close(bal.alpha, bal.beta, `seed ${seed}: α = β`);
    // The rescaled factors still give W_eff: s·Ã·B̃ᵀ + merged = s·A·Bᵀ.
    for (let i = 0; i < l.m; i++) {
      for (let j = 0; j < l.n; j++) {
        let before = 0, after = bal.merged[i * l.n + j];
        for (let k = 0; k < l.r; k++) {
          before += l.s * l.A[i * l.r + k] * l.B[j * l.r + k];
          after += l.s * bal.At[i * l.r + k] * bal.Bt[j * l.r + k];
        }
        assert.ok(Math.abs(before - after) <= 1e-12 * Math.max(1, Math.abs(before)));
      }
    }
    // Invariances of the keep rule carry over: loss and gradient scale, the A/B split, s.
    sameOutcome(bal, rescale({ ...l, G: l.G.map((v) => v * 1e3) }, { rule }), `seed ${seed}: loss`);
    sameOutcome(bal, rescale(l, { rule, gradScale: 0.01 }), `seed ${seed}: gradients`);
    const c = [0.2, 4, 25];
    const split = { ...l, A: l.A.map((v, i) => v * c[i % l.r]), B: l.B.map((v, i) => v / c[i % l.r]) };
    const bs = rescale(split, { rule });
    close(bs.merged, bal.merged, `seed ${seed}: A/B split, merged part`);
    close(bs.alpha, bal.alpha, `seed ${seed}: A/B split, α`);
    const d = 5;
    const bS = rescale({ ...l, s: l.s * d * d, A: l.A.map((v) => v / d), B: l.B.map((v) => v / d) }, { rule });
    close(bS.merged, bal.merged, `seed ${seed}: s, merged part`);
  }
  assert.ok(columnwise >= 6, `only ${columnwise} column-wise problems`);
  // Zero gradients: untouched; a fully merged column (a boundary solution) keeps the solve's scales.
  const z = rescale({ ...layer(3), G: new Float64Array(14 * 11) }, { rule });
  assert.ok([...z.alpha, ...z.beta].every((v) => v === 1));
  const kept = appliedScales(rule, { alpha: Float64Array.of(0, 0.5), beta: Float64Array.of(1, 2) });
  assert.deepEqual([...kept.alpha], [0, 1]);
  assert.deepEqual([...kept.beta], [1, 1]);
  // Free columns (scale 1 on one side) keep 1 on both when the other side is 1 too.
  const free = appliedScales(rule, { alpha: Float64Array.of(1), beta: Float64Array.of(1) });
  assert.deepEqual([...free.alpha, ...free.beta], [1, 1]);
  // Not under the fixed rule (the paper's mode stays exact).
  const fixed = appliedScales({ kind: "fixed", L: 10 }, { alpha: Float64Array.of(0.5), beta: Float64Array.of(2) });
  assert.deepEqual([...fixed.alpha, ...fixed.beta], [0.5, 2]);
});
