/**
 * LoraGraph + TrainingSession + weight states: a two-layer chain (so the
 * gradient of the first adapter flows back through the second layer's frozen
 * weight and pending factors) against a float64 reference, in the CPU
 * ("input") and baked layouts, with pending rank 0 and > 0; merges, re-bakes
 * and snapshots of both weight states.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { Rng } from "../src/model/rng.ts";
import { GraphBuilder } from "../src/onnx/builder.ts";
import { ort } from "../src/runtime/ort.ts";
import { LoraGraph, loraNames } from "../src/train/lora_graph.ts";
import { TrainingSession } from "../src/train/training_session.ts";
import type { AdapterFactors, AdapterSpec } from "../src/train/types.ts";
import {
  BakedWeightState,
  CpuWeightState,
  type FrozenLayer,
  type GraphWeightState,
} from "../src/train/weight_state.ts";

const L1: AdapterSpec = { name: "layers.0.proj", m: 7, n: 5, rank: 2, scale: 1.5 };
const L2: AdapterSpec = { name: "layers.1.proj", m: 4, n: 7, rank: 3, scale: 0.5 };
const ROWS = 6;

function data(seed: number) {
  const rng = new Rng(seed, "lora-graph");
  const r = (n: number, std = 1) => rng.fillNormal(new Float32Array(n), std);
  return {
    W1: r(L1.m * L1.n, 0.4),
    W2: r(L2.m * L2.n, 0.4),
    factors: new Map<string, AdapterFactors>([
      [L1.name, { A: r(L1.m * L1.rank, 0.3), B: r(L1.n * L1.rank, 0.3) }],
      [L2.name, { A: r(L2.m * L2.rank, 0.3), B: r(L2.n * L2.rank, 0.3) }],
    ]),
    x: r(ROWS * L1.n),
    t: r(ROWS * L2.m),
    /** Pending merges for the baked layout (k = 3). */
    U: r(L2.m * 3, 0.2),
    V: r(L2.n * 3, 0.2),
  };
}

/** W_eff = W + s·A Bᵀ (+ U Vᵀ), float64. */
function effective(
  W: ArrayLike<number>,
  spec: AdapterSpec,
  f: AdapterFactors,
  pending?: { U: Float32Array; V: Float32Array; k: number },
) {
  const { m, n, rank: r, scale: s } = spec;
  const out = Float64Array.from(W);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      for (let k = 0; k < r; k++) out[i * n + j] += s * f.A[i * r + k] * f.B[j * r + k];
      if (pending) {
        for (let k = 0; k < pending.k; k++) {
          out[i * n + j] += pending.U[i * pending.k + k] * pending.V[j * pending.k + k];
        }
      }
    }
  }
  return out;
}

/** Loss 0.5·mean‖y − t‖² of the chain and the adapter gradients, float64. */
function reference(W1: ArrayLike<number>, W2: ArrayLike<number>, d: ReturnType<typeof data>) {
  const f1 = d.factors.get(L1.name)!, f2 = d.factors.get(L2.name)!;
  const E1 = effective(W1, L1, f1), E2 = effective(W2, L2, f2);
  const h = new Float64Array(ROWS * L1.m), y = new Float64Array(ROWS * L2.m);
  for (let b = 0; b < ROWS; b++) {
    for (let i = 0; i < L1.m; i++) {
      for (let j = 0; j < L1.n; j++) h[b * L1.m + i] += E1[i * L1.n + j] * d.x[b * L1.n + j];
    }
    for (let i = 0; i < L2.m; i++) for (let j = 0; j < L2.n; j++) y[b * L2.m + i] += E2[i * L2.n + j] * h[b * L2.n + j];
  }
  let loss = 0;
  const dY = y.map((v, i) => {
    loss += 0.5 * (v - d.t[i]) ** 2 / ROWS;
    return (v - d.t[i]) / ROWS;
  });
  const G2 = new Float64Array(L2.m * L2.n), dH = new Float64Array(ROWS * L1.m), G1 = new Float64Array(L1.m * L1.n);
  for (let b = 0; b < ROWS; b++) {
    for (let i = 0; i < L2.m; i++) {
      for (let j = 0; j < L2.n; j++) {
        G2[i * L2.n + j] += dY[b * L2.m + i] * h[b * L2.n + j];
        dH[b * L1.m + j] += dY[b * L2.m + i] * E2[i * L2.n + j];
      }
    }
  }
  for (let b = 0; b < ROWS; b++) {
    for (let i = 0; i < L1.m; i++) {
      for (let j = 0; j < L1.n; j++) G1[i * L1.n + j] += dH[b * L1.m + i] * d.x[b * L1.n + j];
    }
  }
  const grads = (G: Float64Array, spec: AdapterSpec, f: AdapterFactors) => {
    const { m, n, rank: r, scale: s } = spec;
    const gA = new Float64Array(m * r), gB = new Float64Array(n * r);
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        for (let k = 0; k < r; k++) {
          gA[i * r + k] += s * G[i * n + j] * f.B[j * r + k];
          gB[j * r + k] += s * G[i * n + j] * f.A[i * r + k];
        }
      }
    }
    return { gA, gB };
  };
  return { loss, g1: grads(G1, L1, f1), g2: grads(G2, L2, f2), yMean: y.reduce((a, b) => a + b, 0) / y.length };
}

