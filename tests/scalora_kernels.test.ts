/**
 * The ai.scalora kernels (kernels/) run by ORT CPU against plain TypeScript
 * float64 references: ScalingGrams, Merge (batched and chunked), and the
 * optimizer run (ColumnScale + MomentTransform + AdamWStep).
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { AdamWKernel, type AdamWTensor } from "../kernels/adamw.ts";
import { MergeKernel } from "../kernels/merge.ts";
import { ScalingGramsKernel } from "../kernels/scaling_grams.ts";
import { Rng } from "../src/model/rng.ts";

const randn = (rng: Rng, n: number, std = 1) => rng.fillNormal(new Float32Array(n), std);

/** Xᵀ Y for row-major X (p x a), Y (p x b), float64. */
function gram(X: Float32Array, Y: Float32Array, p: number, a: number, b: number): Float64Array {
  const out = new Float64Array(a * b);
  for (let k = 0; k < p; k++) {
    for (let i = 0; i < a; i++) for (let j = 0; j < b; j++) out[i * b + j] += X[k * a + i] * Y[k * b + j];
  }
  return out;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what: string) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  let scale = 0;
  for (let i = 0; i < expected.length; i++) scale = Math.max(scale, Math.abs(expected[i]));
  for (let i = 0; i < expected.length; i++) {
    const err = Math.abs(actual[i] - expected[i]);
    assert.ok(err <= rtol * (scale || 1), `${what}[${i}]: ${actual[i]} vs ${expected[i]} (err ${err})`);
  }
}

Deno.test("ScalingGrams: five float64 Grams per layer, several layers in one run", async () => {
  const rng = new Rng(1, "grams");
  const shapes = [{ m: 12, n: 9, r: 3 }, { m: 5, n: 16, r: 2 }, { m: 12, n: 9, r: 3 }];
  const layers = shapes.map(({ m, n, r }) => ({
    m,
    n,
    r,
    A: randn(rng, m * r),
    B: randn(rng, n * r),
    gA: randn(rng, m * r, 1e-3),
    gB: randn(rng, n * r, 1e-3),
  }));
  const kernel = new ScalingGramsKernel({ device: "cpu" });
  try {
    const out = await kernel.run(layers);
    layers.forEach((l, i) => {
      // Products of float32 inputs are exact in float64; only summation order differs.
      assertClose(out[i].AtA, gram(l.A, l.A, l.m, l.r, l.r), 1e-14, `AtA ${i}`);
      assertClose(out[i].BtB, gram(l.B, l.B, l.n, l.r, l.r), 1e-14, `BtB ${i}`);
      assertClose(out[i].PtP, gram(l.gA, l.gA, l.m, l.r, l.r), 1e-14, `PtP ${i}`);
      assertClose(out[i].QtQ, gram(l.gB, l.gB, l.n, l.r, l.r), 1e-14, `QtQ ${i}`);
      assertClose(out[i].AtP, gram(l.A, l.gA, l.m, l.r, l.r), 1e-14, `AtP ${i}`);
    });
    assert.deepEqual(await kernel.run([]), []);
  } finally {
    await kernel.release();
  }
});

Deno.test("Merge: W + s·A diag(c) Bᵀ, batched and chunked by output bytes", async () => {
  const rng = new Rng(2, "merge");
  const items = [{ m: 20, n: 14, k: 4 }, { m: 8, n: 30, k: 2 }, { m: 20, n: 14, k: 4 }].map(({ m, n, k }, i) => ({
    m,
    n,
    k,
    W: randn(rng, m * n),
    A: randn(rng, m * k, 0.3),
    B: randn(rng, n * k, 0.3),
    c: Float32Array.from({ length: k }, (_, j) => 1 - 0.3 * j),
    s: 0.5 + i,
  }));
  const expected = items.map((it) => {
    const out = Float64Array.from(it.W);
    for (let i = 0; i < it.m; i++) {
      for (let j = 0; j < it.n; j++) {
        for (let q = 0; q < it.k; q++) out[i * it.n + j] += it.s * it.A[i * it.k + q] * it.c[q] * it.B[j * it.k + q];
      }
    }
    return out;
  });
  for (const maxOutputBytes of [undefined, 1]) { // 1 byte: one layer per run
    const kernel = new MergeKernel({ device: "cpu", maxOutputBytes });
    try {
      const seen: number[] = [];
      const out = await kernel.run(items, (i) => seen.push(i));
      assert.deepEqual(seen, [0, 1, 2]);
      out.forEach((W, i) => assertClose(W, expected[i], 1e-6, `merge ${i} (budget ${maxOutputBytes})`));
      // Inputs are not modified.
      assert.ok(items[0].W !== out[0]);
    } finally {
      await kernel.release();
    }
  }
});

