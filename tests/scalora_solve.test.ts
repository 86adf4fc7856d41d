/**
 * The host solve of src/train/scalora.ts against the objective it claims to
 * minimise, with G materialised:
 *   f(α, β) = ‖(1/L)G − ηs²(G B̃B̃ᵀ + ÃÃᵀG)‖², α, β ≥ 0,
 * checked by random perturbations, exhaustive active-set NNLS and projected
 * gradient NNLS; plus gradient-scale invariance, the scalar fallback and its
 * boundary rule, singular H, zero atoms, and the linear algebra underneath.
 */
import assert from "node:assert/strict";
import { Rng } from "../src/model/rng.ts";
import {
  choleskySolve,
  effectiveRank,
  pinvSolveSymmetric,
  rankAbove,
  singularValues,
  stableRank,
  symmetricEigen,
} from "../src/train/linalg.ts";
import {
  columnScales,
  scalingObjective,
  type ScalingSolution,
  scalingSystem,
  solveScaling,
} from "../src/train/scalora.ts";
import type { ScalingGrams } from "../kernels/scaling_grams.ts";
import { autoFactorTarget, DEFAULT_MIN_FACTOR_TO_STEP, lEtaS2, type LipschitzRule } from "../src/train/lipschitz.ts";

interface Problem {
  m: number;
  n: number;
  r: number;
  G: Float64Array;
  A: Float64Array;
  B: Float64Array;
}

const L = 37, ETA = 0.01, S = 1.7;
const LES2 = L * ETA * S * S;

function matmul(X: Float64Array, Y: Float64Array, p: number, q: number, t: number, transX = false, transY = false) {
  // (op(X) p x q) · (op(Y) q x t)
  const out = new Float64Array(p * t);
  for (let i = 0; i < p; i++) {
    for (let k = 0; k < q; k++) {
      const x = transX ? X[k * p + i] : X[i * q + k];
      if (x === 0) continue;
      for (let j = 0; j < t; j++) out[i * t + j] += x * (transY ? Y[j * q + k] : Y[k * t + j]);
    }
  }
  return out;
}

function randomProblem(seed: number, opts: Partial<Problem> & { collinear?: boolean } = {}): Problem {
  const rng = new Rng(seed, "scalora-solve");
  const m = opts.m ?? 12, n = opts.n ?? 10, r = opts.r ?? 3;
  const rand = (k: number) => Float64Array.from({ length: k }, () => rng.normal());
  const A = opts.A ?? rand(m * r), B = opts.B ?? rand(n * r);
  if (opts.collinear) {
    // Nearly parallel columns make H ill-conditioned and often push u negative.
    for (let i = 0; i < m; i++) for (let k = 1; k < r; k++) A[i * r + k] = A[i * r] + 0.3 * A[i * r + k];
  }
  return { m, n, r, G: opts.G ?? rand(m * n), A, B };
}

function gramsOf(p: Problem, gradScale = 1): ScalingGrams {
  const { m, n, r, G, A, B } = p;
  const Gs = G.map((v) => v * gradScale);
  const P = matmul(Gs, B, m, n, r), Q = matmul(Gs, A, n, m, r, true);
  return {
    r,
    AtA: matmul(A, A, r, m, r, true),
    BtB: matmul(B, B, r, n, r, true),
    PtP: matmul(P, P, r, m, r, true),
    QtQ: matmul(Q, Q, r, n, r, true),
    AtP: matmul(A, P, r, m, r, true),
  };
}

/** The objective with G materialised, for column scales α, β. */
function objective(p: Problem, alpha: ArrayLike<number>, beta: ArrayLike<number>): number {
  const { m, n, r, G, A, B } = p;
  const At = A.map((v, i) => v * alpha[i % r]), Bt = B.map((v, i) => v * beta[i % r]);
  const GB = matmul(matmul(G, Bt, m, n, r), Bt, m, r, n, false, true); // G B̃ B̃ᵀ
  const AG = matmul(At, matmul(At, G, r, m, n, true), m, r, n); // Ã Ãᵀ G
  let f = 0;
  for (let i = 0; i < m * n; i++) f += (G[i] / L - ETA * S * S * (GB[i] + AG[i])) ** 2;
  return f;
}

