/**
 * The KV caches of the sequences decoding together, kept as ONE left-padded
 * batch cache: per layer, key and value tensors [B, kvHeads, W, headDim]
 * where row b holds its `lens[b]` tokens right-aligned in columns
 * [W - lens[b], W) and zeros before them (masked out by attention_mask 0;
 * zeros, not garbage, because 0 · NaN would poison the softmax-weighted sum).
 *
 * Why one persistent padded batch (rather than per-sequence caches gathered
 * into a batch each step): a decode step then feeds the previous step's
 * `present` tensors straight back as `past`, with no copy on our side; the
 * graph's own concat already copies the cache once per step. Gathering per
 * step would add a gather and a scatter copy of the whole cache to every step:
 * on the SmolLM2-135M shape (fp32, 30 layers) with 8-32 rows of 256-512
 * tokens (90-360 MiB of cache) those copies took 80-1000 ms against 200-1400
 * ms per decode step on a shared 2-core machine, i.e. they would about double
 * each step's memory traffic. Here copies happen only when membership changes:
 * - join: one re-pack of the whole batch (new rows + old rows, trimmed to the
 *   longest row), which costs about what one step's concat costs;
 * - leave: the last row is moved into the freed row (one row copy) and the
 *   tensors shrink to a prefix view, since the batch is the outermost dim;
 * - compaction: when the longest row leaves, columns that are padding in
 *   every row are trimmed by a re-pack once they waste a quarter of the width.
 * Rows always stay contiguous at the right end, so relative cache indices
 * equal relative positions and the graph's causal and sliding-window masks
 * (by cache index) stay exact; position ids are per row (= its length).
 *
 * Steps write their `present` into buffers the batch owns (`presentTarget`):
 * the previous past's buffers, which nothing reads once a step has run, with
 * `SLACK_COLUMNS` spare columns when they must grow. Two buffer sets
 * alternate, so a decode step allocates nothing: fresh 10-100 MB output
 * buffers every step (page faults, zeroing, GC pressure) made batch-8 steps
 * on SmolLM2-135M about a quarter slower.
 */
import type { KvCache } from "../serve/causal_lm.ts";
import { ort, type OrtTensor } from "./ort.ts";

export interface LayerKv {
  key: OrtTensor;
  value: OrtTensor;
}

type KvArray = Float32Array | Uint16Array;

function kvData(t: OrtTensor): KvArray {
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Uint16Array) return d;
  throw new TypeError(`unsupported KV cache tensor type ${t.type}`);
}

function allocLike(t: OrtTensor, length: number): KvArray {
  return kvData(t) instanceof Float32Array ? new Float32Array(length) : new Uint16Array(length);
}

function tensorLike(t: OrtTensor, data: KvArray, dims: number[]): OrtTensor {
  return t.type === "float32"
    ? new ort.Tensor("float32", data as Float32Array, dims)
    : new ort.Tensor("float16", data as Uint16Array, dims);
}

/** One sequence's tokens inside some cache: row `row` of tensors `width` wide, right-aligned. */
export interface RowSource {
  id: number;
  layers: LayerKv[];
  row: number;
  width: number;
  len: number;
}

/** Copies right-aligned rows of `src` tensors into a fresh [rows.length, kv, width, hd] tensor. */
function gatherRows(pick: (r: RowSource) => OrtTensor, rows: RowSource[], width: number): OrtTensor {
  const proto = pick(rows[0]);
  const [, kvHeads, , headDim] = proto.dims;
  const out = allocLike(proto, rows.length * kvHeads * width * headDim);
  rows.forEach((r, b) => {
    const src = kvData(pick(r));
    const n = r.len * headDim;
    for (let h = 0; h < kvHeads; h++) {
      const from = ((r.row * kvHeads + h) * r.width + (r.width - r.len)) * headDim;
      const to = ((b * kvHeads + h) * width + (width - r.len)) * headDim;
      out.set(src.subarray(from, from + n), to);
    }
  });
  return tensorLike(proto, out, [rows.length, kvHeads, width, headDim]);
}

/**
 * Model inputs for prefilling several prompts in one pass, left-padded like
 * the batch cache: row b holds its prompt right-aligned, padding masked out
 * (token 0 at position 0, never attended to). The cache it produces is in
 * PaddedBatch row form: row b's `lens[b]` tokens end at the last column.
 * Its padding columns hold values computed from the pad token; they are
 * never attended to, and `PaddedBatch.pack` copies only each row's own columns.
 */
export function leftPaddedPrompts(prompts: number[][]): {
  inputIds: number[][];
  attentionMask: number[][];
  positionIds: number[][];
  lens: number[];
} {
  const width = Math.max(...prompts.map((p) => p.length));
  const pad = (row: number[], fill: number) => [...new Array<number>(width - row.length).fill(fill), ...row];
  return {
    inputIds: prompts.map((p) => pad(p, 0)),
    attentionMask: prompts.map((p) => pad(new Array<number>(p.length).fill(1), 0)),
    positionIds: prompts.map((p) => pad(p.map((_, i) => i), 0)),
    lens: prompts.map((p) => p.length),
  };
}

/** Columns of headroom when present buffers are (re)allocated: they then serve that many steps. */
export const SLACK_COLUMNS = 32;

/** The whole buffer under a cache tensor's data, when the tensor starts it (ours to reuse). */
function wholeBuffer(t: OrtTensor): KvArray | null {
  const d = kvData(t);
  if (d.byteOffset !== 0) return null;
  return d instanceof Float32Array ? new Float32Array(d.buffer) : new Uint16Array(d.buffer);
}