interface RefState {
  p: Float64Array;
  m: Float64Array;
  v: Float64Array;
}

/** PyTorch AdamW after ScaLoRA's rescale, in float64. */
function refStep(
  st: RefState,
  g: Float32Array,
  cols: number,
  hp: { lr: number; b1: number; b2: number; eps: number; wd: number; step: number; gs: number },
  dp?: Float32Array,
  dg?: Float32Array,
) {
  const bc1 = 1 - hp.b1 ** hp.step, bc2 = 1 - hp.b2 ** hp.step;
  for (let i = 0; i < st.p.length; i++) {
    const c = i % cols, sp = dp ? dp[c] : 1, sg = dg ? dg[c] : 1;
    const gi = g[i] * hp.gs * sg;
    const p = st.p[i] * sp * (1 - hp.lr * hp.wd);
    st.m[i] = hp.b1 * st.m[i] * sg + (1 - hp.b1) * gi;
    st.v[i] = hp.b2 * st.v[i] * sg * sg + (1 - hp.b2) * gi * gi;
    st.p[i] = p - (hp.lr / bc1) * st.m[i] / (Math.sqrt(st.v[i]) / Math.sqrt(bc2) + hp.eps);
  }
}

Deno.test("AdamW runFlat (the optimizer's one flat run) computes what run does per tensor, bit for bit", async () => {
  const rng = new Rng(4, "adamw-flat");
  const shapes = [{ rows: 6, cols: 3 }, { rows: 4, cols: 3 }, { rows: 5, cols: 2 }];
  const tensors: AdamWTensor[] = shapes.map(({ rows, cols }) => ({
    rows,
    cols,
    p: randn(rng, rows * cols, 0.1),
    g: new Float32Array(rows * cols),
    m: new Float32Array(rows * cols),
    v: new Float32Array(rows * cols),
  }));
  const n = tensors.reduce((s, t) => s + t.p.length, 0);
  const flat = { p: new Float32Array(n), g: new Float32Array(n), m: new Float32Array(n), v: new Float32Array(n) };
  let at = 0;
  for (const t of tensors) {
    flat.p.set(t.p, at);
    at += t.p.length;
  }
  const kernel = new AdamWKernel({ device: "cpu" });
  try {
    for (let step = 1; step <= 5; step++) {
      const hp = { lr: 0.01 * step, beta1: 0.9, beta2: 0.99, eps: 1e-8, weightDecay: 0.1, step, gradScale: 0.5 };
      const scaled = step === 2 || step === 4;
      const dp = new Float32Array(n), dg = new Float32Array(n);
      at = 0;
      tensors.forEach((t, i) => {
        randn(rng, t.g.length, 0.05).forEach((x, j) => t.g[j] = x);
        flat.g.set(t.g, at);
        // The last tensor unscaled on a scaling step, as a layer ScaLoRA skips.
        const cols = (x: number) => Float32Array.from({ length: t.cols }, (_, c) => x + 0.25 * c);
        t.paramScale = scaled && i < 2 ? cols(0.5 + i) : undefined;
        t.momentScale = scaled && i < 2 ? cols(1.5 - i) : undefined;
        for (let r = 0; r < t.rows; r++) {
          for (let c = 0; c < t.cols; c++) {
            dp[at + r * t.cols + c] = t.paramScale?.[c] ?? 1;
            dg[at + r * t.cols + c] = t.momentScale?.[c] ?? 1;
          }
        }
        at += t.p.length;
      });
      await kernel.run(tensors, hp);
      await kernel.runFlat({ ...flat, ...(scaled ? { paramScale: dp, momentScale: dg } : {}) }, hp);
      at = 0;
      for (const t of tensors) {
        for (const k of ["p", "m", "v"] as const) {
          assert.deepEqual(flat[k].slice(at, at + t.p.length), t[k], `${k} step ${step}`);
        }
        at += t.p.length;
      }
    }
  } finally {
    await kernel.release();
  }
});

