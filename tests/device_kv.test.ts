/**
 * The device-resident KV store (runtime/device_kv.ts) and its KV graphs
 * (runtime/kv_ops.ts), run on the CPU execution provider: the same graphs the
 * WebGPU engine runs, on tensors the test can read. Random scenarios of
 * prefills, joins, steps, parking and drops are checked against what each
 * sequence's cache must hold, column by column.
 */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { Rng } from "../src/model/rng.ts";
import type { LayerKv } from "../src/runtime/causal_lm.ts";
import { DeviceKvStore, SLACK_COLUMNS } from "../src/runtime/device_kv.ts";
import { columnPads, SessionKvOps } from "../src/runtime/kv_ops.ts";
import { SequenceStateError } from "../src/runtime/kv_store.ts";
import { ort } from "../src/runtime/ort.ts";
import { openGraphSession } from "../src/runtime/session.ts";

const KV = 2, HD = 3, LAYERS = 2;

/** A cache entry's value: names sequence, layer, key/value, head, token position and dim. */
function entry(seq: number, layer: number, isValue: boolean, h: number, pos: number, d: number): number {
  return seq * 10000 + layer * 1000 + (isValue ? 500 : 0) + h * 100 + pos * 4 + d;
}

/** A left-padded prefill of `seqs` (lens) as one [n, kv, width, hd] cache; padding columns hold -1. */
function prefillCache(seqs: number[], lens: number[]) {
  const width = Math.max(...lens), n = seqs.length;
  const make = (layer: number, isValue: boolean) => {
    const out = new Float32Array(n * KV * width * HD).fill(-1);
    seqs.forEach((seq, b) => {
      for (let h = 0; h < KV; h++) {
        for (let p = 0; p < lens[b]; p++) {
          const col = width - lens[b] + p;
          for (let d = 0; d < HD; d++) out[((b * KV + h) * width + col) * HD + d] = entry(seq, layer, isValue, h, p, d);
        }
      }
    });
    return new ort.Tensor("float32", out, [n, KV, width, HD]);
  };
  const layers = Array.from({ length: LAYERS }, (_, l) => ({ key: make(l, false), value: make(l, true) }));
  return { layers, length: width, batch: n };
}

/** What a decode step returns as `present`: past with one column per row appended. */
function present(past: LayerKv[], ids: number[], lens: number[]): LayerKv[] {
  const grow = (t: ort.Tensor, layer: number, isValue: boolean) => {
    const [B, kv, W, hd] = t.dims;
    const src = t.data as Float32Array, out = new Float32Array(B * kv * (W + 1) * hd);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < kv; h++) {
        out.set(src.subarray(((b * kv + h) * W) * hd, ((b * kv + h) * W + W) * hd), ((b * kv + h) * (W + 1)) * hd);
        for (let d = 0; d < hd; d++) {
          out[((b * kv + h) * (W + 1) + W) * hd + d] = entry(ids[b], layer, isValue, h, lens[b], d);
        }
      }
    }
    return new ort.Tensor("float32", out, [B, kv, W + 1, hd]);
  };
  return past.map((l, i) => ({ key: grow(l.key, i, false), value: grow(l.value, i, true) }));
}

/** Every row holds exactly its sequence's tokens, right-aligned, and the mask/positions say so. */
function assertBatch(store: DeviceKvStore, ids: number[], expectedLens: Map<number, number>) {
  return async () => {
    const { batch } = await store.prepare(ids);
    // Rows keep their places; joining ones come after (the step reports its row order).
    assert.deepEqual([...batch.ids].sort((a, b) => a - b), [...ids].sort((a, b) => a - b));
    const { past, attentionMask, positionIds } = batch.stepInputs();
    assert.ok(batch.width - Math.max(...batch.lens) <= SLACK_COLUMNS, "slack beyond the limit");
    batch.ids.forEach((seq, b) => {
      const len = expectedLens.get(seq)!;
      assert.equal(batch.lens[b], len);
      assert.deepEqual(positionIds[b], [len]);
      assert.deepEqual(attentionMask[b], [...Array(batch.width - len).fill(0), ...Array(len + 1).fill(1)]);
      past.layers.forEach((l, layer) => {
        for (const [t, isValue] of [[l.key, false], [l.value, true]] as const) {
          const W = t.dims[2], data = t.data as Float32Array;
          assert.equal(W, batch.width);
          for (let h = 0; h < KV; h++) {
            for (let p = 0; p < len; p++) {
              const col = W - len + p;
              for (let d = 0; d < HD; d++) {
                assert.equal(data[((b * KV + h) * W + col) * HD + d], entry(seq, layer, isValue, h, p, d));
              }
            }
          }
        }
      });
    });
    return batch;
  };
}

