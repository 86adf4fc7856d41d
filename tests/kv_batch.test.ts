/** The batch KV cache and the worker's cache store, on synthetic tensors. */
import "../src/runtime/ort_env.ts"; // before anything loads onnxruntime or transformers.js
import assert from "node:assert/strict";
import { KvBatch, leftPaddedPrompts, SLACK_COLUMNS } from "../src/runtime/kv_batch.ts";
import { KvStore, SequenceStateError } from "../src/runtime/kv_store.ts";
import { ort } from "../src/runtime/ort.ts";
import type { KvCache, LayerKv } from "../src/runtime/causal_lm.ts";

const KV = 2, HD = 3, LAYERS = 2;

/** Value of a cache entry: identifies sequence, layer, key/value, head, position and dim. */
function entry(seq: number, layer: number, isValue: boolean, h: number, pos: number, d: number): number {
  return seq * 10000 + layer * 1000 + (isValue ? 500 : 0) + h * 100 + pos * 4 + d;
}

function soloCache(seq: number, len: number, half = false): KvCache {
  const make = (layer: number, isValue: boolean) => {
    const vals = new Array<number>(KV * len * HD);
    for (let h = 0; h < KV; h++) {
      for (let p = 0; p < len; p++) {
        for (let d = 0; d < HD; d++) vals[(h * len + p) * HD + d] = entry(seq, layer, isValue, h, p, d);
      }
    }
    // float16 caches are raw bit patterns in a Uint16Array: any 16-bit values exercise the copies.
    return half
      ? new ort.Tensor("float16", Uint16Array.from(vals, (v) => v % 65536), [1, KV, len, HD])
      : new ort.Tensor("float32", Float32Array.from(vals), [1, KV, len, HD]);
  };
  return {
    layers: Array.from({ length: LAYERS }, (_, l) => ({ key: make(l, false), value: make(l, true) })),
    length: len,
    batch: 1,
  };
}

/** What a decode step would produce: one column per row, with recognisable values. */
function fakeStep(batch: KvBatch): LayerKv[] {
  const B = batch.size;
  const column = (layer: number, isValue: boolean) => {
    const out = new Float32Array(B * KV * HD);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < KV; h++) {
        for (let d = 0; d < HD; d++) {
          out[(b * KV + h) * HD + d] = entry(batch.ids[b], layer, isValue, h, batch.lens[b], d);
        }
      }
    }
    return new ort.Tensor("float32", out, [B, KV, 1, HD]);
  };
  return Array.from({ length: LAYERS }, (_, l) => ({ key: column(l, false), value: column(l, true) }));
}

function assertSameCache(actual: KvCache, expected: KvCache): void {
  assert.equal(actual.length, expected.length);
  actual.layers.forEach((l, i) => {
    assert.deepEqual(l.key.dims, expected.layers[i].key.dims);
    assert.deepEqual([...l.key.data as Float32Array], [...expected.layers[i].key.data as Float32Array]);
    assert.deepEqual([...l.value.data as Float32Array], [...expected.layers[i].value.data as Float32Array]);
  });
}

/** A one-prompt prefill's cache. */
const addSolo = (store: KvStore, id: number, c: KvCache) => store.addPrefilled([id], c, [c.length]);

const rowOf = (id: number, c: KvCache) => ({ id, layers: c.layers, row: 0, width: c.length, len: c.length });

/** A batch holding `caches` in order (sequence ids 1, 2, ...). */
function batchOf(caches: KvCache[]): KvBatch {
  const batch = KvBatch.like(rowOf(1, caches[0]));
  caches.forEach((c, i) => batch.add(rowOf(i + 1, c)));
  return batch;
}

Deno.test("rows start at column 0; the step masks the spare columns and feeds positions", () => {
  const caches = [soloCache(1, 2), soloCache(2, 5), soloCache(3, 3)];
  const batch = batchOf(caches);
  const C = batch.capacity;
  assert.ok(C > 5, "spare columns after the longest row");
  const { past, attentionMask, positionIds } = batch.stepInputs();
  assert.equal(past.length, C);
  assert.deepEqual(attentionMask.map((m) => m.length), [C + 1, C + 1, C + 1]);
  assert.deepEqual(attentionMask[0], [1, 1, ...new Array(C - 2).fill(0), 1]);
  assert.deepEqual(attentionMask[1], [1, 1, 1, 1, 1, ...new Array(C - 5).fill(0), 1]);
  assert.deepEqual(positionIds, [[2], [5], [3]]);
  const key = past.layers[1].key;
  assert.deepEqual(key.dims, [3, KV, C, HD]);
  const data = key.data as Float32Array;
  const at = (b: number, h: number, col: number, d: number) => data[((b * KV + h) * C + col) * HD + d];
  // Row 0 (seq 1, len 2), head 1: its positions 0 and 1, then unused columns.
  assert.equal(at(0, 1, 0, 2), entry(1, 1, false, 1, 0, 2));
  assert.equal(at(0, 1, 1, 0), entry(1, 1, false, 1, 1, 0));
  assert.equal(at(0, 1, 2, 0), 0);
  caches.forEach((c, i) => assertSameCache(batch.extract(i + 1), c));
});