function scalesOf(sol: ScalingSolution) {
  return columnScales(sol, LES2);
}

/** Exact NNLS of min uᵀHu − 2uᵀλ, u ≥ 0, by enumerating active sets (2r ≤ 8). */
function nnlsExhaustive(H: Float64Array, lambda: Float64Array): { u: Float64Array; f: number } {
  const n = lambda.length;
  let best = { u: new Float64Array(n), f: 0 };
  for (let mask = 1; mask < 1 << n; mask++) {
    const idx = [...Array(n).keys()].filter((i) => mask & (1 << i));
    const k = idx.length;
    const Hs = new Float64Array(k * k), ls = new Float64Array(k);
    idx.forEach((i, a) => {
      ls[a] = lambda[i];
      idx.forEach((j, b) => Hs[a * k + b] = H[i * n + j]);
    });
    const us = pinvSolveSymmetric(Hs, k, ls, 1e-13);
    if (us.some((v) => v < 0)) continue;
    const u = new Float64Array(n);
    idx.forEach((i, a) => u[i] = us[a]);
    const f = scalingObjective(H, lambda, u);
    if (f < best.f) best = { u, f };
  }
  return best;
}

/** Projected gradient NNLS (step 1/λmax), an independent second opinion. */
function nnlsProjected(H: Float64Array, lambda: Float64Array, iters = 50000): { u: Float64Array; f: number } {
  const n = lambda.length;
  const step = 1 / symmetricEigen(H, n).values[0];
  const u = new Float64Array(n);
  for (let it = 0; it < iters; it++) {
    for (let i = 0; i < n; i++) {
      let g = -lambda[i];
      for (let j = 0; j < n; j++) g += H[i * n + j] * u[j];
      u[i] = Math.max(0, u[i] - step * g);
    }
  }
  return { u, f: scalingObjective(H, lambda, u) };
}

Deno.test("objective identity: L²·f(α, β) = ‖G‖² + uᵀHu − 2uᵀλ with u = Lηs²·(α², β²)", () => {
  for (let seed = 0; seed < 5; seed++) {
    const p = randomProblem(seed);
    const { H, lambda } = scalingSystem(gramsOf(p));
    const rng = new Rng(seed, "ab");
    const alpha = Array.from({ length: p.r }, () => rng.nextFloat() * 0.5);
    const beta = Array.from({ length: p.r }, () => rng.nextFloat() * 0.5);
    const u = [...alpha, ...beta].map((v) => LES2 * v * v);
    const g2 = p.G.reduce((s, v) => s + v * v, 0);
    const lhs = L * L * objective(p, alpha, beta), rhs = g2 + scalingObjective(H, lambda, u);
    assert.ok(Math.abs(lhs - rhs) <= 1e-9 * g2, `${lhs} vs ${rhs}`);
  }
});

Deno.test("column-wise solution is the NNLS optimum and beats random perturbations", () => {
  let columnwise = 0;
  for (let seed = 0; seed < 40; seed++) {
    const p = randomProblem(seed, { r: seed % 2 ? 3 : 4 });
    const gr = gramsOf(p);
    const sol = solveScaling(gr);
    if (sol.kind !== "columnwise") continue;
    columnwise++;
    const { H, lambda } = scalingSystem(gr);
    const u = [...sol.x, ...sol.y];
    const fSol = scalingObjective(H, lambda, u);
    const exact = nnlsExhaustive(H, lambda), pg = nnlsProjected(H, lambda);
    const scale = Math.abs(exact.f) + 1e-12;
    assert.ok(Math.abs(fSol - exact.f) <= 1e-9 * scale, `seed ${seed}: ${fSol} vs exhaustive ${exact.f}`);
    assert.ok(fSol <= pg.f + 1e-7 * scale, `seed ${seed}: ${fSol} vs projected gradient ${pg.f}`);
    const { alpha, beta } = scalesOf(sol);
    const f0 = objective(p, alpha, beta);
    const rng = new Rng(seed, "perturb");
    for (let t = 0; t < 200; t++) {
      const eps = t < 100 ? 0.05 : 0.5;
      const pert = (v: Float64Array) =>
        v.map((x) => Math.max(0, x * (1 + eps * rng.normal()) + (rng.nextFloat() < 0.1 ? eps : 0)));
      assert.ok(
        objective(p, pert(alpha), pert(beta)) >= f0 * (1 - 1e-12),
        `seed ${seed}: a perturbation beat the solution`,
      );
    }
  }
  assert.ok(columnwise >= 20, `only ${columnwise}/40 random problems were column-wise`);
});

