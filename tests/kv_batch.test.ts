/** The padded batch KV cache and the worker's cache store, on synthetic tensors. */
import assert from "node:assert/strict";
import { leftPaddedPrompts, PaddedBatch, SLACK_COLUMNS } from "../src/runtime/kv_batch.ts";
import { KvStore, SequenceStateError } from "../src/runtime/kv_store.ts";
import { ort } from "../src/runtime/ort.ts";
import type { KvCache } from "../src/serve/causal_lm.ts";

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

/** What `step` would produce: each row gains one column with recognisable values. */
function fakePresent(batch: PaddedBatch): KvCache {
  const past = batch.asCache();
  const W = past.length, B = past.batch;
  const grow = (t: ort.Tensor, layer: number, isValue: boolean) => {
    const src = t.data as Float32Array;
    const out = new Float32Array(B * KV * (W + 1) * HD);
    for (let b = 0; b < B; b++) {
      for (let h = 0; h < KV; h++) {
        const from = (b * KV + h) * W * HD, to = (b * KV + h) * (W + 1) * HD;
        out.set(src.subarray(from, from + W * HD), to);
        for (let d = 0; d < HD; d++) out[to + W * HD + d] = entry(batch.ids[b], layer, isValue, h, batch.lens[b], d);
      }
    }
    return new ort.Tensor("float32", out, [B, KV, W + 1, HD]);
  };
  return {
    layers: past.layers.map((l, i) => ({ key: grow(l.key, i, false), value: grow(l.value, i, true) })),
    length: W + 1,
    batch: B,
  };
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

Deno.test("pack right-aligns rows over zero padding; mask and positions follow", () => {
  const caches = [soloCache(1, 2), soloCache(2, 5), soloCache(3, 3)];
  const batch = PaddedBatch.pack(caches.map((c, i) => rowOf(i + 1, c)));
  assert.equal(batch.width, 5);
  assert.deepEqual(batch.stepMask(), [[0, 0, 0, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1]]);
  assert.deepEqual(batch.stepPositions(), [[2], [5], [3]]);
  const key = batch.asCache().layers[1].key;
  assert.deepEqual(key.dims, [3, KV, 5, HD]);
  const data = key.data as Float32Array;
  // Row 0 (seq 1, len 2), head 1: three zero columns, then its positions 0 and 1.
  const at = (b: number, h: number, col: number, d: number) => data[((b * KV + h) * 5 + col) * HD + d];
  assert.equal(at(0, 1, 2, 0), 0);
  assert.equal(at(0, 1, 3, 2), entry(1, 1, false, 1, 0, 2));
  assert.equal(at(0, 1, 4, 0), entry(1, 1, false, 1, 1, 0));
  caches.forEach((c, i) => assertSameCache(batch.extract(i + 1), c));
});

Deno.test("advance, swap-remove and extract keep every row's tokens", () => {
  const batch = PaddedBatch.pack([soloCache(1, 4), soloCache(2, 2), soloCache(3, 3)].map((c, i) => rowOf(i + 1, c)));
  batch.advance(fakePresent(batch));
  assert.deepEqual(batch.lens, [5, 3, 4]);
  batch.remove(1); // the last row (seq 3) moves into row 0
  assert.deepEqual(batch.ids, [3, 2]);
  assert.deepEqual(batch.asCache().layers[0].value.dims, [2, KV, 5, HD]);
  assertSameCache(batch.extract(3), soloCache(3, 4));
  assertSameCache(batch.extract(2), soloCache(2, 3));
  batch.advance(fakePresent(batch));
  assertSameCache(batch.extract(3), soloCache(3, 5));
  batch.remove(2);
  batch.remove(3);
  assert.equal(batch.size, 0);
});

Deno.test("float16 caches are copied bit-exactly", () => {
  const a = soloCache(1, 3, true), b = soloCache(2, 1, true);
  const batch = PaddedBatch.pack([rowOf(1, a), rowOf(2, b)]);
  assert.ok(batch.asCache().layers[0].key.data instanceof Uint16Array);
  assert.deepEqual([...batch.extract(2).layers[1].value.data as Uint16Array], [
    ...b.layers[1].value.data as Uint16Array,
  ]);
  batch.remove(1);
  assert.deepEqual([...batch.extract(2).layers[0].key.data as Uint16Array], [...b.layers[0].key.data as Uint16Array]);
});

Deno.test("KvStore: solo adoption, joins, parking and compaction", () => {
  const store = new KvStore();
  addSolo(store, 1, soloCache(1, 40));
  let r = store.prepare([1]);
  assert.equal(r.repacked, false, "a lone sequence adopts its prefill cache");
  r.batch.advance(fakePresent(r.batch));
  addSolo(store, 2, soloCache(2, 3));
  addSolo(store, 3, soloCache(3, 5));
  r = store.prepare([2, 1, 3]);
  assert.equal(r.repacked, true);
  assert.equal(r.batch.width, 41);
  r.batch.advance(fakePresent(r.batch));
  // Step over a subset: sequence 3 is parked as a solo cache, not lost.
  r = store.prepare([1, 2]);
  assert.deepEqual([...r.batch.ids].sort(), [1, 2]);
  r.batch.advance(fakePresent(r.batch));
  r = store.prepare([1, 2, 3]);
  assert.equal(r.batch.lens[r.batch.ids.indexOf(3)], 6);
  assertSameCache(r.batch.extract(3), soloCache(3, 6));
  // The long sequence leaves: 37 of the 43 columns are padding in every row and get trimmed.
  store.drop([1]);
  r = store.prepare([2, 3]);
  assert.equal(r.repacked, true);
  assert.equal(r.batch.width, 6);
  assertSameCache(r.batch.extract(2), soloCache(2, 5));
  assert.throws(() => store.prepare([9]), SequenceStateError);
  assert.throws(() => store.prepare([2, 2]), SequenceStateError);
  assert.throws(() => addSolo(store, 2, soloCache(2, 1)), SequenceStateError);
  store.drop([2, 3, 77]);
  assert.equal(store.size, 0);
});

Deno.test("leftPaddedPrompts right-aligns prompts with masked padding and per-row positions", () => {
  assert.deepEqual(leftPaddedPrompts([[7, 8], [1, 2, 3, 4], [9]]), {
    inputIds: [[0, 0, 7, 8], [1, 2, 3, 4], [0, 0, 0, 9]],
    attentionMask: [[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]],
    positionIds: [[0, 0, 0, 1], [0, 1, 2, 3], [0, 0, 0, 0]],
    lens: [2, 4, 1],
  });
});

Deno.test("KvStore: rows of a batched prefill join by copy, ignoring their padding columns", () => {
  // A left-padded prefill cache of two rows (lens 2 and 4), with garbage in the padding.
  const prefilled = PaddedBatch.pack([rowOf(1, soloCache(1, 2)), rowOf(2, soloCache(2, 4))]).asCache();
  for (const l of prefilled.layers) {
    for (const t of [l.key, l.value]) {
      const d = t.data as Float32Array;
      for (let h = 0; h < KV; h++) d.fill(NaN, h * 4 * HD, (h * 4 + 2) * HD); // row 0, columns 0-1
    }
  }
  const store = new KvStore();
  assert.throws(() => store.addPrefilled([1], prefilled, [2]), SequenceStateError, "rows must match");
  store.addPrefilled([1, 2], prefilled, [2, 4]);
  // Alone, row 0 of a two-row cache is packed (copied), not adopted.
  let r = store.prepare([1]);
  assert.equal(r.repacked, true);
  assert.equal(r.batch.width, 2);
  assertSameCache(r.batch.extract(1), soloCache(1, 2));
  r.batch.advance(fakePresent(r.batch));
  r = store.prepare([2, 1]);
  assert.equal(r.batch.width, 4);
  assert.ok(!(r.batch.asCache().layers[0].key.data as Float32Array).some(Number.isNaN), "no padding copied");
  assertSameCache(r.batch.extract(2), soloCache(2, 4));
  assertSameCache(r.batch.extract(1), soloCache(1, 3));
  assert.throws(() => store.addPrefilled([2], soloCache(2, 1), [1]), SequenceStateError);
});

Deno.test("steps write into two alternating buffer sets the batch owns", () => {
  const batch = PaddedBatch.pack([rowOf(1, soloCache(1, 3)), rowOf(2, soloCache(2, 5))]);
  const buffers: ArrayBufferLike[] = [];
  for (let step = 0; step < 5; step++) {
    if (step === 3) batch.remove(1); // a shrunk batch keeps using the same buffers
    const target = batch.presentTarget();
    assert.deepEqual(target.layers[1].value.dims, [batch.size, KV, batch.width + 1, HD]);
    const expected = fakePresent(batch);
    target.layers.forEach((l, i) => {
      (l.key.data as Float32Array).set(expected.layers[i].key.data as Float32Array);
      (l.value.data as Float32Array).set(expected.layers[i].value.data as Float32Array);
    });
    buffers.push((target.layers[0].key.data as Float32Array).buffer);
    batch.advance(target);
  }
  // Step 0 allocates (the packed past is exact-size), step 1 too; then the two sets alternate.
  assert.notEqual(buffers[0], buffers[1]);
  assert.deepEqual([buffers[2], buffers[3], buffers[4]], [buffers[0], buffers[1], buffers[0]]);
  assertSameCache(batch.extract(2), soloCache(2, 10));
  // Growing past the slack columns reallocates.
  for (let step = 0; step < SLACK_COLUMNS; step++) batch.advance(fakePresent(batch));
  assert.ok(!buffers.includes((batch.presentTarget().layers[0].key.data as Float32Array).buffer));
});