Deno.test("append, swap-remove and extract keep every row's tokens", () => {
  const batch = batchOf([soloCache(1, 4), soloCache(2, 2), soloCache(3, 3)]);
  batch.append(fakeStep(batch));
  assert.deepEqual(batch.lens, [5, 3, 4]);
  batch.remove(1); // the last row (seq 3) moves into row 0
  assert.deepEqual(batch.ids, [3, 2]);
  assert.deepEqual(batch.stepInputs().past.layers[0].value.dims, [2, KV, batch.capacity, HD]);
  assertSameCache(batch.extract(3), soloCache(3, 4));
  assertSameCache(batch.extract(2), soloCache(2, 3));
  batch.append(fakeStep(batch));
  assertSameCache(batch.extract(3), soloCache(3, 5));
  assertSameCache(batch.extract(2), soloCache(2, 4));
  batch.remove(2);
  batch.remove(3);
  assert.equal(batch.size, 0);
  assert.throws(() => batch.append(fakeStep(batchOf([soloCache(1, 1)]))), /do not extend/);
});

Deno.test("capacity grows before the longest row outgrows it and shrinks after it leaves", () => {
  const batch = batchOf([soloCache(1, 3), soloCache(2, 1)]);
  const first = batch.capacity;
  assert.equal(first, 3 + SLACK_COLUMNS);
  for (let step = 0; step < SLACK_COLUMNS; step++) batch.append(fakeStep(batch));
  assert.equal(batch.lens[0], first, "row 0 now fills every column");
  batch.append(fakeStep(batch));
  assert.equal(batch.capacity, first + SLACK_COLUMNS);
  assertSameCache(batch.extract(1), soloCache(1, 3 + SLACK_COLUMNS + 1));
  // Row capacity doubles: a third and fourth sequence join without losing anyone.
  batch.add(rowOf(3, soloCache(3, 2)));
  batch.add(rowOf(4, soloCache(4, 1)));
  batch.add(rowOf(5, soloCache(5, 1)));
  assert.deepEqual(batch.ids, [1, 2, 3, 4, 5]);
  assertSameCache(batch.extract(2), soloCache(2, 1 + SLACK_COLUMNS + 1));
  // The long rows leave: the rest, 2 tokens at most, get buffers SLACK columns past them.
  const wide = batch.capacity;
  batch.remove(1);
  assert.equal(batch.capacity, wide, "a long row is left: no copy");
  batch.remove(2);
  assert.equal(batch.capacity, 2 + SLACK_COLUMNS);
  assertSameCache(batch.extract(3), soloCache(3, 2));
  assertSameCache(batch.extract(5), soloCache(5, 1));
});

Deno.test("float16 caches are copied bit-exactly", () => {
  const a = soloCache(1, 3, true), b = soloCache(2, 1, true);
  const batch = batchOf([a, b]);
  assert.ok(batch.stepInputs().past.layers[0].key.data instanceof Uint16Array);
  assert.deepEqual([...batch.extract(2).layers[1].value.data as Uint16Array], [
    ...b.layers[1].value.data as Uint16Array,
  ]);
  batch.remove(1);
  assert.deepEqual([...batch.extract(2).layers[0].key.data as Uint16Array], [...b.layers[0].key.data as Uint16Array]);
});