Deno.test("u is invariant to scaling the gradients", () => {
  for (let seed = 0; seed < 10; seed++) {
    const p = randomProblem(seed, { collinear: seed % 2 === 1 });
    const a = solveScaling(gramsOf(p)), b = solveScaling(gramsOf(p, 1e-3)), c = solveScaling(gramsOf(p, 250));
    assert.equal(a.kind, b.kind);
    assert.equal(a.kind, c.kind);
    for (const other of [b, c]) {
      [...a.x, ...a.y].forEach((v, i) => {
        const w = [...other.x, ...other.y][i];
        assert.ok(Math.abs(v - w) <= 1e-8 * Math.max(1e-300, Math.abs(v)) + 1e-300, `seed ${seed}: ${v} vs ${w}`);
      });
    }
  }
});

Deno.test("scalar fallback: taken only when the column-wise u has a negative entry, optimal over scalar pairs", () => {
  let fallbacks = 0;
  for (let seed = 0; seed < 60; seed++) {
    const p = randomProblem(seed, { r: 4, collinear: true });
    const gr = gramsOf(p);
    const sol = solveScaling(gr);
    const { H, lambda } = scalingSystem(gr);
    const exact = nnlsExhaustive(H, lambda);
    if (sol.kind === "columnwise") continue;
    fallbacks++;
    // The unconstrained optimum was infeasible: NNLS has an active bound.
    assert.ok(exact.u.some((v) => v === 0), `seed ${seed}: fallback although NNLS is interior`);
    assert.ok(sol.x.every((v) => v === sol.x[0]) && sol.y.every((v) => v === sol.y[0]));
    // Optimal among (x·1, y·1), x, y ≥ 0: grid and local search cannot do better.
    const f = (x: number, y: number) => scalingObjective(H, lambda, [...Array(4).fill(x), ...Array(4).fill(y)]);
    const f0 = f(sol.x[0], sol.y[0]);
    const span = Math.max(sol.x[0], sol.y[0], 1e-6) * 3;
    for (let i = 0; i <= 60; i++) {
      for (let j = 0; j <= 60; j++) assert.ok(f(span * i / 60, span * j / 60) >= f0 - 1e-9 * Math.abs(f0));
    }
    assert.ok(exact.f <= f0 + 1e-9 * Math.abs(f0), "column-wise NNLS can only be better than the scalar family");
    assert.ok(sol.kind === "scalar" || sol.kind === "boundary");
  }
  assert.ok(fallbacks >= 3, `only ${fallbacks} fallbacks in 60 collinear problems`);
});

Deno.test("scalar-only mode solves the 2 x 2 system SᵀHS z = Sᵀλ", () => {
  const p = randomProblem(3);
  const gr = gramsOf(p);
  const sol = solveScaling(gr, { mode: "scalar" });
  const { H, lambda } = scalingSystem(gr);
  const r = p.r, n = 2 * r;
  let h00 = 0, h01 = 0, h11 = 0, l0 = 0, l1 = 0;
  for (let i = 0; i < r; i++) {
    l0 += lambda[i];
    l1 += lambda[r + i];
    for (let j = 0; j < r; j++) {
      h00 += H[i * n + j];
      h01 += H[i * n + r + j];
      h11 += H[(r + i) * n + r + j];
    }
  }
  if (sol.kind === "scalar") {
    assert.ok(Math.abs(h00 * sol.x[0] + h01 * sol.y[0] - l0) <= 1e-9 * l0);
    assert.ok(Math.abs(h01 * sol.x[0] + h11 * sol.y[0] - l1) <= 1e-9 * l1);
  } else assert.equal(sol.kind, "boundary");
});