Deno.test("AdamW run: bias correction, decoupled weight decay, grad scale, column rescale and crossed moments", async () => {
  const rng = new Rng(3, "adamw");
  const shapes = [{ rows: 6, cols: 3 }, { rows: 4, cols: 3 }];
  const tensors: AdamWTensor[] = shapes.map(({ rows, cols }) => ({
    rows,
    cols,
    p: randn(rng, rows * cols, 0.1),
    g: new Float32Array(rows * cols),
    m: new Float32Array(rows * cols),
    v: new Float32Array(rows * cols),
  }));
  const refs: RefState[] = tensors.map((t) => ({
    p: Float64Array.from(t.p),
    m: new Float64Array(t.m.length),
    v: new Float64Array(t.v.length),
  }));
  const kernel = new AdamWKernel({ device: "cpu" });
  try {
    for (let step = 1; step <= 6; step++) {
      const hp = { lr: 0.01 * step, b1: 0.9, b2: 0.99, eps: 1e-8, wd: 0.1, step, gs: step % 2 ? 1 : 0.25 };
      // Rescale on steps 3 and 5 (as ScaLoRA: param by α, moments crossed by β).
      const scaled = step === 3 || step === 5;
      const alpha = Float32Array.of(0.5, 1.25, 0), beta = Float32Array.of(2, 0.8, 1.5);
      tensors.forEach((t, i) => {
        randn(rng, t.g.length, 0.05).forEach((x, j) => t.g[j] = x);
        t.paramScale = scaled ? (i === 0 ? alpha : beta) : undefined;
        t.momentScale = scaled ? (i === 0 ? beta : alpha) : undefined;
        refStep(refs[i], t.g, t.cols, hp, t.paramScale, t.momentScale);
      });
      await kernel.run(tensors, {
        lr: hp.lr,
        beta1: hp.b1,
        beta2: hp.b2,
        eps: hp.eps,
        weightDecay: hp.wd,
        step,
        gradScale: hp.gs,
      });
      tensors.forEach((t, i) => {
        assertClose(t.p, refs[i].p, 2e-6, `p${i} step ${step}`);
        assertClose(t.m, refs[i].m, 2e-6, `m${i} step ${step}`);
        assertClose(t.v, refs[i].v, 2e-6, `v${i} step ${step}`);
      });
    }
    await assert.rejects(() =>
      kernel.run(tensors, { lr: 1, beta1: 0.9, beta2: 0.9, eps: 0, weightDecay: 0, step: 0, gradScale: 1 })
    );
  } finally {
    await kernel.release();
  }
});

Deno.test("crossed moment transform keeps Adam's direction m/sqrt(v) per column", async () => {
  // g ← g·d, m ← m·d, v ← v·d² scales the new m by d and v by d², so
  // m/sqrt(v) and hence the step are unchanged (exactly, with eps = 0).
  const kernel = new AdamWKernel({ device: "cpu" });
  try {
    const mk = () => ({
      rows: 1,
      cols: 2,
      p: Float32Array.of(1, 1),
      g: Float32Array.of(0.3, -0.2),
      m: Float32Array.of(0.02, -0.01),
      v: Float32Array.of(4e-4, 1e-4),
    });
    const plain = mk(),
      scaled: AdamWTensor = { ...mk(), paramScale: Float32Array.of(1, 1), momentScale: Float32Array.of(3, 0.1) };
    const hp = { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 0, weightDecay: 0, step: 10, gradScale: 1 };
    await kernel.run([plain], hp);
    await kernel.run([scaled], hp);
    // Same step in parameter space (eps = 0 makes it exact up to rounding).
    assertClose(scaled.p, plain.p, 1e-6, "p");
  } finally {
    await kernel.release();
  }
});
