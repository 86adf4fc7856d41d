/**
 * The KV caches of the sequences decoding together, kept as ONE batch cache
 * the worker owns: per layer, key and value buffers laid out as
 * [rows, kvHeads, C, headDim], where row b holds its `lens[b]` tokens in
 * columns [0, lens[b]) and C (the capacity) exceeds every length. A step
 * feeds these buffers as `past` with the columns past each row's end masked
 * out, fetches only the step's own keys and values (`CausalLM.forwardStep`)
 * and writes them at column `lens[b]` of each row.
 *
 * Why the engine keeps the cache rather than taking `present` from each step:
 * onnxruntime-node copies every fetched output into a fresh JS buffer (even a
 * preallocated one) while inputs are passed without a copy. On the
 * SmolLM2-135M shape at batch 8, fetching `present` cost 6 of 33 ms per step
 * at 128 cached tokens and 20 of 50 ms at 256. The graph attends by position
 * (decoder_graph.ts), so the unused columns between a row's end and C are just
 * masked keys (only real tokens' values are ever copied in, so they are
 * finite and their zero softmax weight stays zero).
 *
 * Copies happen only when the set of rows or the capacity changes:
 * - join: the new sequence's tokens are copied into the next row (one row);
 * - leave: the last row moves into the freed row (one row copy); the tensors
 *   fed to the model are a prefix view, since the batch is the outermost dim;
 * - capacity: when the longest row reaches C, or C exceeds the longest row by
 *   more than 2·SLACK_COLUMNS after it left, every row is copied into buffers
 *   SLACK_COLUMNS wider than the longest row (at most once per SLACK_COLUMNS
 *   steps while rows grow). Row capacity doubles when full.
 */
import type { KvCache, LayerKv } from "./causal_lm.ts";
import { ort, type OrtTensor } from "./ort.ts";

type KvArray = Float32Array | Uint16Array;

function kvData(t: OrtTensor): KvArray {
  const d = t.data;
  if (d instanceof Float32Array || d instanceof Uint16Array) return d;
  throw new TypeError(`unsupported KV cache tensor type ${t.type}`);
}

function tensorOf(half: boolean, data: KvArray, dims: number[]): OrtTensor {
  return half
    ? new ort.Tensor("float16", data as Uint16Array, dims)
    : new ort.Tensor("float32", data as Float32Array, dims);
}

/** One sequence's tokens inside some cache: row `row` of tensors `width` wide, right-aligned. */
export interface RowSource {
  id: number;
  layers: LayerKv[];
  row: number;
  width: number;
  len: number;
}

/**
 * Model inputs for prefilling several prompts in one pass, left-padded: row b
 * holds its prompt right-aligned, padding masked out (token 0 at position 0,
 * never attended to). Row b's `lens[b]` tokens thus end at the last column of
 * the step's keys and values (a RowSource); the padding columns hold values
 * computed from the pad token, which no copy ever takes.
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

/** Spare columns after the longest row when buffers are (re)allocated: that many steps run without a copy. */
export const SLACK_COLUMNS = 32;

/** Columns of one row, from column `col` on, in a [*, kvHeads, width, headDim] buffer. */
interface Span {
  data: KvArray;
  row: number;
  width: number;
  col: number;
}

export class KvBatch {
  /** Per layer, key then value: [rowCapacity, kvHeads, capacity, headDim]. */
  #buffers: KvArray[] = [];
  #rowCapacity = 0;
  #capacity = 0;
  readonly ids: number[] = [];
  readonly lens: number[] = [];

  private constructor(
    private readonly layerCount: number,
    private readonly kvHeads: number,
    private readonly headDim: number,
    private readonly half: boolean,
  ) {}

  /** An empty batch for caches shaped like `proto`'s tensors. */
  static like(proto: RowSource): KvBatch {
    const t = proto.layers[0].key;
    const [, kvHeads, , headDim] = t.dims;
    return new KvBatch(proto.layers.length, kvHeads, headDim, kvData(t) instanceof Uint16Array);
  }

  get size(): number {
    return this.ids.length;
  }

  /** Columns every row spans in the step's `past` (masked ones included). */
  get capacity(): number {
    return this.#capacity;
  }

  has(id: number): boolean {
    return this.ids.includes(id);
  }

  /** Bytes held by the buffers. */
  get bytes(): number {
    return this.#buffers.reduce((n, b) => n + b.byteLength, 0);
  }

  /** Makes room for `rows` rows and a row of `longest` tokens (one reallocation at most). */
  reserve(rows: number, longest: number): void {
    if (rows > this.#rowCapacity || longest >= this.#capacity) {
      const rowCapacity = rows > this.#rowCapacity ? Math.max(rows, 2 * this.#rowCapacity) : this.#rowCapacity;
      this.#reallocate(rowCapacity, Math.max(longest, ...this.lens));
    }
  }

  /** Appends a sequence as the last row, copying its tokens. */
  add(src: RowSource): void {
    if (this.has(src.id)) throw new Error(`sequence ${src.id} is already in the batch`);
    if (src.layers.length !== this.layerCount) throw new Error("cache layer count does not match the batch");
    this.reserve(this.ids.length + 1, src.len);
    const row = this.ids.length;
    src.layers.forEach((l, i) => {
      [l.key, l.value].forEach((t, j) =>
        this.#copy(
          { data: kvData(t), row: src.row, width: src.width, col: src.width - src.len },
          { data: this.#buffers[2 * i + j], row, width: this.#capacity, col: 0 },
          src.len,
        )
      );
    });
    this.ids.push(src.id);
    this.lens.push(src.len);
  }