Deno.test("boundary rule: the better of (l0/h00, 0) and (0, l1/h11)", () => {
  // r = 1 systems given directly (H = [[q, c²], [c², p]], λ = [q, p]); c² > q makes x < 0.
  const grams = (p: number, q: number, c: number): ScalingGrams => ({
    r: 1,
    AtA: Float64Array.of(1),
    BtB: Float64Array.of(1),
    PtP: Float64Array.of(p),
    QtQ: Float64Array.of(q),
    AtP: Float64Array.of(c),
  });
  let sol = solveScaling(grams(4, 1, Math.sqrt(1.5)));
  assert.equal(sol.kind, "boundary");
  // f(1, 0) = 1 − 2 = −1, f(0, 1) = 4 − 8 = −4: the B side wins.
  assert.deepEqual([sol.x[0], sol.y[0]], [0, 1]);
  sol = solveScaling(grams(1, 4, Math.sqrt(1.5)));
  assert.equal(sol.kind, "boundary");
  assert.deepEqual([sol.x[0], sol.y[0]], [1, 0]);
  // A zero α merges A Bᵀ fully: the A column restarts at zero.
  assert.equal(columnScales(sol, LES2).beta[0], 0);
});

Deno.test("singular H: least-squares fallback gives the NNLS optimum", () => {
  const base = randomProblem(7, { r: 3 });
  const { m, n, r } = base;
  // Duplicate columns in both factors: H has equal rows, Cholesky fails.
  const A = base.A.slice(), B = base.B.slice();
  for (let i = 0; i < m; i++) A[i * r + 1] = A[i * r];
  for (let j = 0; j < n; j++) B[j * r + 1] = B[j * r];
  const p = { ...base, A, B };
  const gr = gramsOf(p);
  const sol = solveScaling(gr);
  assert.ok(sol.leastSquares, "expected the least-squares path");
  const { H, lambda } = scalingSystem(gr);
  const exact = nnlsExhaustive(H, lambda);
  const f = scalingObjective(H, lambda, [...sol.x, ...sol.y]);
  if (sol.kind === "columnwise") assert.ok(Math.abs(f - exact.f) <= 1e-8 * Math.abs(exact.f), `${f} vs ${exact.f}`);
  else assert.ok(f >= exact.f - 1e-8 * Math.abs(exact.f));
  assert.ok([...sol.x, ...sol.y].every(Number.isFinite));
});

Deno.test("zero atoms keep scale 1; zero gradient skips the layer", () => {
  const base = randomProblem(11, { r: 3 });
  const A = base.A.slice();
  for (let i = 0; i < base.m; i++) A[i * base.r + 2] = 0;
  const sol = solveScaling(gramsOf({ ...base, A }));
  assert.deepEqual(sol.freeX, [false, false, true]);
  assert.equal(columnScales(sol, LES2).alpha[2], 1);
  const zero = solveScaling(gramsOf({ ...base, G: new Float64Array(base.m * base.n) }));
  assert.equal(zero.kind, "skipped");
  const sc = columnScales(zero, LES2);
  assert.ok([...sc.alpha, ...sc.beta].every((v) => v === 1));
});