async function chainSession(weights: GraphWeightState) {
  const g = new GraphBuilder("chain");
  const lora = new LoraGraph(g, weights.layout);
  const x = g.input("x", "float32", ["rows", L1.n]);
  const t = g.input("t", "float32", ["rows", L2.m]);
  const y = lora.linear(lora.linear(x, L1), L2);
  const d = g.sub(y, t);
  const loss = g.mul(g.reduceMean(g.reduceSum(g.mul(d, d), [1], false), [0], false), g.scalar(0.5, "float32"));
  const io = lora.finish(loss, { y_mean: g.reduceMean(y, [0, 1], false) });
  assert.deepEqual([...io.grads.keys()], [L1.name, L2.name]);
  assert.deepEqual(io.grads.get(L1.name), { A: loraNames.gradA(L1.name), B: loraNames.gradB(L1.name) });
  return await TrainingSession.create(g.build(), io, weights, { device: "cpu" });
}

function layers(d: ReturnType<typeof data>): Map<string, FrozenLayer> {
  return new Map([
    [L1.name, { m: L1.m, n: L1.n, data: d.W1.slice() }],
    [L2.name, { m: L2.m, n: L2.n, data: d.W2.slice() }],
  ]);
}

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol: number, what: string) {
  let scale = 0;
  for (let i = 0; i < b.length; i++) scale = Math.max(scale, Math.abs(b[i]));
  for (let i = 0; i < b.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol * (scale || 1), `${what}[${i}]: ${a[i]} vs ${b[i]}`);
  }
}

async function checkRun(session: TrainingSession, d: ReturnType<typeof data>, ref: ReturnType<typeof reference>) {
  const inputs = {
    x: new ort.Tensor("float32", d.x, [ROWS, L1.n]),
    t: new ort.Tensor("float32", d.t, [ROWS, L2.m]),
  };
  const out = await session.run(d.factors, inputs);
  assert.ok(Math.abs(out.loss - ref.loss) <= 1e-5 * ref.loss, `loss ${out.loss} vs ${ref.loss}`);
  close(out.grads.get(L1.name)!.gA, ref.g1.gA, 1e-5, "gA1");
  close(out.grads.get(L1.name)!.gB, ref.g1.gB, 1e-5, "gB1");
  close(out.grads.get(L2.name)!.gA, ref.g2.gA, 1e-5, "gA2");
  close(out.grads.get(L2.name)!.gB, ref.g2.gB, 1e-5, "gB2");
  assert.ok(Math.abs((out.metrics.y_mean.data as Float32Array)[0] - ref.yMean) < 1e-5);
  const fwd = await session.run(d.factors, inputs, { grads: false });
  assert.equal(fwd.grads.size, 0);
  assert.equal(fwd.loss, out.loss);
}

Deno.test("LoRA hook on a two-layer chain: loss and adapter gradients match float64 (CPU input layout)", async () => {
  const d = data(1);
  const weights = new CpuWeightState(layers(d));
  const session = await chainSession(weights);
  try {
    await checkRun(session, d, reference(d.W1, d.W2, d));
  } finally {
    await session.release();
    await weights.release();
  }
});