  /** Removes a row: the last row moves into its place. */
  remove(id: number): void {
    const row = this.ids.indexOf(id);
    if (row < 0) return;
    const last = this.ids.length - 1;
    if (row !== last) {
      const width = this.#capacity;
      for (const data of this.#buffers) {
        this.#copy({ data, row: last, width, col: 0 }, { data, row, width, col: 0 }, this.lens[last]);
      }
      this.ids[row] = this.ids[last];
      this.lens[row] = this.lens[last];
    }
    this.ids.pop();
    this.lens.pop();
    const longest = Math.max(0, ...this.lens);
    if (this.ids.length > 0 && this.#capacity - longest > 2 * SLACK_COLUMNS) {
      this.#reallocate(this.#rowCapacity, longest);
    }
  }

  /** A copy of one row as a solo cache [1, kv, len, hd]. */
  extract(id: number): KvCache {
    const row = this.ids.indexOf(id);
    if (row < 0) throw new Error(`sequence ${id} is not in the batch`);
    const len = this.lens[row];
    const copy = (data: KvArray): OrtTensor => {
      const out = this.#alloc(this.kvHeads * len * this.headDim);
      this.#copy({ data, row, width: this.#capacity, col: 0 }, { data: out, row: 0, width: len, col: 0 }, len);
      return tensorOf(this.half, out, [1, this.kvHeads, len, this.headDim]);
    };
    const layers = Array.from({ length: this.layerCount }, (_, i) => ({
      key: copy(this.#buffers[2 * i]),
      value: copy(this.#buffers[2 * i + 1]),
    }));
    return { layers, length: len, batch: 1 };
  }

  /** The inputs of a decode step over every row: `past` views, the mask [B][C + 1], positions [B][1]. */
  stepInputs(): { past: KvCache; attentionMask: number[][]; positionIds: number[][] } {
    const rows = this.ids.length, width = this.#capacity;
    if (rows === 0) throw new Error("a step needs at least one row");
    const dims = [rows, this.kvHeads, width, this.headDim];
    const n = rows * this.kvHeads * width * this.headDim;
    const view = (b: KvArray) => tensorOf(this.half, b.subarray(0, n), dims);
    return {
      past: {
        layers: Array.from({ length: this.layerCount }, (_, i) => ({
          key: view(this.#buffers[2 * i]),
          value: view(this.#buffers[2 * i + 1]),
        })),
        length: width,
        batch: rows,
      },
      attentionMask: this.lens.map((len) => {
        const m = new Array<number>(width + 1).fill(0);
        m.fill(1, 0, len);
        m[width] = 1;
        return m;
      }),
      positionIds: this.lens.map((len) => [len]),
    };
  }

  /**
   * Adopts a decode step's own keys and values (per layer [B, kv, 1, hd], rows
   * in batch order): each row grows by one token.
   */
  append(step: LayerKv[]): void {
    const rows = this.ids.length;
    const dims = step[0]?.key.dims;
    if (step.length !== this.layerCount || dims?.[0] !== rows || dims[2] !== 1) {
      throw new Error(`a step's keys [${dims}] do not extend a batch of ${rows} rows`);
    }
    const longest = Math.max(...this.lens);
    if (longest >= this.#capacity) this.#reallocate(this.#rowCapacity, longest);
    step.forEach((l, i) => {
      [l.key, l.value].forEach((t, j) => {
        for (let b = 0; b < rows; b++) {
          this.#copy(
            { data: kvData(t), row: b, width: 1, col: 0 },
            { data: this.#buffers[2 * i + j], row: b, width: this.#capacity, col: this.lens[b] },
            1,
          );
        }
      });
    });
    for (let b = 0; b < rows; b++) this.lens[b]++;
  }

  /** Copies `len` columns of every head from one span to another. */
  #copy(from: Span, to: Span, len: number): void {
    const n = len * this.headDim;
    const start = (s: Span, h: number) => ((s.row * this.kvHeads + h) * s.width + s.col) * this.headDim;
    for (let h = 0; h < this.kvHeads; h++) {
      const src = start(from, h), dst = start(to, h);
      if (from.data === to.data) to.data.copyWithin(dst, src, src + n);
      else to.data.set(from.data.subarray(src, src + n), dst);
    }
  }

  #alloc(length: number): KvArray {
    return this.half ? new Uint16Array(length) : new Float32Array(length);
  }

  /** New buffers of `rowCapacity` rows and `longest + SLACK_COLUMNS` columns, the rows copied over. */
  #reallocate(rowCapacity: number, longest: number): void {
    const capacity = longest + SLACK_COLUMNS;
    this.#buffers = Array.from({ length: 2 * this.layerCount }, (_, i) => {
      const next = this.#alloc(rowCapacity * this.kvHeads * capacity * this.headDim);
      const old = this.#buffers[i];
      this.lens.forEach((len, row) =>
        this.#copy(
          { data: old, row, width: this.#capacity, col: 0 },
          { data: next, row, width: capacity, col: 0 },
          len,
        )
      );
      return next;
    });
    this.#rowCapacity = rowCapacity;
    this.#capacity = capacity;
  }
}