Deno.test("linalg: Jacobi eigen, Cholesky, pseudo-inverse, one-sided Jacobi SVD, effective rank", () => {
  const rng = new Rng(5, "linalg");
  const n = 7;
  const M = Float64Array.from({ length: n * n }, () => rng.normal());
  const S = matmul(M, M, n, n, n, true); // SPD
  const { values, vectors } = symmetricEigen(S, n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += vectors[i * n + k] * values[k] * vectors[j * n + k];
      assert.ok(Math.abs(s - S[i * n + j]) < 1e-10 * values[0]);
    }
  }
  assert.ok(values.every((v, i) => i === 0 || v <= values[i - 1]));
  const b = Float64Array.from({ length: n }, () => rng.normal());
  const x = choleskySolve(S, n, b)!, y = pinvSolveSymmetric(S, n, b);
  x.forEach((v, i) => assert.ok(Math.abs(v - y[i]) < 1e-8 * (1 + Math.abs(v))));
  assert.equal(choleskySolve(Float64Array.of(1, 1, 1, 1), 2, Float64Array.of(1, 1), 1e-12), null);
  // Singular values of M = eigenvalues of MᵀM, square-rooted.
  const sv = singularValues(M, n, n);
  sv.forEach((s, i) => assert.ok(Math.abs(s * s - values[i]) < 1e-9 * values[0]));
  // A 20 x 16 matrix of rank 5, with a tiny-but-real sixth direction.
  const U = Float64Array.from({ length: 20 * 6 }, () => rng.normal());
  const V = Float64Array.from({ length: 16 * 6 }, () => rng.normal());
  for (let i = 0; i < 20; i++) U[i * 6 + 5] *= 1e-9;
  const low = matmul(U, V, 20, 6, 16, false, true);
  assert.equal(effectiveRank(low, 20, 16), 5);
  assert.equal(effectiveRank(low, 20, 16, 1e-12), 6);
  assert.equal(effectiveRank(matmul(V, U, 16, 6, 20, false, true), 16, 20), 5);
  // Stable rank Σσ²/σ_max²: k equal directions give k, a tiny direction adds ~nothing, a weak one its share.
  const diagonal = (d: number[]) => {
    const m = new Float64Array(d.length * d.length);
    d.forEach((x, i) => m[i * d.length + i] = x);
    return singularValues(m, d.length, d.length);
  };
  assert.ok(Math.abs(stableRank(diagonal([2, 2, 2, 0])) - 3) < 1e-9);
  assert.ok(Math.abs(stableRank(diagonal([3, 1, 0])) - 10 / 9) < 1e-9);
  const lowSv = singularValues(low, 20, 16);
  assert.ok(Math.abs(stableRank(lowSv) - stableRank(lowSv.slice(0, 5))) < 1e-9);
  assert.ok(stableRank(lowSv) <= 5);
  assert.equal(stableRank(diagonal([0, 0])), 0);
  assert.equal(rankAbove(diagonal([3, 1, 1e-9])), 2);
});

Deno.test("auto L, previous factorScale form: rescaled factors hit factorScale·initRms; floor at 3η; invariant to gradient scale and A/B balance", () => {
  const p = randomProblem(21, { r: 3 });
  const spec = { name: "t", m: p.m, n: p.n, rank: p.r, scale: S };
  const rule: LipschitzRule = { kind: "auto", factorScale: 0.4 };
  const scaledRms = (prob: Problem, gradScale: number, lr: number) => {
    const gr = gramsOf(prob, gradScale);
    const sol = solveScaling(gr);
    assert.equal(sol.kind, "columnwise");
    const { alpha, beta } = columnScales(sol, lEtaS2(rule, { spec, lr, initRms: 0.1, solution: sol, grams: gr }));
    let a = 0, b = 0;
    for (let k = 0; k < prob.r; k++) {
      a += alpha[k] ** 2 * gr.AtA[k * prob.r + k];
      b += beta[k] ** 2 * gr.BtB[k * prob.r + k];
    }
    return Math.sqrt(Math.sqrt(a / (prob.m * prob.r)) * Math.sqrt(b / (prob.n * prob.r)));
  };
  const target = 0.4 * 0.1;
  assert.ok(Math.abs(scaledRms(p, 1, 1e-4) - target) < 1e-12);
  assert.ok(Math.abs(autoFactorTarget(rule, { lr: 1e-4, initRms: 0.1 }) - target) < 1e-15);
  // At a large learning rate the floor minFactorToStep·η takes over.
  assert.ok(Math.abs(scaledRms(p, 1, 0.05) - DEFAULT_MIN_FACTOR_TO_STEP * 0.05) < 1e-12);
  // Gradient (loss) scale and moving magnitude from A to B change nothing.
  assert.ok(Math.abs(scaledRms(p, 1e4, 1e-4) - target) < 1e-12);
  const rebalanced = { ...p, A: p.A.map((v) => v * 5), B: p.B.map((v) => v / 5) };
  assert.ok(Math.abs(scaledRms(rebalanced, 1, 1e-4) - target) < 1e-12);
  // The fixed rule is the paper's L·η·s².
  const sol = solveScaling(gramsOf(p));
  assert.equal(lEtaS2({ kind: "fixed", L }, { spec, lr: ETA, initRms: 0.1, solution: sol, grams: gramsOf(p) }), LES2);
});