Deno.test("KvStore: joins, parking and drops", () => {
  const store = new KvStore();
  addSolo(store, 1, soloCache(1, 40));
  let r = store.prepare([1]);
  assert.equal(r.joined, 1);
  r.batch.append(fakeStep(r.batch));
  addSolo(store, 2, soloCache(2, 3));
  addSolo(store, 3, soloCache(3, 5));
  r = store.prepare([2, 1, 3]);
  assert.equal(r.joined, 2);
  assert.deepEqual(r.batch.ids, [1, 2, 3]);
  r.batch.append(fakeStep(r.batch));
  // Step over a subset: sequence 3 is parked as a solo cache, not lost.
  r = store.prepare([1, 2]);
  assert.equal(r.joined, 0);
  assert.deepEqual([...r.batch.ids].sort(), [1, 2]);
  r.batch.append(fakeStep(r.batch));
  r = store.prepare([1, 2, 3]);
  assert.equal(r.joined, 1);
  assert.equal(r.batch.lens[r.batch.ids.indexOf(3)], 6);
  assertSameCache(r.batch.extract(3), soloCache(3, 6));
  assertSameCache(r.batch.extract(1), soloCache(1, 43));
  store.drop([1]);
  r = store.prepare([2, 3]);
  assert.equal(r.joined, 0);
  assertSameCache(r.batch.extract(2), soloCache(2, 5));
  assert.throws(() => store.prepare([9]), SequenceStateError);
  assert.throws(() => store.prepare([2, 2]), SequenceStateError);
  assert.throws(() => addSolo(store, 2, soloCache(2, 1)), SequenceStateError);
  const buffer = (r.batch.stepInputs().past.layers[0].key.data as Float32Array).buffer;
  store.drop([2, 3, 77]);
  assert.equal(store.size, 0);
  // An emptied batch keeps its (small) buffers: the next sequence reuses them.
  addSolo(store, 4, soloCache(4, 2));
  r = store.prepare([4]);
  assert.equal((r.batch.stepInputs().past.layers[0].key.data as Float32Array).buffer, buffer);
  assertSameCache(r.batch.extract(4), soloCache(4, 2));
});

Deno.test("KvBatch: rows joining together are placed with one reallocation", () => {
  const batch = KvBatch.like(rowOf(1, soloCache(1, 1)));
  batch.reserve(3, 7);
  const before = batch.bytes;
  assert.equal(before, LAYERS * 2 * 3 * KV * (7 + SLACK_COLUMNS) * HD * 4);
  [soloCache(1, 7), soloCache(2, 1), soloCache(3, 4)].forEach((c, i) => batch.add(rowOf(i + 1, c)));
  assert.equal(batch.bytes, before, "no reallocation while adding");
  assertSameCache(batch.extract(1), soloCache(1, 7));
  batch.add(rowOf(4, soloCache(4, 2)));
  assert.equal(batch.bytes, 2 * before, "row capacity doubles");
  assertSameCache(batch.extract(3), soloCache(3, 4));
});

Deno.test("leftPaddedPrompts right-aligns prompts with masked padding and per-row positions", () => {
  assert.deepEqual(leftPaddedPrompts([[7, 8], [1, 2, 3, 4], [9]]), {
    inputIds: [[0, 0, 7, 8], [1, 2, 3, 4], [0, 0, 0, 9]],
    attentionMask: [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]],
    positionIds: [[0, 0, 0, 1], [0, 1, 2, 3], [0, 0, 0, 0]],
    lens: [2, 4, 1],
  });
});

/** A left-padded prefill's keys and values: row b holds caches[b] right-aligned, NaN in its padding. */
function leftPadded(caches: KvCache[]): KvCache {
  const W = Math.max(...caches.map((c) => c.length)), B = caches.length;
  const pack = (pick: (c: KvCache) => ort.Tensor) => {
    const out = new Float32Array(B * KV * W * HD).fill(NaN);
    caches.forEach((c, b) => {
      const src = pick(c).data as Float32Array, len = c.length;
      for (let h = 0; h < KV; h++) {
        out.set(src.subarray(h * len * HD, (h + 1) * len * HD), ((b * KV + h) * W + W - len) * HD);
      }
    });
    return new ort.Tensor("float32", out, [B, KV, W, HD]);
  };
  return {
    layers: caches[0].layers.map((_, i) => ({
      key: pack((c) => c.layers[i].key),
      value: pack((c) => c.layers[i].value),
    })),
    length: W,
    batch: B,
  };
}

Deno.test("KvStore: rows of a batched prefill join by copy, ignoring their padding columns", () => {
  const prefilled = leftPadded([soloCache(1, 2), soloCache(2, 4)]);
  const store = new KvStore();
  assert.throws(() => store.addPrefilled([1], prefilled, [2]), SequenceStateError, "rows must match");
  store.addPrefilled([1, 2], prefilled, [2, 4]);
  let r = store.prepare([1]);
  assertSameCache(r.batch.extract(1), soloCache(1, 2));
  r.batch.append(fakeStep(r.batch));
  r = store.prepare([2, 1]);
  assert.ok(!(r.batch.stepInputs().past.layers[0].key.data as Float32Array).some(Number.isNaN), "no padding copied");
  assertSameCache(r.batch.extract(2), soloCache(2, 4));
  assertSameCache(r.batch.extract(1), soloCache(1, 3));
  assert.throws(() => store.addPrefilled([2], soloCache(2, 1), [1]), SequenceStateError);
});
