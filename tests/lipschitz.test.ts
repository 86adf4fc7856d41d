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
import {
  appliedScales,
  DEFAULT_KEEP,
  keptShare,
  lEtaS2,
  type LipschitzRule,
  lrBoostCap,
} from "../src/train/lipschitz.ts";
import { DEFAULT_LR_BOOST } from "../src/train/lr_boost.ts";
import { columnScales, solveScaling } from "../src/train/scalora.ts";

/**
 * The default auto rule with the solve's α, β applied as they are: the L rule alone. The default split
 * ("larger") only moves where each column's kept magnitude sits; it has its own tests at the end.
 */
const SOLVE_SPLIT: LipschitzRule = { kind: "auto", split: "solve" };

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
  const rule = opts.rule ?? SOLVE_SPLIT;
  const product = lEtaS2(rule, {
    spec,
    lr: opts.lr ?? 1e-3,
    baseLr: opts.baseLr ?? 1e-3,
    interval: opts.interval ?? 10,
    initRms: 1 / Math.sqrt(3 * l.n),
    solution,
    grams,
  });
  const { alpha, beta } = appliedScales(rule, columnScales(solution, product), grams, l);
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
    const keep09: LipschitzRule = { kind: "auto", keep: 0.9, split: "solve" };
    assert.ok(Math.abs(keptOf(rescale(l, { rule: keep09, interval: 3 }), l) - 0.729) < 1e-12);
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
  const rule: LipschitzRule = { kind: "auto", keep: 0.98, lrScaled: true, split: "solve" };
  let columnwise = 0;
  for (let seed = 0; seed < 12; seed++) {
    const l = layer(seed);
    const full = rescale(l, { rule, lr: 2e-3, baseLr: 2e-3 });
    if (full.kind !== "columnwise") continue;
    columnwise++;
    // At the peak of the schedule it is the plain keep rule.
    sameOutcome(full, rescale(l, { rule: { ...SOLVE_SPLIT, keep: 0.98 } }), `seed ${seed}: at η_t = η`);
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

/** Expected ‖ΔW‖² of Adam's next step over ηs (direction entries of unit size): m·Σβ_k²‖b_k‖² + n·Σα_k²‖a_k‖². */
function adamStep2(x: Rescaled, l: Layer): number {
  let t = 0;
  for (let k = 0; k < l.r; k++) {
    let a2 = 0, b2 = 0;
    for (let i = 0; i < l.m; i++) a2 += l.A[i * l.r + k] ** 2;
    for (let j = 0; j < l.n; j++) b2 += l.B[j * l.r + k] ** 2;
    t += l.m * x.beta[k] ** 2 * b2 + l.n * x.alpha[k] ** 2 * a2;
  }
  return t;
}

Deno.test("auto L, split: the solve's merge per column, applied to the smaller side (default) or evenly", () => {
  const larger: LipschitzRule = { kind: "auto" }, balanced: LipschitzRule = { kind: "auto", split: "balanced" };
  let columnwise = 0, sidesSeen = 0;
  for (let seed = 0; seed < 12; seed++) {
    // Alternate which side is larger: A's entries 0.03 vs B's 0.1, and A's 0.3.
    const base = layer(seed), l = seed % 2 ? base : { ...base, A: base.A.map((v) => v * 10) };
    const plain = rescale(l), lg = rescale(l, { rule: larger }), bal = rescale(l, { rule: balanced });
    if (plain.kind !== "columnwise") continue;
    columnwise++;
    for (const x of [lg, bal]) {
      // The same merge (α_kβ_k per column): the same merged part, the same share kept, the same W_eff.
      close(x.merged, plain.merged, `seed ${seed}: merged part`);
      close(x.alpha.map((a, k) => a * x.beta[k]), plain.alpha.map((a, k) => a * plain.beta[k]), "α∘β");
      for (let i = 0; i < l.m; i++) {
        for (let j = 0; j < l.n; j++) {
          let before = 0, after = x.merged[i * l.n + j];
          for (let k = 0; k < l.r; k++) {
            before += l.s * l.A[i * l.r + k] * l.B[j * l.r + k];
            after += l.s * x.At[i * l.r + k] * x.Bt[j * l.r + k];
          }
          assert.ok(Math.abs(before - after) <= 1e-12 * Math.max(1, Math.abs(before)));
        }
      }
    }
    close(bal.alpha, bal.beta, `seed ${seed}: balanced, α = β`);
    for (let k = 0; k < l.r; k++) {
      // "larger": the side with the larger RMS entry keeps its size, the other takes the whole merge.
      let a2 = 0, b2 = 0;
      for (let i = 0; i < l.m; i++) a2 += l.A[i * l.r + k] ** 2;
      for (let j = 0; j < l.n; j++) b2 += l.B[j * l.r + k] ** 2;
      const keepB = a2 / l.m <= b2 / l.n;
      sidesSeen |= keepB ? 1 : 2;
      assert.equal(keepB ? lg.beta[k] : lg.alpha[k], 1, `seed ${seed}, column ${k}`);
    }
    // The largest expected Adam step among the splits of the same merge with no factor grown.
    if (lg.alpha.every((a, k) => a * lg.beta[k] <= 1)) {
      for (const other of [plain, bal]) assert.ok(adamStep2(lg, l) >= adamStep2(other, l) * (1 - 1e-12));
    }
    // Invariant to the loss and gradient scale and to s (with (s·d², A/d, B/d)); the merge also to the A/B split.
    for (const [x, rule] of [[lg, larger], [bal, balanced]] as const) {
      sameOutcome(x, rescale({ ...l, G: l.G.map((v) => v * 1e3) }, { rule }), `seed ${seed}: loss`);
      sameOutcome(x, rescale(l, { rule, gradScale: 0.01 }), `seed ${seed}: gradients`);
      const d = 5;
      const sd = rescale({ ...l, s: l.s * d * d, A: l.A.map((v) => v / d), B: l.B.map((v) => v / d) }, { rule });
      close(sd.merged, x.merged, `seed ${seed}: s, merged part`);
      close(sd.At.map((v) => v * d), x.At, `seed ${seed}: s, Ã`);
      const c = [0.2, 4, 25];
      const split = { ...l, A: l.A.map((v, i) => v * c[i % l.r]), B: l.B.map((v, i) => v / c[i % l.r]) };
      close(rescale(split, { rule }).merged, x.merged, `seed ${seed}: A/B split, merged part`);
    }
  }
  assert.ok(columnwise >= 6, `only ${columnwise} column-wise problems`);
  assert.equal(sidesSeen, 3, "both sides were the larger one somewhere");
  const grams = (a2: number[], b2: number[]) => ({
    r: a2.length,
    AtA: Float64Array.from({ length: a2.length ** 2 }, (_, i) => i % (a2.length + 1) ? 0 : a2[i / (a2.length + 1)]),
    BtB: Float64Array.from({ length: b2.length ** 2 }, (_, i) => i % (b2.length + 1) ? 0 : b2[i / (b2.length + 1)]),
  });
  const dims = { m: 4, n: 4 };
  for (const rule of [larger, balanced]) {
    // Zero gradients: untouched.
    const z = rescale({ ...layer(3), G: new Float64Array(14 * 11) }, { rule });
    assert.ok([...z.alpha, ...z.beta].every((v) => v === 1));
    // A column merged fully (a boundary solution) keeps the solve's scales.
    const kept = appliedScales(
      rule,
      { alpha: Float64Array.of(0, 0.5), beta: Float64Array.of(1, 2) },
      grams([1, 1], [2, 2]),
      dims,
    );
    assert.deepEqual([kept.alpha[0], kept.beta[0]], [0, 1]);
    // Scale 1 on both sides stays 1.
    const free = appliedScales(rule, { alpha: Float64Array.of(1), beta: Float64Array.of(1) }, grams([1], [2]), dims);
    assert.deepEqual([...free.alpha, ...free.beta], [1, 1]);
  }
  // A column the rule grows (α_kβ_k > 1) grows its smaller side.
  const grow = appliedScales(larger, { alpha: Float64Array.of(1.5), beta: Float64Array.of(1) }, grams([1], [4]), dims);
  assert.deepEqual([...grow.alpha, ...grow.beta], [1.5, 1]);
  // Not under the fixed rule (the paper's mode stays exact).
  const fixed = appliedScales(
    { kind: "fixed", L: 10 },
    { alpha: Float64Array.of(0.5), beta: Float64Array.of(2) },
    grams([1], [4]),
    dims,
  );
  assert.deepEqual([...fixed.alpha, ...fixed.beta], [0.5, 2]);
});

Deno.test("lr boost cap: the keep rule's (default 2, 1 = off); never with a fixed L or the size-based forms", () => {
  assert.equal(lrBoostCap({ kind: "auto" }), DEFAULT_LR_BOOST);
  assert.equal(lrBoostCap({ kind: "auto", split: "solve", lrBoost: 1.5 }), 1.5);
  assert.equal(lrBoostCap({ kind: "auto", lrBoost: 1 }), 1);
  assert.equal(lrBoostCap({ kind: "fixed", L: 100 }), 1);
  assert.equal(lrBoostCap({ kind: "auto", stepScale: 8 }), 1);
  assert.equal(lrBoostCap({ kind: "auto", factorScale: 0.4 }), 1);
  assert.throws(() => lrBoostCap({ kind: "auto", lrBoost: 0.5 }), RangeError);
});