function cpuOps() {
  return new SessionKvOps(
    { layers: LAYERS, kvHeads: KV, headDim: HD, dtype: "float32" },
    (graph) => openGraphSession(graph, { device: "cpu" }),
  );
}

Deno.test("device KV: join, steps, park and drop keep every row's tokens (random scenarios)", async () => {
  const ops = cpuOps();
  try {
    for (let scenario = 0; scenario < 12; scenario++) {
      const rng = new Rng(scenario, "device-kv");
      const store = new DeviceKvStore(ops);
      const lens = new Map<number, number>();
      let next = 1;
      for (let round = 0; round < 14; round++) {
        const action = rng.nextFloat();
        if (action < 0.35 || lens.size === 0) {
          const n = 1 + Math.floor(rng.nextFloat() * 3);
          const seqs = Array.from({ length: n }, () => next++);
          const ls = seqs.map(() => 1 + Math.floor(rng.nextFloat() * 40));
          store.addPrefilled(seqs, prefillCache(seqs, ls), ls);
          seqs.forEach((s, i) => lens.set(s, ls[i]));
        } else if (action < 0.45) {
          const victim = [...lens.keys()][Math.floor(rng.nextFloat() * lens.size)];
          store.drop([victim]);
          lens.delete(victim);
        } else {
          // A step over a random subset (the rest are parked or stay solo).
          const ids = [...lens.keys()].filter(() => rng.nextFloat() < 0.7);
          if (ids.length === 0) continue;
          const steps = 1 + Math.floor(rng.nextFloat() * 3);
          for (let s = 0; s < steps; s++) {
            const batch = await assertBatch(store, ids, lens)();
            batch.adopt(present(batch.stepInputs().past.layers, batch.ids, batch.lens));
            for (const id of ids) lens.set(id, lens.get(id)! + 1);
          }
        }
        assert.equal(store.size, lens.size);
      }
      if (lens.size > 0) await assertBatch(store, [...lens.keys()], lens)();
      store.clear();
      assert.equal(store.size, 0);
    }
  } finally {
    await ops.release();
  }
});

Deno.test("device KV: leading columns beyond the slack are cut when the longest row leaves", async () => {
  const ops = cpuOps();
  try {
    const store = new DeviceKvStore(ops);
    store.addPrefilled([1, 2], prefillCache([1, 2], [100, 3]), [100, 3]);
    let { batch } = await store.prepare([1, 2]);
    assert.equal(batch.width, 100);
    store.drop([1]);
    ({ batch } = await store.prepare([2]));
    assert.equal(batch.width, 3);
    await assertBatch(store, [2], new Map([[2, 3]]))();
  } finally {
    await ops.release();
  }
});

Deno.test("device KV: bad requests are SequenceStateErrors, and a malformed present is refused", async () => {
  const ops = cpuOps();
  try {
    const store = new DeviceKvStore(ops);
    store.addPrefilled([1], prefillCache([1], [4]), [4]);
    assert.throws(() => store.addPrefilled([1], prefillCache([1], [4]), [4]), SequenceStateError);
    await assert.rejects(store.prepare([]), SequenceStateError);
    await assert.rejects(store.prepare([1, 1]), SequenceStateError);
    await assert.rejects(store.prepare([7]), SequenceStateError);
    const { batch } = await store.prepare([1]);
    const past = batch.stepInputs().past.layers;
    assert.throws(() => batch.adopt(past.slice(1)), /does not extend/);
    assert.equal(batch.width, 4);
  } finally {
    await ops.release();
  }
});

Deno.test("KV graphs: Pad's begin pads for n columns", () => {
  assert.deepEqual(columnPads(3), [0, 0, 3, 0, 0, 0, 0, 0]);
});