Deno.test("baked layout: initializers + pending U Vᵀ (k = 0 and k = 3) give the same loss and gradients", async () => {
  const d = data(2);
  const weights = new BakedWeightState(layers(d), { maxPendingRank: 100 });
  const session = await chainSession(weights);
  try {
    // k = 0 everywhere: empty pending inputs.
    await checkRun(session, d, reference(d.W1, d.W2, d));
    await weights.mergeLowRank(L2.name, d.U, d.V, 3);
    assert.equal(weights.pendingRank(L2.name), 3);
    assert.equal(weights.pendingRank(L1.name), 0);
    assert.equal(weights.generation, 0, "no re-bake below the threshold");
    const W2 = effective(d.W2, { ...L2, rank: 0 }, { A: new Float32Array(), B: new Float32Array() }, {
      U: d.U,
      V: d.V,
      k: 3,
    });
    await checkRun(session, d, reference(d.W1, W2, d));
    close(await weights.dense(L2.name), W2, 1e-6, "dense W2");
  } finally {
    await session.release();
    await weights.release();
  }
});

Deno.test("weight states: CPU and baked merges agree; re-bake bumps the generation and the session follows", async () => {
  const d = data(3);
  const cpu = new CpuWeightState(layers(d));
  const baked = new BakedWeightState(layers(d), { maxPendingRank: 4 });
  const sCpu = await chainSession(cpu), sBaked = await chainSession(baked);
  const rng = new Rng(3, "merges");
  try {
    const cpuBuffer = (cpu as unknown as { layers: Map<string, FrozenLayer> }).layers.get(L1.name)!.data;
    for (let step = 0; step < 3; step++) {
      const merges = [L1, L2].map((a) => ({
        name: a.name,
        U: rng.fillNormal(new Float32Array(a.m * 2), 0.2),
        V: rng.fillNormal(new Float32Array(a.n * 2), 0.2),
        k: 2,
        c: Float32Array.of(0.7, -0.4),
        scale: 1.3,
      }));
      await cpu.mergeLowRankMany(merges);
      await baked.mergeLowRankMany(merges);
      const inputs = {
        x: new ort.Tensor("float32", d.x, [ROWS, L1.n]),
        t: new ort.Tensor("float32", d.t, [ROWS, L2.m]),
      };
      const a = await sCpu.run(d.factors, inputs), b = await sBaked.run(d.factors, inputs);
      assert.ok(Math.abs(a.loss - b.loss) <= 1e-5 * a.loss, `step ${step}: ${a.loss} vs ${b.loss}`);
      close(b.grads.get(L1.name)!.gA, a.grads.get(L1.name)!.gA, 1e-5, "gA1");
      for (const l of [L1, L2]) close(await baked.dense(l.name), await cpu.dense(l.name), 1e-6, `dense ${l.name}`);
    }
    // Pending 2, 4, then 6 > 4: one re-bake at the third merge.
    assert.equal(baked.bakes, 1);
    assert.equal(baked.generation, 1);
    assert.equal(baked.pendingRank(L1.name), 0);
    // CPU merges happen in place: the buffer the graph input wraps is the same object.
    assert.equal((cpu as unknown as { layers: Map<string, FrozenLayer> }).layers.get(L1.name)!.data, cpuBuffer);
  } finally {
    await sCpu.release();
    await sBaked.release();
    await cpu.release();
    await baked.release();
  }
});

Deno.test("weight states: snapshot/restore is exact, and refuses the other kind", async () => {
  const d = data(4);
  const rng = new Rng(4, "snap");
  const merge = (a: AdapterSpec) => ({
    name: a.name,
    U: rng.fillNormal(new Float32Array(a.m * 2)),
    V: rng.fillNormal(new Float32Array(a.n * 2)),
    k: 2,
  });
  for (const state of [new CpuWeightState(layers(d)), new BakedWeightState(layers(d), { maxPendingRank: 3 })]) {
    try {
      await state.mergeLowRankMany([merge(L1), merge(L2)]);
      const snap = await state.snapshot();
      const before = await state.dense(L2.name);
      await state.mergeLowRankMany([merge(L1), merge(L2)]);
      assert.notDeepEqual(await state.dense(L2.name), before);
      await state.restore(snap);
      assert.deepEqual(await state.dense(L2.name), before);
      await assert.rejects(() => state.restore({ ...snap, kind: snap.kind === "input" ? "baked" : "input" }));
    } finally {
      await state.release();
    }
  }
});