export class PaddedBatch {
  /** Per layer key then value: buffers free for the next step's `present`. */
  private spare: KvArray[] = [];

  private constructor(
    private layers: LayerKv[],
    private widthCols: number,
    readonly ids: number[],
    readonly lens: number[],
  ) {}

  /** A batch of one that adopts a solo cache as is (no copy). */
  static fromSolo(id: number, cache: KvCache): PaddedBatch {
    if (cache.batch !== 1) throw new Error(`a solo cache has batch 1, got ${cache.batch}`);
    return new PaddedBatch(cache.layers, cache.length, [id], [cache.length]);
  }

  /** A fresh batch holding `rows` in this order, as wide as the longest row. */
  static pack(rows: RowSource[]): PaddedBatch {
    if (rows.length === 0) throw new Error("cannot pack an empty batch");
    const width = Math.max(...rows.map((r) => r.len));
    const layers = rows[0].layers.map((_, i) => ({
      key: gatherRows((r) => r.layers[i].key, rows, width),
      value: gatherRows((r) => r.layers[i].value, rows, width),
    }));
    return new PaddedBatch(layers, width, rows.map((r) => r.id), rows.map((r) => r.len));
  }

  get size(): number {
    return this.ids.length;
  }

  /** Cache width (past length), padding included. */
  get width(): number {
    return this.widthCols;
  }

  /** Columns that are padding in every row. */
  get commonPadding(): number {
    return this.widthCols - Math.max(...this.lens);
  }

  has(id: number): boolean {
    return this.ids.includes(id);
  }

  row(id: number): RowSource {
    const row = this.ids.indexOf(id);
    if (row < 0) throw new Error(`sequence ${id} is not in the batch`);
    return { id, layers: this.layers, row, width: this.widthCols, len: this.lens[row] };
  }

  rows(): RowSource[] {
    return this.ids.map((id) => this.row(id));
  }

  /** The cache as `past` for the next step. */
  asCache(): KvCache {
    return { layers: this.layers, length: this.widthCols, batch: this.ids.length };
  }

  /** attention_mask for one new token per row: [B][W + 1]. */
  stepMask(): number[][] {
    return this.lens.map((len) => {
      const m = new Array<number>(this.widthCols + 1).fill(1);
      m.fill(0, 0, this.widthCols - len);
      return m;
    });
  }

  /** position_ids for one new token per row: [B][1]. */
  stepPositions(): number[][] {
    return this.lens.map((len) => [len]);
  }

  /** Tensors for the next step to write its `present` into ([B, kv, W + 1, hd] per layer), over spare buffers. */
  presentTarget(): KvCache {
    const [, kvHeads, , headDim] = this.layers[0].key.dims;
    const rows = this.ids.length, width = this.widthCols + 1;
    const need = rows * kvHeads * width * headDim;
    if (this.spare.length !== 2 * this.layers.length || this.spare.some((b) => b.length < need)) {
      const capacity = rows * kvHeads * (width + SLACK_COLUMNS) * headDim;
      this.spare = this.layers.flatMap((l) => [allocLike(l.key, capacity), allocLike(l.value, capacity)]);
    }
    const dims = [rows, kvHeads, width, headDim];
    const view = (proto: OrtTensor, buffer: KvArray) => tensorLike(proto, buffer.subarray(0, need), dims);
    return {
      layers: this.layers.map((l, i) => ({
        key: view(l.key, this.spare[2 * i]),
        value: view(l.value, this.spare[2 * i + 1]),
      })),
      length: width,
      batch: rows,
    };
  }

  /**
   * Adopts a step's `present` tensors: every row grew by one token. The
   * past's buffers become the spare set for the next step's present.
   */
  advance(present: KvCache): void {
    if (present.batch !== this.ids.length || present.length !== this.widthCols + 1) {
      throw new Error(`present cache [${present.batch}, ${present.length}] does not extend the batch`);
    }
    const spare = this.layers.flatMap((l) => [wholeBuffer(l.key), wholeBuffer(l.value)]);
    this.spare = spare.every((b) => b !== null) ? spare as KvArray[] : [];
    this.layers = present.layers;
    this.widthCols = present.length;
    for (let i = 0; i < this.lens.length; i++) this.lens[i]++;
  }

  /** A copy of one row as a solo cache [1, kv, len, hd]. */
  extract(id: number): KvCache {
    const r = this.row(id);
    const layers = this.layers.map((_, i) => ({
      key: gatherRows((s) => s.layers[i].key, [r], r.len),
      value: gatherRows((s) => s.layers[i].value, [r], r.len),
    }));
    return { layers, length: r.len, batch: 1 };
  }

  /**
   * Removes a row: the last row moves into its place (one row copy per
   * tensor) and the tensors become a prefix view one row shorter.
   */
  remove(id: number): void {
    const row = this.ids.indexOf(id);
    if (row < 0) return;
    const last = this.ids.length - 1;
    const shrink = (t: OrtTensor): OrtTensor => {
      const [, kvHeads, width, headDim] = t.dims;
      const rowSize = kvHeads * width * headDim;
      const data = kvData(t);
      if (row !== last) data.copyWithin(row * rowSize, last * rowSize, (last + 1) * rowSize);
      return tensorLike(t, data.subarray(0, last * rowSize), [last, kvHeads, width, headDim]);
    };
    if (last > 0) this.layers = this.layers.map((l) => ({ key: shrink(l.key), value: shrink(l.value) }));
    this.ids[row] = this.ids[last];
    this.lens[row] = this.lens[last];
    this.ids.pop();
    this.lens.pop();
  }
}
