/**
 * Compact snapshots of src/train/merge_log.ts: with the base weights at hand,
 * a layer whose merges take fewer floats than its weight is stored as its
 * merges and rebuilt by replay — bit for bit the weight the run held — and a
 * layer whose log was folded as D = fl(W − W₀) plus the entries where
 * fl(W₀ + D) is not W (fixups) and the merges since; without base weights a
 * folded layer keeps its dense weight; format-1 snapshots (dense weights,
 * folded terms) still restore.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { Rng } from "../src/model/rng.ts";
import { deltasOf, MergeLog } from "../src/train/merge_log.ts";
import { CpuWeightState } from "../src/train/weight_state.ts";

const SPECS = [
  { name: "small", m: 12, n: 10, rank: 2, scale: 1.5 }, // folds once k > 5.45
  { name: "big", m: 40, n: 30, rank: 2, scale: 0.5 }, // never folds here
];
const base = new Map(SPECS.map((s) => [s.name, new Rng(1, `base/${s.name}`).fillNormal(new Float32Array(s.m * s.n))]));
const layers = () => new Map(SPECS.map((s) => [s.name, { m: s.m, n: s.n, data: base.get(s.name)!.slice() }]));
const baseOf = (name: string) => Promise.resolve(base.get(name)!.slice());
const zero = new Map(SPECS.map((s) => [s.name, { A: new Float32Array(s.m * 2), B: new Float32Array(s.n * 2) }]));

function merges(seed: number, count: number) {
  const rng = new Rng(seed, "merges");
  return Array.from({ length: count }, () =>
    SPECS.map((s) => ({
      name: s.name,
      U: rng.fillNormal(new Float32Array(s.m * 2)),
      V: rng.fillNormal(new Float32Array(s.n * 2)),
      k: 2,
      c: rng.fillNormal(new Float32Array(2)),
      scale: s.scale,
    })));
}

Deno.test("merge log snapshot: weights left out, rebuilt bit for bit from merges or from D and its fixups", async () => {
  const events = merges(2, 5);
  const a = new MergeLog(new CpuWeightState(layers()), SPECS, { base: baseOf });
  const b = new MergeLog(new CpuWeightState(layers()), SPECS, { base: baseOf });
  const dense = new MergeLog(new CpuWeightState(layers()), SPECS);
  try {
    for (const ev of events.slice(0, 4)) {
      await a.mergeLowRankMany(ev);
      await dense.mergeLowRankMany(ev);
    }
    // small folded at k = 6 (> 5.45); since then it refolds once (m + n)·k > m·n / 4, i.e. every merge.
    assert.deepEqual(a.stats("small"), { k: 0, dense: true });
    assert.deepEqual(a.stats("big"), { k: 8, dense: false });
    const snap = await a.snapshot();
    assert.ok(!snap.tensors.has("weight.big"), "the replayable weight is left out");
    assert.ok(!snap.tensors.has("weight.small"), "the folded weight is left out too");
    assert.equal(snap.tensors.get("mergelog.small.replayed")!.data[0], 2, "rebuilt from D");
    // Merges as large as the weights: fl(W₀ + fl(W − W₀)) misses W in a few places, kept exactly.
    const fixups = snap.tensors.get("mergelog.small.fix_value")?.data.length ?? 0;
    assert.ok(fixups > 0 && fixups < 12 * 10 / 2, `fixups: ${fixups}`);
    assert.ok(snap.tensors.has("weight.small") === false && (await dense.snapshot()).tensors.has("weight.small"));
    const bytes = (s: typeof snap) => [...s.tensors.values()].reduce((n, t) => n + t.data.length * 4, 0);
    assert.ok(bytes(snap) < bytes(await dense.snapshot()) - 40 * 30 * 4 * 0.9 - 12 * 10 * 4 * 0.5);

    // b has merged something else first: restore resets it to the base and replays.
    await b.mergeLowRankMany(merges(9, 1)[0]);
    await b.restore(snap);
    for (const s of SPECS) assert.deepEqual(await b.dense(s.name), await a.dense(s.name), `${s.name} rebuilt`);
    // Both go on identically: weights and deltas.
    await a.mergeLowRankMany(events[4]);
    await b.mergeLowRankMany(events[4]);
    for (const s of SPECS) assert.deepEqual(await b.dense(s.name), await a.dense(s.name), `${s.name} after`);
    assert.deepEqual(deltasOf(b.view(), SPECS, zero), deltasOf(a.view(), SPECS, zero));
    // Without base weights a compact snapshot cannot be restored; a dense one can.
    const bare = new MergeLog(new CpuWeightState(layers()), SPECS);
    try {
      await assert.rejects(() => bare.restore(snap), /no base weights/);
      await bare.restore(await dense.snapshot());
      assert.deepEqual(await bare.dense("big"), await dense.dense("big"));
    } finally {
      await bare.release();
    }
  } finally {
    for (const l of [a, b, dense]) await l.release();
  }
});

Deno.test("merge log: a format-1 snapshot (dense weights, folded terms) restores with the same deltas", async () => {
  const events = merges(3, 2);
  const a = new MergeLog(new CpuWeightState(layers()), SPECS, { base: baseOf });
  const b = new MergeLog(new CpuWeightState(layers()), SPECS, { base: baseOf });
  try {
    for (const ev of events) await a.mergeLowRankMany(ev);
    // What format 1 wrote: every weight, and per layer the folded U = s·A·diag(c), V = B as one chunk.
    const view = a.view();
    const tensors = new Map<string, { shape: number[]; data: Float32Array }>();
    for (const s of SPECS) {
      tensors.set(`weight.${s.name}`, { shape: [s.m, s.n], data: await a.dense(s.name) });
      const chunks = view.layers.get(s.name)!.chunks;
      const k = chunks.reduce((n, c) => n + c.k, 0);
      const U = new Float32Array(s.m * k), V = new Float32Array(s.n * k);
      let col = 0;
      for (const c of chunks) {
        for (let i = 0; i < s.m; i++) U.set(c.U.subarray(i * c.k, (i + 1) * c.k), i * k + col);
        for (let i = 0; i < s.n; i++) V.set(c.V.subarray(i * c.k, (i + 1) * c.k), i * k + col);
        col += c.k;
      }
      tensors.set(`mergelog.${s.name}.U`, { shape: [s.m, k], data: U });
      tensors.set(`mergelog.${s.name}.V`, { shape: [s.n, k], data: V });
    }
    await b.restore({ kind: "input", tensors });
    for (const s of SPECS) assert.deepEqual(await b.dense(s.name), await a.dense(s.name));
    const [da, db] = [deltasOf(a.view(), SPECS, zero), deltasOf(b.view(), SPECS, zero)];
    for (let i = 0; i < da.length; i++) {
      const flat = (d: typeof da[number]) => d.terms.flatMap((t) => [...t.U, ...t.V]);
      assert.deepEqual(flat(db[i]), flat(da[i]));
    }
    // Such a layer cannot be replayed (its merges are folded): its next snapshot keeps the weight.
    assert.ok((await b.snapshot()).tensors.has("weight.big"));
  } finally {
    await a.release();
    await b.release();
  }
});
